"""Dataset files in the Keras cache: fetching them through ``keras.utils.get_file`` and reading them.

Keras' own datasets and hpo's web datasets share one cache (``$KERAS_HOME``, default ``~/.keras``)
and one downloader, which never leaves a half-written file in the cache. A RunPod worker whose cache
moved to its network volume (``worker.volume``) reads the image's baked cache first.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from keras.src.backend.config import keras_home
from keras.utils import get_file

from hpo.core.errors import DatasetError
from worker.volume import IMAGE_CACHE_ENV

READ_ERRORS = (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile)

Parser = Callable[[list[Path]], tuple[Any, Any, Any, Any]]
"""Reads a dataset's fetched files (in the order given) into x_train, y_train, x_test, y_test."""


class RawArrays(NamedTuple):
    """Arrays as stored (images unscaled, text as raw word-id lists) and where they came from."""

    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    where: str


@dataclass(frozen=True)
class Remote:
    """One downloadable file, with the arguments ``get_file`` gets for it."""

    fname: str
    origin: str
    file_hash: str | None = None
    cache_subdir: str = "datasets"
    extract: bool = False


def load_files(name: str, files: Iterable[Remote], parse: Parser) -> RawArrays:
    """Fetch every file a dataset needs (if not cached) and parse them.

    Raises:
        DatasetError: a file is not cached and cannot be fetched, or cannot be read.
    """
    root, files = cache_root(), tuple(files)
    paths = [fetch(name, remote, root) for remote in files]
    where = ", ".join(map(str, paths))
    with reading(name, where, (p for r in files for p in cache_paths(r, root))):
        return RawArrays(*parse(paths), where)


@contextlib.contextmanager
def reading(name: str, where: str, cached: Iterable[Path]) -> Iterator[None]:
    """Turn an error reading cached files into a DatasetError naming the ones to delete."""
    try:
        yield
    except READ_ERRORS as exc:
        existing = ", ".join(sorted({str(p) for p in cached if p.exists()}))
        raise DatasetError(
            f"dataset {name!r}: cannot read the cached {where} ({one_line(exc)}); "
            f"delete {existing} so that the next load replaces it"
        ) from exc


def cache_root() -> Path:
    """The cache root: ``$KERAS_HOME`` (read now, not at Keras import) or ``~/.keras``, else /tmp/.keras."""
    root = Path(os.environ.get("KERAS_HOME") or keras_home()).expanduser()
    with contextlib.suppress(OSError):
        root.mkdir(parents=True, exist_ok=True)
    if not os.access(root, os.W_OK):  # the fallback get_file applies
        root = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
        root.mkdir(parents=True, exist_ok=True)
    return root


def cache_roots(root: Path) -> list[Path]:
    """Where a cached file is looked for: the image's baked cache (``$HPO_IMAGE_KERAS_HOME``, once the
    cache moved to a network volume), then ``root``, where downloads go."""
    image = os.environ.get(IMAGE_CACHE_ENV)
    return [*([Path(image)] if image else []), root]


def cache_paths(remote: Remote, root: Path) -> tuple[Path, Path]:
    """Where ``get_file`` stores the download and the path it returns (an archive's extraction dir)."""
    folder = root / remote.cache_subdir
    if remote.extract:  # get_file's layout for an fname without a dot
        return folder / f"{remote.fname}_archive", folder / remote.fname
    return folder / remote.fname, folder / remote.fname


def _is_cached(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def fetch(name: str, remote: Remote, root: Path) -> Path:
    """Return one cached file (or extracted folder), fetching it through ``get_file`` into ``root`` if it
    is in none of the ``cache_roots``.

    A fresh download is verified against the remote's hash; a file already in the cache is trusted.
    ``get_file`` works in a private staging dir whose results are renamed into the cache, so
    concurrent trials and killed downloads never leave a half-written file there.
    """
    for cached in (cache_paths(remote, r)[1] for r in cache_roots(root)):
        if _is_cached(cached):
            return cached
    target, result = cache_paths(remote, root)
    fresh = not target.exists()
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    staged_target, staged_result = cache_paths(remote, staging)
    try:
        if not fresh:  # an archive is cached but not extracted: let get_file extract a link to it
            staged_target.parent.mkdir(parents=True)
            os.link(target, staged_target)
        get_file(
            fname=remote.fname,
            origin=remote.origin,
            file_hash=remote.file_hash if fresh else None,
            cache_subdir=remote.cache_subdir,
            extract=remote.extract,
            cache_dir=str(staging),
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_target, target)
        if remote.extract and not _is_cached(result):  # another trial may have just put it there
            os.replace(staged_result, result)
    except Exception as exc:
        looked = target if target == result else f"{result} or {target}"
        raise DatasetError(
            f"dataset {name!r} is not in the Keras cache at {looked} and fetching it from "
            f"{remote.origin} failed ({one_line(exc)}); run once with network access, or copy the "
            f"file at {remote.origin} to {target} (KERAS_HOME, default ~/.keras, moves the cache)"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, or its type name when it has none."""
    return " ".join(str(exc).split()) or type(exc).__name__
