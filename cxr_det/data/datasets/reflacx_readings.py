"""REFLACX files to readings and ellipse instances: the metadata tables and the ellipse CSVs.

Reads ``reflacx/main_data/metadata_phase_{1,2,3}.csv`` and one
``anomaly_location_ellipses.csv`` per reading, as PhysioNet ships them (REFLACX v1.0.0; the
layout, columns and vocabularies are :mod:`cxr_det.formats.reflacx_format`). Bad rows are
counted skips (:class:`~cxr_det.data.datasets.common.SkipLog`); a missing table or column
raises :class:`~cxr_det.data.datasets.common.DatasetFormatError`. The records are assembled
by :mod:`cxr_det.data.datasets.reflacx`.
"""
import csv
import logging
import re
from typing import NamedTuple

from cxr_det.data.datasets.common import (
    DatasetFormatError,
    clip_box,
    find_table,
    first_undecodable_line,
    open_table_text,
    read_csv,
    table_exists,
)
from cxr_det.data.ellipse import clip_polygon_to_image, ellipse_polygon
from cxr_det.data.values import parse_number
from cxr_det.formats import normalise_split
from cxr_det.formats.mimic_cxr_format import MIMIC_CXR_FILES_DIR, MIMIC_CXR_STUDY_DIR_PATTERN
from cxr_det.formats.reflacx_format import (
    REFLACX_CERTAINTY_NAMES,
    REFLACX_ELLIPSE_COLUMNS,
    REFLACX_ELLIPSE_FILE,
    REFLACX_LABELS_BY_PHASE,
    REFLACX_METADATA,
    REFLACX_METADATA_COLUMNS,
    REFLACX_PHASE1_TO_LABEL,
    REFLACX_PHASES,
)

__all__ = [
    "METADATA_ROW",
    "ELLIPSE_ROW",
    "Instance",
    "read_metadata",
    "label_targets",
    "read_ellipses",
    "ellipse_geometry",
]

# The reader's logger: one logger for everything loading REFLACX says.
logger = logging.getLogger("cxr_det.data.datasets.reflacx")

# The kinds of input row in the conversion ledger (SkipLog.read/account/skip(unit=...)).
METADATA_ROW = "metadata row (reading)"
ELLIPSE_ROW = "ellipse row"

_TRUE = {"true", "1", "1.0", "yes", "t"}
_FALSE = {"false", "0", "0.0", "no", "f", ""}
_STUDY_DIR = re.compile(MIMIC_CXR_STUDY_DIR_PATTERN)


def _parse_bool(text):
    """A CSV boolean cell (``True``/``False``, also 1/0, blank = False); None if unreadable."""
    t = str(text).strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    return None


def _parse_int(text):
    """A CSV cell holding a whole number (``"12"``, ``"12.0"``) as int, else None."""
    v = parse_number(text)[0]
    return int(v) if v is not None and v.is_integer() else None


def _metadata_split(text):
    """``train``/``val``/``test`` of a metadata ``split`` cell (MIMIC-CXR's names), or None."""
    try:
        split = normalise_split(text, "reflacx")
    except ValueError:
        return None
    return None if split == "all" else split


