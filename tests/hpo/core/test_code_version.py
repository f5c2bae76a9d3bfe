"""The code version trials are tagged with: the checkout's commit, marked dirty by uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpo.core import code_version as cv


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(cv.ENV, raising=False)
    monkeypatch.setattr(cv, "ROOT", tmp_path)
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_clean_checkout_is_its_commit(checkout: Path) -> None:
    sha = _git(checkout, "rev-parse", "HEAD")
    assert cv.version_tags() == {"hpo.code_version": sha, "mlflow.source.git.commit": sha}


def test_uncommitted_changes_mark_it_dirty(checkout: Path) -> None:
    (checkout / "model.py").write_text("x = 2\n")
    (checkout / "notes.txt").write_text("untracked files do not count\n")
    assert cv.code_version() == f"{_git(checkout, 'rev-parse', 'HEAD')}-dirty"


def test_outside_a_checkout_there_is_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cv.ENV, raising=False)
    monkeypatch.setattr(cv, "ROOT", tmp_path)
    assert cv.code_version() is None and cv.version_tags() == {}
