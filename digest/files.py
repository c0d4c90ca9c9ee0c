"""Files only their owner can read (0600) in folders only their owner can
enter (0700), as SSH keys and password stores are kept: the ledger and its
lock, the outbox and exported lists hold subscribers' addresses and live
unsubscribe tokens. Only new files and folders get these modes; an
existing one keeps the mode its owner gave it."""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> Path:
    """``path`` as a folder, created 0700 when absent (parents as ``mkdir -p``)."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    return path


def create_private(path: Path) -> None:
    """Create ``path`` empty and 0600 unless it exists (so that a program
    opening it next, such as SQLite, finds it private). SQLite's
    ``:memory:`` names no file: nothing is created for it."""
    if str(path) == ":memory:":
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass


def open_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """``os.open(path, flags)``, a new file being 0600: a file descriptor."""
    return os.open(path, flags, FILE_MODE)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (replacing its content), a new file being 0600."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as handle:
        handle.write(data)
