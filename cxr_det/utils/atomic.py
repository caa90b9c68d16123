"""Atomic file writes: a reader (or a run resumed after ``kill -9``) sees the old file or the
complete new one, never a truncated one.

The content is written to a temporary file in the destination's folder (same file system),
flushed and fsynced, then moved over the destination with :func:`os.replace`, which POSIX
and Windows perform atomically within a file system. A failure (an exception, or the
process killed) before the replace leaves the destination untouched; the temporary file,
named ``.<name>.<random>.tmp``, is removed on an exception (a killed process can leave one
behind, which no reader mistakes for the destination).

Python's standard library has no such helper (``tempfile`` + ``os.replace`` is the recipe);
the ``atomicwrites`` package that offered one is unmaintained, so this module is the
project's one implementation. Every tool output (COCO JSON, metrics, predictions, clinical
statistics, run records, checkpoints, cached PNGs) goes through it.
"""
import contextlib
import json
import os
import tempfile
from typing import Any, Callable, Iterator, IO

__all__ = ["atomic_open", "atomic_write_text", "atomic_write_bytes", "atomic_write_json", "atomic_save"]


def _umask() -> int:
    """The process's umask: from /proc where Linux gives it, else by setting and restoring it
    (there is no getter; the set-and-restore briefly changes it for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str):
    """Persist the rename itself (the folder entry); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = None, newline: str = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    Args:
        path: destination file; its folder is created if missing.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding, newline: as for :func:`open` (text mode; default UTF-8).

    Raises:
        ValueError: a mode other than ``"w"`` / ``"wb"``; and whatever the body raises (then
            ``path`` is unchanged and the temporary file removed).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); the result gets the permissions a plain open()
        # would give it (those of the file it replaces, else 0666 less the umask)
        try:
            mode_bits = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode_bits = 0o666 & ~_umask()
        os.fchmod(fd, mode_bits)
        kwargs = {} if "b" in mode else {"encoding": encoding or "utf-8", "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def atomic_write_text(path: str, text: str, encoding: str = "utf-8") -> str:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)
    return os.fspath(path)


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def atomic_write_json(path: str, obj: Any, **json_kwargs) -> str:
    """``json.dump(obj)`` to ``path`` atomically (``json_kwargs`` as for :func:`json.dump`);
    returns ``path``. An object that cannot be serialised leaves ``path`` unchanged."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, **json_kwargs)
    return os.fspath(path)


def atomic_save(path: str, save: Callable[[IO], None]) -> str:
    """Call ``save(binary_file)`` (e.g. ``lambda f: torch.save(obj, f)``) on a temporary file
    that then replaces ``path``; returns ``path``."""
    with atomic_open(path, "wb") as f:
        save(f)
    return os.fspath(path)
