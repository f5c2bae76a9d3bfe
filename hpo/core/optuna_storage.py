"""How a storage setting names an Optuna storage: a database URL, else a journal file (the sweep's default).

A journal storage appends each write to its file (synced before it returns) and reads back only what other
writers appended since its last read, so a trial costs the driver far less than with a database storage,
whose cache re-reads every unfinished trial on each read.
"""

from __future__ import annotations

from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

Storage = RDBStorage | JournalStorage


def open_storage(location: str) -> Storage:
    """Optuna's database storage for a URL (``location`` holds ``://``), else its journal storage in the file
    ``location``."""
    if "://" in location:
        return RDBStorage(location)
    return JournalStorage(JournalFileBackend(location))
