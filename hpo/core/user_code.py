"""The user's own code on RunPod workers: shipped with each job, verified by its sha256.

A RunPod worker runs hpo's image, which holds hpo and its libraries but not the user's project. The driver
finds the top-level packages that the trial's ``_target_``s name and that are neither hpo's own nor installed
(site-packages, the standard library), without importing them, and zips their source folders: data files
inside a package travel with it, ``__pycache__`` does not. The worker unpacks a bundle once per hash and
puts it first on ``sys.path``. A project too big for a job body belongs in an image built ``FROM`` hpo's
worker image, with the package installed there and on the driver's side, where it is then not shipped.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import io
import os
import shutil
import site
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.core.errors import ConfigError

# hpo's own packages: the worker image has them
HPO_PACKAGES = frozenset({"hpo", "worker", "launchers", "hydra_plugins"})
# the zip's limit: base64 makes it 4/3 as large in a /run body that RunPod caps at 10 MB
MAX_BUNDLE_BYTES = 4_000_000
# under the system's temporary directory: one folder per bundle's sha256
CACHE_DIR_NAME = "hpo-user-code"
# a fixed timestamp in the zip, so the same files always give the same hash
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class UserCodeError(ConfigError):
    """The user's packages are too big to ship, or a received bundle is not what the driver sent."""


@dataclass(frozen=True)
class CodeBundle:
    """The user's packages as one zip: the names, the sha256 of the zip's bytes, the bytes in base64."""

    packages: tuple[str, ...]
    sha256: str
    zip_b64: str


def target_packages(config: Mapping[str, Any]) -> list[str]:
    """The top-level package of every ``_target_`` in ``config``, at any depth, sorted and unique."""
    return sorted({target.split(".", 1)[0] for target in _targets(config) if target})


def _targets(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str):
                yield value
            else:
                yield from _targets(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _targets(item)


def user_packages(config: Mapping[str, Any]) -> dict[str, list[Path]]:
    """The packages to ship for ``config``, each with its source: a folder (or a module's file, or a
    namespace package's folders). hpo's own, installed and unfindable ones are left out (a target that
    cannot be found is the config check's to report)."""
    found: dict[str, list[Path]] = {}
    installed = _installed_dirs()
    for name in target_packages(config):
        if name in HPO_PACKAGES:
            continue
        sources = _sources(name)
        if sources and not any(_inside(source, installed) for source in sources):
            found[name] = sources
    return found


def _sources(name: str) -> list[Path]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations is not None:
        return [Path(p).resolve() for p in spec.submodule_search_locations]
    if spec.origin and spec.has_location:
        return [Path(spec.origin).resolve()]
    return []  # built-in or frozen


def _installed_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths]
    dirs += [*site.getsitepackages(), site.getusersitepackages()]
    return [Path(d).resolve() for d in dirs]


def _inside(path: Path, dirs: Sequence[Path]) -> bool:
    return any(path == d or d in path.parents for d in dirs)


def code_bundle(config: Mapping[str, Any]) -> CodeBundle | None:
    """The bundle of the user's packages ``config`` names, or None when it names none.

    Raises:
        UserCodeError: the zip is over ``MAX_BUNDLE_BYTES``.
    """
    packages = user_packages(config)
    if not packages:
        return None
    raw = _zip(packages)
    if len(raw) > MAX_BUNDLE_BYTES:
        names = ", ".join(packages)
        raise UserCodeError(
            f"your code ({names}) zips to {len(raw) / 1e6:.1f} MB, over the "
            f"{MAX_BUNDLE_BYTES / 1e6:.0f} MB hpo ships with each RunPod job: build an image FROM hpo's "
            "worker image that pip-installs it, and pip-install it where you run hpo too (installed packages "
            "are not shipped)"
        )
    return CodeBundle(tuple(packages), hashlib.sha256(raw).hexdigest(), base64.b64encode(raw).decode())


def _zip(packages: Mapping[str, list[Path]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, sources in packages.items():
            for source in sources:
                for path, arcname in _files(name, source):
                    info = zipfile.ZipInfo(arcname, _ZIP_DATE)
                    info.external_attr = 0o644 << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _files(name: str, source: Path) -> Iterator[tuple[Path, str]]:
    """A package folder's files (hidden ones and ``__pycache__`` left out) or a module's file, each with
    its name in the zip, in a fixed order."""
    if source.is_file():
        yield source, source.name
        return
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__" and not d.startswith("."))
        for file in sorted(files):
            if not file.startswith(".") and not file.endswith(".pyc"):
                path = Path(folder) / file
                yield path, f"{name}/{path.relative_to(source).as_posix()}"


def install(bundle: CodeBundle, cache_root: Path | None = None) -> Path:
    """Unpack ``bundle`` (once per hash) and make its packages the ones this process imports.

    Raises:
        UserCodeError: the bytes are not base64 or their sha256 is not the bundle's.
    """
    try:
        raw = base64.b64decode(bundle.zip_b64, validate=True)
    except ValueError:
        raise UserCodeError("the user code in the trial payload is not base64") from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != bundle.sha256:
        raise UserCodeError(
            f"the user code in the trial payload has sha256 {digest[:12]}..., not the "
            f"{bundle.sha256[:12]}... the driver sent: the job body was altered on the way"
        )
    root = cache_root or Path(tempfile.gettempdir()) / CACHE_DIR_NAME
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    target = root / digest
    if not target.is_dir():
        unpacking = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=root))
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            archive.extractall(unpacking)
        try:
            os.replace(unpacking, target)
        except OSError:  # another process unpacked the same bundle first
            shutil.rmtree(unpacking, ignore_errors=True)
            if not target.is_dir():
                raise
    _activate(target, root, bundle.packages)
    return target


def _activate(target: Path, root: Path, packages: Sequence[str]) -> None:
    """Put ``target`` first on ``sys.path``, in place of any other bundle, and forget modules of
    ``packages`` imported from elsewhere (a warm worker's copy from an earlier sweep)."""
    sys.path[:] = [p for p in sys.path if Path(p).parent != root]
    sys.path.insert(0, str(target))
    for name in list(sys.modules):
        if name.split(".", 1)[0] in packages:
            file = getattr(sys.modules[name], "__file__", None)
            if file is None or target not in Path(file).resolve().parents:
                del sys.modules[name]
    importlib.invalidate_caches()
