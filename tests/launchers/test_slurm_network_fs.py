"""SQLite stores on a network file system are refused for SLURM sweeps, others pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo.core.errors import ConfigError
from launchers.slurm.network_fs import filesystem_type, refuse_sqlite_on_network_fs

MOUNTS = """\
overlay / overlay rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 /scratch ext4 rw,relatime 0 0
fs01:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
mds@tcp:/lustre /lustre lustre rw,flock 0 0
//nas/share /mnt/my\\040share cifs rw 0 0
"""


@pytest.mark.parametrize(
    "path, kind",
    [
        ("/home/ada/study/mlflow.db", "nfs4"),
        ("/home", "nfs4"),
        ("/homework/mlflow.db", "overlay"),
        ("/lustre/proj/mlflow.db", "lustre"),
        ("/scratch/mlflow.db", "ext4"),
        ("/mnt/my share/mlflow.db", "cifs"),
    ],
)
def test_the_longest_mount_point_decides(path: str, kind: str) -> None:
    assert filesystem_type(Path(path), MOUNTS) == kind


def test_sqlite_on_nfs_is_refused_with_one_line() -> None:
    with pytest.raises(
        ConfigError, match=r"mlflow\.tracking_uri=sqlite:////home/ada/mlflow\.db .* nfs4"
    ) as err:
        refuse_sqlite_on_network_fs({"mlflow.tracking_uri": "sqlite:////home/ada/mlflow.db"}, MOUNTS)
    assert "\n" not in str(err.value) and "mlflow server" in str(err.value)
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.storage=.* lustre"):
        refuse_sqlite_on_network_fs({"hydra.sweeper.storage": "sqlite:////lustre/p/optuna.db"}, MOUNTS)


def test_local_sqlite_and_servers_pass() -> None:
    refuse_sqlite_on_network_fs(
        {
            "mlflow.tracking_uri": "sqlite:////scratch/mlflow.db",
            "hydra.sweeper.storage": "postgresql://db.lab/optuna",
            "other": "http://mlflow.lab:5000",
        },
        MOUNTS,
    )


def test_this_machines_mounts_are_read(tmp_path: Path) -> None:
    """Without a mounts text, /proc/mounts decides: the test's own temporary directory is not on a
    network file system here."""
    refuse_sqlite_on_network_fs({"mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
