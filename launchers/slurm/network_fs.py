"""SQLite stores on a network file system: refused, since SQLite's locking is unreliable there.

On a cluster the trials' jobs write the MLflow store from many nodes at once; over NFS, CIFS or a
parallel file system (Lustre, GPFS, BeeGFS, ...) SQLite's file locks do not hold and the store can be
corrupted, so the slurm backend asks for an ``mlflow server`` or a database instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from hpo.core.errors import ConfigError

# file system types (as /proc/mounts names them) whose locks SQLite cannot rely on
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "fuse.ceph",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "panfs",
        "afs",
        "9p",
        "wekafs",
        "pvfs2",
        "orangefs",
    }
)
MOUNTS = Path("/proc/mounts")


def filesystem_type(path: Path, mounts: str) -> str | None:
    """The type of the file system ``path`` lies on, by the longest mount point in ``mounts`` (the text of
    /proc/mounts) that contains it; None when no mount point does."""
    best, best_type = -1, None
    target = str(path)
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        # /proc/mounts escapes spaces in mount points as \040
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, best_type = len(point), parts[2]
    return best_type


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, made absolute; None for any other URL."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(os.path.abspath(url[len("sqlite:///") :]))


def refuse_sqlite_on_network_fs(urls: dict[str, str], mounts: str | None = None) -> None:
    """Raise a ``ConfigError`` when one of ``urls`` (setting name to URL) is a SQLite database on a network
    file system; ``mounts`` is the text of /proc/mounts (read here when None, and nothing is refused on a
    system without it)."""
    if mounts is None:
        if not MOUNTS.exists():
            return
        mounts = MOUNTS.read_text()
    for setting, url in urls.items():
        path = sqlite_path(url)
        if path is None:
            continue
        kind = filesystem_type(path.resolve(), mounts)
        if kind in NETWORK_FILESYSTEMS:
            raise ConfigError(
                f"{setting}={url} is a SQLite database on a {kind} network file system, where SQLite's "
                "locks do not hold for jobs on many nodes: use an `mlflow server` (http://...) or a database "
                "(postgresql://...) with launcher.backend=slurm"
            )
