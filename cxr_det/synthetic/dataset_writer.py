"""The file side of every synthetic dataset: where files go, how tables are written, which
folders the generator may overwrite.

:class:`DatasetWriter` writes CSV tables (optionally gzipped with byte-stable headers, as
PhysioNet ships the MIMIC tables), text, JPEG and DICOM files under one dataset root and
counts them. The per-format writers (:mod:`.reflacx_writer`, :mod:`.mimic_writer`,
:mod:`.vindr_writer`) decide what goes into the files.
"""
import csv
import gzip
import io
import shutil
from pathlib import Path

import cv2

from cxr_det.synthetic.dicom_writer import write_dicom as _write_dicom

__all__ = ["DatasetWriter", "MARKER", "MARKER_TEXT", "unique_ints"]

#: File left in every top-level folder the generator wrote; only such folders are emptied.
MARKER = ".cxr_det_synthetic"
#: The marker's content (the only generated file whose bytes changed when the generator moved
#: from ``cxr_det.data.synthetic``; only its presence is ever checked).
MARKER_TEXT = "written by cxr_det.synthetic; safe to delete\n"


class DatasetWriter:
    """Writes the files of one synthetic dataset under ``root`` and counts them.

    ``claim(*subdirs)`` empties the given top-level folders if a previous synthetic run
    made them (they hold :data:`MARKER`) and refuses to touch folders it did not make,
    so pointing the generator at a real dataset root cannot destroy real data.

    Attributes:
        root: the dataset root (a :class:`~pathlib.Path`).
        files: number of files written so far (markers not counted).
    """

    def __init__(self, root):
        self.root = Path(root)
        self.files = 0

    def claim(self, *subdirs):
        """Make each of ``subdirs`` (relative to the root) an empty folder holding :data:`MARKER`.

        Raises:
            FileExistsError: a folder exists, is not empty and holds no marker (it was not
                written by the generator).
        """
        for sub in subdirs:
            path = self.root / sub
            if path.exists():
                if (path / MARKER).is_file():
                    shutil.rmtree(path)
                elif path.is_dir() and not any(path.iterdir()):
                    pass
                else:
                    raise FileExistsError(
                        f"{path} exists and was not written by the synthetic generator; "
                        "refusing to overwrite it (choose another --out)"
                    )
            path.mkdir(parents=True, exist_ok=True)
            (path / MARKER).write_text(MARKER_TEXT)

    def path(self, rel):
        """Absolute path of ``rel`` (relative to the root), its parent folders created."""
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def csv(self, rel, header, rows, gzipped=False):
        """Write a CSV table; ``gzipped``: as ``<rel>.gz``, the way PhysioNet ships MIMIC tables.

        The text is the same either way (UTF-8, ``\\n`` line ends, :mod:`csv` quoting). The
        gzip header carries no time stamp or file name, so the bytes depend on the content
        only (same seed, same files).
        """
        buffer = io.StringIO()
        w = csv.writer(buffer, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        data = buffer.getvalue().encode("utf-8")
        if gzipped:
            with open(self.path(rel + ".gz"), "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as z:
                z.write(data)
        else:
            self.path(rel).write_bytes(data)
        self.files += 1

    def text(self, rel, text):
        """Write a text file (platform default encoding, as :meth:`Path.write_text`)."""
        self.path(rel).write_text(text)
        self.files += 1

    def jpg(self, rel, img_u8, quality=95):
        """Write a uint8 HxW (or HxWx3 BGR) image as JPEG with cv2 at ``quality`` (0-100).

        Raises:
            OSError: cv2 could not encode or write the file.
        """
        ok = cv2.imwrite(str(self.path(rel)), img_u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise OSError(f"cv2 could not write {self.root / rel}")
        self.files += 1

    def dicom(self, rel, pixels, **kwargs):
        """Write a DICOM file with :func:`cxr_det.synthetic.dicom_writer.write_dicom` (same keywords)."""
        _write_dicom(self.path(rel), pixels, **kwargs)
        self.files += 1


def unique_ints(rng, n, low, high, taken=None):
    """``n`` distinct integers drawn from ``[low, high)`` by ``rng`` that are not in ``taken``.

    ``taken`` (a set, updated in place) lets several calls share one id space, e.g. the
    stay ids of a whole table. Draws one ``rng.integers`` per candidate.
    """
    taken = set() if taken is None else taken
    out = []
    while len(out) < n:
        v = int(rng.integers(low, high))
        if v not in taken:
            taken.add(v)
            out.append(v)
    return out
