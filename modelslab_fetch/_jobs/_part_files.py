"""The temporary `.part` files of downloads: each locked by its writer while it lives.

The writer holds an exclusive `flock` from creation to rename; the kernel drops it however
the writer dies, so a lock that can be taken marks an abandoned file, with no pid or age
to guess from. On Windows a file open for writing cannot be deleted, which serves the same.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["PART_FILE", "PartFile", "remove_abandoned"]

PART_FILE = re.compile(r"\..+\.[0-9a-f]{8}\.part")
"""The names of downloads' temporary files."""

_ATTEMPTS = 8


class PartFile:
    """A new `.part` file next to `target`, created and locked for this writer alone."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.path, self.file = _create_locked(target)

    def __repr__(self) -> str:
        return f"PartFile({str(self.path)!r})"

    def restart(self) -> None:
        """Empty the file, for another attempt at the download."""
        self.file.seek(0)
        self.file.truncate()

    def commit(self, target: Path | None = None) -> Path:
        """Rename the file to `target` (default: the one given), still locked; close it."""
        final = self.target if target is None else target
        try:
            self.file.flush()
            os.replace(self.path, final)  # atomic: a file under its final name is complete
        finally:
            self.file.close()
        return final

    def discard(self) -> None:
        """Remove the file (still locked, so no one else can be using it) and close it."""
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        finally:
            self.file.close()


def _create_locked(target: Path) -> tuple[Path, BinaryIO]:
    for _ in range(_ATTEMPTS):
        path = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            file = path.open("xb")  # exclusive creation: never a file someone else made
        except FileExistsError:
            continue
        if _lock(file.fileno()) and os.fstat(file.fileno()).st_nlink > 0:
            return path, file
        file.close()  # a cleaner took it between creation and lock: start again
    raise OSError(f"could not create a temporary file next to {target}")


def _lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: open files cannot be deleted
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def remove_abandoned(folder: Path) -> int:
    """Remove the `.part` files in `folder` that no process writes any more; return how many."""
    removed = 0
    for entry in folder.iterdir():
        if PART_FILE.fullmatch(entry.name) and _remove_if_abandoned(entry):
            removed += 1
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    # No following symlinks, and no blocking on a FIFO that merely has a .part name.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or not _lock(fd):
            return False  # not a file of ours, or its writer is still at work
        try:
            named = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return False  # renamed into place (complete) or removed meanwhile
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            return False  # the name now belongs to another file
        try:
            path.unlink()
        except OSError:  # Windows: still open elsewhere
            return False
        return True
    finally:
        os.close(fd)
