"""Where an image comes from, and what its reading noted: shared by the DICOM and the
other-format readers.

An image is read from a path or from its content held in memory (an upload: ``bytes``,
``bytearray``, ``memoryview`` or a binary file-like object), never written to disk; messages
name it by :func:`source_label`. Readable images that leave a reader's normal path are
reported as :class:`ReadNote` entries appended to the caller's ``notes`` list (and logged),
so that tools can count and report them.
"""
import os
from pathlib import Path
from typing import NamedTuple

__all__ = ["ReadNote", "add_note", "is_in_memory", "memory_bytes", "source_label"]


class ReadNote(NamedTuple):
    """A readable image that left the normal reading path: ``kind`` and a message naming the file.

    Kinds: ``no_file_meta`` (DICOM without preamble/``DICM``/file meta, read with
    ``force=True``), ``invalid_voi`` (VOI LUT or window not applicable; full range used),
    ``decoder_fallback`` (pixel data decoded outside pydicom's plugins),
    ``color_to_gray`` (colour channels differed and were merged to luma),
    ``alpha_ignored`` (a non-opaque alpha channel was discarded).
    """

    kind: str
    message: str


def add_note(notes, kind, message, logger):
    """Log ``message`` as a warning on ``logger`` and append ``ReadNote(kind, message)`` to
    ``notes`` (a list, or None to only log)."""
    logger.warning("%s", message)
    if notes is not None:
        notes.append(ReadNote(kind, message))


def is_in_memory(source) -> bool:
    """Whether ``source`` is an image held in memory (``bytes``, ``bytearray``, ``memoryview``
    or a readable binary file-like object such as ``io.BytesIO``) rather than a path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return True
    return hasattr(source, "read") and not isinstance(source, (str, os.PathLike))


def memory_bytes(source, limit=None) -> bytes:
    """The bytes of an in-memory ``source`` (:func:`is_in_memory`): a file-like object is read
    from its start (when seekable) and its position restored. ``limit``: at most that many
    leading bytes. Raises TypeError when ``source`` is a path."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data if limit is None else data[:limit]
    if not is_in_memory(source):
        raise TypeError(f"memory_bytes: expected bytes or a file-like object, got {type(source).__name__}")
    seekable = getattr(source, "seekable", lambda: False)()
    position = source.tell() if seekable else None
    if seekable:
        source.seek(0)
    data = source.read() if limit is None else source.read(limit)
    if seekable:
        source.seek(position)
    return bytes(data)


def source_label(source, name=None) -> str:
    """How messages name ``source``: the path itself, else ``name``, else the file-like's
    ``name`` attribute, else ``"<in-memory image>"``."""
    if not is_in_memory(source):
        return str(Path(source))
    name = name or getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) and str(name) else "<in-memory image>"
