"""The trial channel: progress goes to the runner's sink, a prune reaches the running trial or the next to
register, and a reset forgets a prune meant for a job already gone."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from hpo.core import trial_channel


@pytest.fixture(autouse=True)
def clean_channel() -> Iterator[None]:
    yield
    trial_channel.set_sink(None)
    trial_channel.reset()


def test_progress_goes_to_the_sink_the_runner_set_and_nowhere_without_one() -> None:
    trial_channel.report({"epoch": 1})
    seen: list[trial_channel.Progress] = []
    trial_channel.set_sink(seen.append)
    trial_channel.report({"epoch": 2, "objective": 0.5})
    assert seen == [{"epoch": 2, "objective": 0.5}]


def test_a_prune_sets_the_running_trials_stop_and_only_while_it_runs() -> None:
    stop = threading.Event()
    with trial_channel.trial(stop.set):
        assert not stop.is_set()
        trial_channel.prune()
        assert stop.is_set()
    trial_channel.reset()
    stop.clear()
    trial_channel.prune()
    assert not stop.is_set(), "a trial that has ended is not called"


def test_a_prune_before_the_trial_registers_stops_it_as_it_registers_unless_reset() -> None:
    trial_channel.prune()
    early = threading.Event()
    with trial_channel.trial(early.set):
        assert early.is_set()
    trial_channel.prune()
    trial_channel.reset()
    fresh = threading.Event()
    with trial_channel.trial(fresh.set):
        assert not fresh.is_set()
