"""What a long-lived process's set-up leaves is frozen out of the garbage collector: its garbage collected
first, then every object alive, once per process."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from hpo.core import collector


class Node:
    """An object that can sit in a reference cycle and be watched through a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An entry point's process whose set-up has not been frozen yet; unfrozen again afterwards."""
    gc.unfreeze()
    monkeypatch.setattr(collector, "_frozen", False)
    monkeypatch.setattr(collector, "_enabled", False)
    collector.enable_freeze()
    yield
    gc.unfreeze()


def test_setup_garbage_is_collected_and_what_lives_is_frozen(unfrozen: None) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a
    garbage = weakref.ref(a)
    del a, b
    kept = Node()
    collector.freeze_setup()
    assert garbage() is None
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())


def test_setup_is_frozen_once_per_process(unfrozen: None) -> None:
    collector.freeze_setup()
    frozen = gc.get_freeze_count()
    later = [Node() for _ in range(100)]
    collector.freeze_setup()
    assert gc.get_freeze_count() <= frozen, "frozen objects can be freed, but none is added"
    assert any(obj is later[0] for obj in gc.get_objects())


def test_a_process_hpo_does_not_own_keeps_its_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    monkeypatch.setattr(collector, "_frozen", False)
    monkeypatch.setattr(collector, "_enabled", False)
    collector.freeze_setup()
    assert gc.get_freeze_count() == 0, "only hpo's own entry points let the set-up be frozen"