def _image_relpath(image):
    """Parts of the metadata ``image`` path from its last ``files`` component on, or None."""
    parts = [p for p in str(image).replace("\\", "/").split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == MIMIC_CXR_FILES_DIR and i < len(parts) - 1:
            return parts[i:]
    return None


def _study_id(relparts):
    """The study id of the first ``s<digits>`` folder of an image path, or None."""
    for p in relparts:
        m = _STUDY_DIR.match(p)
        if m:
            return int(m.group(1))
    return None


def read_metadata(main_dir, skips):
    """Readings of every phase present, as dicts, in file order.

    Each reading: ``id``, ``phase`` (1..3), ``split`` (``train``/``val``/``test``),
    ``discarded`` (bool, eye-tracking data discarded), ``relparts`` (the image path from its
    ``files`` folder on, as a list), ``dicom_id``, ``subject_id``, ``study_id`` (ints),
    ``width``, ``height`` (pixels). Rows with a blank or repeated id, an unknown split, a
    bad size, subject id or discarded flag, or an image path without
    ``files/pNN/p<subject>/s<study>/`` are counted skips in ``skips``; every row read is
    declared in its ledger as a :data:`METADATA_ROW` (the kept ones get their outcome from
    the caller).

    Raises :class:`DatasetFormatError` if no phase's metadata exists under ``main_dir`` or a
    table lacks a column of ``REFLACX_METADATA_COLUMNS``.
    """
    readings, seen = [], set()
    found = False
    for phase in REFLACX_PHASES:
        path = main_dir / REFLACX_METADATA.format(phase=phase)
        if not table_exists(path):
            logger.info("reflacx: %s not found, phase %d skipped", path, phase)
            continue
        found = True
        frame = read_csv(path, REFLACX_METADATA_COLUMNS, dtype=str, keep_default_na=False)
        skips.read(METADATA_ROW, len(frame))
        # Cells a short (e.g. truncated) last row lacks are NaN even with keep_default_na=False.
        cells = frame[list(REFLACX_METADATA_COLUMNS)].fillna("")
        for row_no, row in enumerate(cells.itertuples(index=False), start=2):
            rid, split, discarded, image, dicom_id, subject_id, size_x, size_y = (str(v).strip() for v in row)
            where = f"{path.name} line {row_no} ({rid})"
            if not rid:
                skips.skip("metadata row without a reading id", where, unit=METADATA_ROW)
                continue
            if rid in seen:
                skips.skip("duplicate reading id in metadata", where, unit=METADATA_ROW)
                continue
            split_name = _metadata_split(split)
            width, height, subject = _parse_int(size_x), _parse_int(size_y), _parse_int(subject_id)
            discarded_flag = _parse_bool(discarded)
            relparts = _image_relpath(image)
            study = _study_id(relparts) if relparts else None
            problem = None
            if split_name is None:
                problem = f"unknown split value {split!r}"
            elif width is None or height is None or width <= 0 or height <= 0:
                problem = "bad image_size_x/image_size_y"
            elif subject is None:
                problem = "bad subject_id"
            elif discarded_flag is None:
                problem = "bad eye_tracking_data_discarded value"
            elif relparts is None or study is None or not dicom_id:
                problem = "image path without files/pNN/p<subject>/s<study>/ or no dicom_id"
            if problem:
                skips.skip(f"metadata: {problem}", where, unit=METADATA_ROW)
                continue
            seen.add(rid)
            readings.append(
                dict(
                    id=rid,
                    phase=phase,
                    split=split_name,
                    discarded=discarded_flag,
                    relparts=relparts,
                    dicom_id=dicom_id,
                    subject_id=subject,
                    study_id=study,
                    width=width,
                    height=height,
                )
            )
    if not found:
        names = [REFLACX_METADATA.format(phase=p) for p in REFLACX_PHASES]
        expected = ", ".join(names[:-1]) + " and/or " + names[-1]
        raise DatasetFormatError(
            f"{main_dir}: no REFLACX metadata found (expected {expected}); the dataset root is "
            "CXR.DATASET_ROOT, else $CXR_DATASETS, else ./datasets"
        )
    return readings


def label_targets(phase, class_index):
    """``{label column of the phase: category id or None (not selected)}``.

    ``class_index`` maps phase-2/3 names to category ids; phase-1 names are mapped through
    ``REFLACX_PHASE1_TO_LABEL`` first.
    """
    mapping = {}
    for name in REFLACX_LABELS_BY_PHASE[phase]:
        target = REFLACX_PHASE1_TO_LABEL.get(name, name) if phase == 1 else name
        mapping[name] = class_index.get(target)
    return mapping


class Instance(NamedTuple):
    """One (ellipse, class) pair: drawn box, box and polygon clipped to the image, certainty.

    ``ellipse_box`` is the drawn XYXY box (pixels, may extend past the image), ``box`` and
    ``polygon`` (flat list) the ellipse's extent and outline clipped to the image,
    ``certainty`` 1..5, ``readers`` the ids of the readings it comes from, ``line`` the line
    of its row in the reading's ellipse CSV (0 for an ellipse merged from several).
    """

    category_id: int
    ellipse_box: list
    box: list
    polygon: list
    certainty: int
    readers: tuple = ()
    line: int = 0


def ellipse_geometry(box, width, height):
    """``(clipped box, clipped polygon)`` of the ellipse inscribed in XYXY ``box`` on a
    ``width`` x ``height`` image, or a skip reason (str) when nothing of it is inside."""
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return "ellipse entirely outside the image"
    poly = ellipse_polygon(box)
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        poly = clip_polygon_to_image(poly, width, height)
        if not poly:
            return "ellipse of zero area after clipping to the image"
        return clip_box(box, width, height), poly
    return list(box), poly


def _label_columns(header, label_targets, path, skips):
    """``[(column index, category id)]`` of the selected label columns of an ellipse CSV."""
    label_cols = []
    for i, name in enumerate(header):
        if name in REFLACX_ELLIPSE_COLUMNS:
            continue
        if name not in label_targets:
            skips.skip(f"unknown label column {name!r} in {REFLACX_ELLIPSE_FILE} (column ignored)", str(path))
            continue
        if label_targets[name] is not None:
            label_cols.append((i, label_targets[name]))
    return label_cols


def read_ellipses(path, reading, label_targets, min_certainty, skips, counters):
    """Ellipses of one reading that carry a selected label, geometry checked and clipped.

    Returns one :class:`Instance` per selected label of each kept ellipse (two phase-1 labels
    mapping to the same class count once); the ellipse's polygon is shared between them, and
    ``line`` tells the rows apart. Ellipses below ``min_certainty`` are counted in
    ``counters["below_min_certainty"]``, clipped ones in ``counters["clipped"]``; bad rows
    are counted skips. Every non-blank row is declared in the ledger of ``skips`` as an
    :data:`ELLIPSE_ROW`, and those not kept get their outcome here (the kept ones, the rows
    of the returned instances, get theirs from the caller, who knows whether the record
    survives).

    Raises :class:`DatasetFormatError` naming the file (and the line) when a column of
    ``REFLACX_ELLIPSE_COLUMNS`` is missing, or the file is not UTF-8 text or not CSV.
    """
    width, height = reading["width"], reading["height"]
    out = []
    with open_table_text(path) as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            header = [h.strip() for h in header] if header else []
            missing = [c for c in REFLACX_ELLIPSE_COLUMNS if c not in header]
            if missing:
                raise DatasetFormatError(f"{path}: missing column(s) {missing}; columns present: {header}")
            coord_idx = [header.index(c) for c in REFLACX_ELLIPSE_COLUMNS]
            label_cols = _label_columns(header, label_targets, path, skips)
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                skips.read(ELLIPSE_ROW, 1)
                out.extend(_ellipse_row(row, reader.line_num, path, coord_idx, label_cols, width, height,
                                        min_certainty, skips, counters))
        except UnicodeDecodeError as e:
            line = first_undecodable_line(find_table(path))
            where = f"line {line} is not UTF-8 text" if line else "not UTF-8 text"
            raise DatasetFormatError(f"{path}: cannot be parsed as CSV: {where} ({e})") from e
        except csv.Error as e:
            raise DatasetFormatError(f"{path}: cannot be parsed as CSV: line {reader.line_num} ({e})") from e
    return out


def _ellipse_row(row, line, path, coord_idx, label_cols, width, height, min_certainty, skips, counters):
    """The instances of one row of an ellipse CSV (see :func:`read_ellipses`); [] if none."""
    where = f"{path}, line {line}"
    cells = [row[i] if i < len(row) else "" for i in coord_idx]
    values = [parse_number(c)[0] for c in cells]
    if any(v is None for v in values):
        skips.skip("ellipse with a non-numeric or NaN coordinate/certainty", where, unit=ELLIPSE_ROW)
        return []
    x0, y0, x1, y1, certainty = values
    if not certainty.is_integer() or int(certainty) not in REFLACX_CERTAINTY_NAMES:
        reason = f"ellipse certainty not an integer 1..{max(REFLACX_CERTAINTY_NAMES)}"
        skips.skip(reason, f"{where}: {certainty:g}", unit=ELLIPSE_ROW)
        return []
    categories = sorted({cid for i, cid in label_cols if i < len(row) and _parse_bool(row[i])})
    if not categories:
        skips.account(ELLIPSE_ROW, "no selected label (not converted)")
        return []
    if certainty < min_certainty:
        counters["below_min_certainty"] += 1
        skips.account(ELLIPSE_ROW, "certainty below min_certainty (dropped)")
        return []
    if x1 <= x0 or y1 <= y0:
        skips.skip("degenerate ellipse (xmax <= xmin or ymax <= ymin)", where, unit=ELLIPSE_ROW)
        return []
    geometry = ellipse_geometry([x0, y0, x1, y1], width, height)
    if isinstance(geometry, str):
        skips.skip(geometry, where, unit=ELLIPSE_ROW)
        return []
    if geometry[0] != [x0, y0, x1, y1]:
        counters["clipped"] += 1
    box, polygon = geometry
    return [Instance(cid, [x0, y0, x1, y1], box, polygon, int(certainty), line=line) for cid in categories]
