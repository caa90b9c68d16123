"""REFLACX registrar: radiologists' lesion ellipses on MIMIC-CXR images as detectron2 dicts.

Reads the dataset exactly as PhysioNet ships it (``reflacx/main_data/metadata_phase_*.csv``
and one ``anomaly_location_ellipses.csv`` per reading) and pairs each reading with its
MIMIC-CXR-JPG (or MIMIC-CXR DICOM) image. Every (ellipse, selected label) pair becomes one
instance whose box is the ellipse's extent and whose mask is the ellipse, both clipped to the
image. Readings of the same image can be kept apart, pooled, or fused (see :func:`load_reflacx`).
See docs/CONTRACT.md for the record layout and the bad-input policy.
"""
import csv
import inspect
import logging
import math
import os
import re
import zlib
from collections import Counter
from typing import NamedTuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_det.data.datasets.common import (
    DatasetFormatError,
    SkipLog,
    clip_box,
    dataset_root,
    find_table,
    open_table_text,
    read_csv,
    resolve_classes,
    table_exists,
)
from cxr_det.data.datasets.labels import (
    MDF_NET_CLASSES,
    REFLACX_CERTAINTY_NAMES,
    REFLACX_PRESENT_CERTAINTY,
    REFLACX_LABELS,
    REFLACX_LESION_LABELS,
    REFLACX_PHASE1_LABELS,
    REFLACX_PHASE1_TO_LABEL,
)
from cxr_det.data.ellipse import box_iou, clip_polygon_to_image, ellipse_polygon

__all__ = [
    "load_reflacx",
    "register_reflacx",
    "certainty_counts",
    "certainty_rule",
    "certainty_summary",
    "READER_MODES",
    "SPLITS",
    "IMAGE_SOURCES",
]

logger = logging.getLogger(__name__)

READER_MODES = ("reading", "pooled", "fused")
SPLITS = ("train", "val", "test", "all")
IMAGE_SOURCES = ("auto", "jpg", "dicom")

PHASES = (1, 2, 3)
METADATA_COLUMNS = (
    "id",
    "split",
    "eye_tracking_data_discarded",
    "image",
    "dicom_id",
    "subject_id",
    "image_size_x",
    "image_size_y",
)
ELLIPSE_FILE = "anomaly_location_ellipses.csv"
ELLIPSE_COLUMNS = ("xmin", "ymin", "xmax", "ymax", "certainty")

# MIMIC-CXR's split names -> ours.
_SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}
_TRUE = {"true", "1", "1.0", "yes", "t"}
_FALSE = {"false", "0", "0.0", "no", "f", ""}
_STUDY_DIR = re.compile(r"^s(\d+)$")


def _normalise_split(split):
    """``train``/``val``/``test``/``all`` (``validate`` accepted as MIMIC-CXR spells it)."""
    s = _SPLIT_NAMES.get(str(split).strip().lower(), str(split).strip().lower())
    if s not in SPLITS:
        raise ValueError(f"reflacx: unknown split {split!r}; valid: {list(SPLITS)}")
    return s


def _check_options(readers, image_source, fuse_iou, min_certainty=0):
    if readers not in READER_MODES:
        raise ValueError(f"reflacx: unknown readers mode {readers!r}; valid: {list(READER_MODES)}")
    if image_source not in IMAGE_SOURCES:
        raise ValueError(f"reflacx: unknown image_source {image_source!r}; valid: {list(IMAGE_SOURCES)}")
    if not 0.0 <= float(fuse_iou) <= 1.0:
        raise ValueError(f"reflacx: fuse_iou must be in [0, 1], got {fuse_iou}")
    if not 0 <= float(min_certainty) <= max(REFLACX_CERTAINTY_NAMES):
        raise ValueError(
            f"reflacx: min_certainty must be in [0, {max(REFLACX_CERTAINTY_NAMES)}] "
            f"(0 keeps every ellipse), got {min_certainty}"
        )


def _parse_bool(text):
    """A CSV boolean cell (``True``/``False``, also 1/0, blank = False); None if unreadable."""
    t = str(text).strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    return None


def _parse_number(text):
    """A finite float from a CSV cell, or None (blank, NaN, inf, text)."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _parse_int(text):
    v = _parse_number(text)
    return int(v) if v is not None and v.is_integer() else None


def _image_relpath(image):
    """Parts of the metadata ``image`` path from its last ``files`` component on, or None."""
    parts = [p for p in str(image).replace("\\", "/").split("/") if p]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "files" and i < len(parts) - 1:
            return parts[i:]
    return None


def _study_id(relparts):
    for p in relparts:
        m = _STUDY_DIR.match(p)
        if m:
            return int(m.group(1))
    return None


def _read_metadata(main_dir, skips):
    """Readings of every phase present, as dicts; raises if no phase's metadata exists."""
    readings, seen = [], set()
    found = False
    for phase in PHASES:
        path = main_dir / f"metadata_phase_{phase}.csv"
        if not table_exists(path):
            logger.info("reflacx: %s not found, phase %d skipped", path, phase)
            continue
        found = True
        frame = read_csv(path, METADATA_COLUMNS, dtype=str, keep_default_na=False)
        for row_no, row in enumerate(frame[list(METADATA_COLUMNS)].itertuples(index=False), start=2):
            rid, split, discarded, image, dicom_id, subject_id, size_x, size_y = (str(v).strip() for v in row)
            where = f"{path.name} line {row_no} ({rid})"
            if not rid:
                skips.skip("metadata row without a reading id", where)
                continue
            if rid in seen:
                skips.skip("duplicate reading id in metadata", where)
                continue
            split_name = _SPLIT_NAMES.get(split.lower())
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
                skips.skip(f"metadata: {problem}", where)
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
        raise DatasetFormatError(
            f"{main_dir}: no REFLACX metadata found (expected metadata_phase_1.csv, "
            f"metadata_phase_2.csv and/or metadata_phase_3.csv)"
        )
    return readings


def _label_targets(phase, class_index):
    """Map each label column name of a phase to its category id (None: not selected)."""
    vocab = REFLACX_PHASE1_LABELS if phase == 1 else REFLACX_LABELS
    mapping = {}
    for name in vocab:
        target = REFLACX_PHASE1_TO_LABEL.get(name, name) if phase == 1 else name
        mapping[name] = class_index.get(target)
    return mapping


class Instance(NamedTuple):
    """One (ellipse, class) pair: drawn box, box and polygon clipped to the image, certainty."""

    category_id: int
    ellipse_box: list
    box: list
    polygon: list
    certainty: int
    readers: tuple = ()


def _ellipse_geometry(box, width, height):
    """``(clipped box, clipped polygon)`` of the ellipse inscribed in ``box``, or a skip reason."""
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


def _read_ellipses(path, reading, label_targets, min_certainty, skips, counters):
    """Ellipses of one reading that carry a selected label, geometry checked and clipped.

    Returns one :class:`Instance` per selected label of each kept ellipse (two phase-1 labels
    mapping to the same class count once); the ellipse's polygon is shared between them.
    """
    width, height = reading["width"], reading["height"]
    with open_table_text(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        header = [h.strip() for h in header] if header else []
        missing = [c for c in ELLIPSE_COLUMNS if c not in header]
        if missing:
            raise DatasetFormatError(f"{path}: missing column(s) {missing}; columns present: {header}")
        coord_idx = [header.index(c) for c in ELLIPSE_COLUMNS]
        label_cols = []
        for i, name in enumerate(header):
            if name in ELLIPSE_COLUMNS:
                continue
            if name not in label_targets:
                skips.skip(f"unknown label column {name!r} in {ELLIPSE_FILE} (column ignored)", str(path))
                continue
            if label_targets[name] is not None:
                label_cols.append((i, label_targets[name]))
        out = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            cells = [row[i] if i < len(row) else "" for i in coord_idx]
            values = [_parse_number(c) for c in cells]
            if any(v is None for v in values):
                skips.skip("ellipse with a non-numeric or NaN coordinate/certainty", f"{path}, line {reader.line_num}")
                continue
            x0, y0, x1, y1, certainty = values
            where = f"{path}, line {reader.line_num}"
            if not certainty.is_integer() or int(certainty) not in REFLACX_CERTAINTY_NAMES:
                skips.skip(f"ellipse certainty not an integer 1..{max(REFLACX_CERTAINTY_NAMES)}", f"{where}: {certainty:g}")
                continue
            categories = sorted({cid for i, cid in label_cols if i < len(row) and _parse_bool(row[i])})
            if not categories:
                continue
            if certainty < min_certainty:
                counters["below_min_certainty"] += 1
                continue
            if x1 <= x0 or y1 <= y0:
                skips.skip("degenerate ellipse (xmax <= xmin or ymax <= ymin)", where)
                continue
            geometry = _ellipse_geometry([x0, y0, x1, y1], width, height)
            if isinstance(geometry, str):
                skips.skip(geometry, where)
                continue
            if geometry[0] != [x0, y0, x1, y1]:
                counters["clipped"] += 1
            out.extend(Instance(cid, [x0, y0, x1, y1], geometry[0], geometry[1], int(certainty)) for cid in categories)
    return out


def _fuse(instances, fuse_iou, width, height, skips):
    """Merge same-class ellipses of different readings whose boxes overlap (IoU >= fuse_iou).

    ``instances`` carry their reading id in ``readers``. Pairs are joined in order of decreasing
    IoU of their clipped boxes (union-find, i.e. connected components); a join that would put
    two ellipses of one reading in the same group is refused, so a reader's own ellipses are
    never merged. A group becomes the ellipse inscribed in the mean of its drawn boxes (clipped
    like a drawn one), with the maximum certainty and every member's reading id.
    """
    parent = list(range(len(instances)))
    members = [set(inst.readers) for inst in instances]

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = []
    for i, a in enumerate(instances):
        for j in range(i + 1, len(instances)):
            b = instances[j]
            if a.category_id != b.category_id or members[i] & members[j]:
                continue
            iou = box_iou(a.box, b.box)
            if iou > 0 and iou >= fuse_iou:
                pairs.append((-iou, i, j))
    for _, i, j in sorted(pairs):
        ri, rj = find(i), find(j)
        if ri == rj or members[ri] & members[rj]:
            continue
        lo, hi = min(ri, rj), max(ri, rj)
        parent[hi] = lo
        members[lo] |= members[hi]

    groups = {}
    for i in range(len(instances)):
        groups.setdefault(find(i), []).append(instances[i])
    fused = []
    for root in sorted(groups):
        group = groups[root]
        if len(group) == 1:
            fused.append(group[0])
            continue
        mean = [sum(inst.ellipse_box[k] for inst in group) / len(group) for k in range(4)]
        geometry = _ellipse_geometry(mean, width, height)
        if isinstance(geometry, str):  # cannot happen for overlapping in-image members; be safe
            skips.skip(f"fused {geometry}", ",".join(sorted(members[root])))
            continue
        fused.append(
            Instance(
                group[0].category_id,
                mean,
                geometry[0],
                geometry[1],
                max(inst.certainty for inst in group),
                tuple(sorted(members[root])),
            )
        )
    return fused


def _annotation(inst):
    return {
        "bbox": [float(v) for v in inst.box],
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": int(inst.category_id),
        "segmentation": [list(inst.polygon)],
        "iscrowd": 0,
        "readers": list(inst.readers),
        "certainty": inst.certainty,
    }


def load_reflacx(
    root,
    split,
    classes=MDF_NET_CLASSES,
    readers="pooled",
    fuse_iou=0.3,
    min_certainty=0,
    drop_discarded_eye_tracking=False,
    image_source="auto",
    skip_log=None,
    log_certainty=True,
):
    """Load REFLACX readings of one MIMIC-CXR split as detectron2 dataset dicts.

    Args:
        root: dataset root holding ``reflacx/``, ``mimic-cxr-jpg/`` and/or ``mimic-cxr/``
            (None: ``$CXR_DATASETS``, else ``./datasets``).
        split: ``train``, ``val`` (MIMIC-CXR's ``validate``), ``test`` or ``all``.
        classes: phase-2/3 lesion label names; ``["all"]`` selects every lesion label.
            category_id is the index in this list; phase-1 names are mapped first.
        readers: ``reading`` (a record per reading), ``pooled`` (a record per image with every
            reading's ellipses) or ``fused`` (a record per image, same-class ellipses of
            different readings with box IoU >= ``fuse_iou`` merged into their mean box).
        min_certainty: keep ellipses whose certainty (1 Unlikely .. 5 Consistent with, see
            :data:`~cxr_det.data.datasets.labels.REFLACX_CERTAINTY_NAMES`) is at least this;
            0 (default) keeps every ellipse, as MDF-Net does; the REFLACX authors count a
            label as present from 3 ("Possibly") on. Dropped ellipses are counted.
        drop_discarded_eye_tracking: drop readings whose eye-tracking data was discarded.
        image_source: ``jpg``, ``dicom`` or ``auto`` (JPG if ``mimic-cxr-jpg/`` exists).
        skip_log: a :class:`SkipLog` to count skipped rows into (e.g. for a summary table).
        log_certainty: log the annotations per certainty (:func:`certainty_summary`) at
            INFO; a dataset registered by :func:`register_reflacx` logs it on its first load.

    Every annotation keeps its ellipse's ``certainty`` (int 1..5; in ``fused`` mode the
    highest of the merged ellipses); an ellipse whose certainty is not an integer 1..5 is a
    counted skip. Records follow docs/CONTRACT.md. Bad rows and missing readings/images are skipped and
    reported once; missing files or columns raise :class:`DatasetFormatError`.
    """
    split = _normalise_split(split)
    _check_options(readers, image_source, fuse_iou, min_certainty)
    class_names = resolve_classes(classes, REFLACX_LESION_LABELS, "reflacx")
    class_index = {name: i for i, name in enumerate(class_names)}
    root = dataset_root(root)
    main_dir = root / "reflacx" / "main_data"
    if image_source == "auto":
        image_source = "jpg" if (root / "mimic-cxr-jpg").is_dir() else "dicom"
    image_dir = root / ("mimic-cxr-jpg" if image_source == "jpg" else "mimic-cxr")
    suffix = ".jpg" if image_source == "jpg" else ".dcm"

    skips = skip_log if skip_log is not None else SkipLog("reflacx")
    counters = {"clipped": 0, "dropped_discarded": 0, "below_min_certainty": 0}
    readings = _read_metadata(main_dir, skips)
    readings = [r for r in readings if split == "all" or r["split"] == split]
    if drop_discarded_eye_tracking:
        counters["dropped_discarded"] = sum(r["discarded"] for r in readings)
        readings = [r for r in readings if not r["discarded"]]

    targets_by_phase = {p: _label_targets(p, class_index) for p in PHASES}
    for r in readings:
        reading_dir = main_dir / r["id"]
        path = reading_dir / ELLIPSE_FILE
        if not reading_dir.is_dir():
            skips.skip("reading folder missing (reading skipped)", str(reading_dir))
            r["instances"] = None
            continue
        if not table_exists(path):
            skips.skip(f"{ELLIPSE_FILE} missing (reading skipped)", str(path))
            r["instances"] = None
            continue
        try:
            r["instances"] = _read_ellipses(path, r, targets_by_phase[r["phase"]], min_certainty, skips, counters)
        except (OSError, EOFError, zlib.error) as e:  # e.g. a damaged .csv.gz
            raise DatasetFormatError(f"{find_table(path)}: cannot be read ({e})") from e
    readings = [r for r in readings if r["instances"] is not None]

    # Group readings into records: one per reading, or one per image.
    groups = {}
    for r in sorted(readings, key=lambda r: (r["dicom_id"], r["id"])):
        key = (r["dicom_id"], r["id"]) if readers == "reading" else r["dicom_id"]
        groups.setdefault(key, []).append(r)

    records, exists_cache, missing_images = [], {}, 0
    for key in sorted(groups):
        members = groups[key]
        first = members[0]
        file_name = str(image_dir.joinpath(*first["relparts"]).with_suffix(suffix))
        if file_name not in exists_cache:
            exists_cache[file_name] = os.path.exists(file_name)
        if not exists_cache[file_name]:
            skips.skip("image file missing (record skipped)", file_name)
            missing_images += 1
            continue
        width, height = first["width"], first["height"]
        instances = [inst._replace(readers=(r["id"],)) for r in members for inst in r["instances"]]
        if readers == "fused":
            instances = _fuse(instances, fuse_iou, width, height, skips)
        records.append(
            {
                "file_name": file_name,
                "height": height,
                "width": width,
                "image_id": len(records),
                "dataset": "reflacx",
                "split": first["split"],
                "dicom_id": first["dicom_id"],
                "subject_id": first["subject_id"],
                "study_id": first["study_id"],
                "reading_ids": [r["id"] for r in members],
                "eye_tracking_discarded": [bool(r["discarded"]) for r in members],
                "annotations": [_annotation(inst) for inst in instances],
            }
        )

    skips.report(logger)
    if groups and not records:
        example = image_dir.joinpath(*next(iter(groups.values()))[0]["relparts"]).with_suffix(suffix)
        raise DatasetFormatError(
            f"{image_dir}: none of the {len(groups)} image(s) of REFLACX split {split!r} was found "
            f"there (expected e.g. {example}); set image_source or the dataset root"
        )
    if not groups:
        logger.warning("reflacx: no readings in split %r under %s", split, main_dir)
    logger.info(
        "reflacx %s (%s, %d classes): loaded %d records, %d annotations from %d readings "
        "(%d ellipses clipped to the image, %d discarded-eye-tracking readings dropped, %d records without image)",
        split,
        readers,
        len(class_names),
        len(records),
        sum(len(r["annotations"]) for r in records),
        sum(len(r["reading_ids"]) for r in records),
        counters["clipped"],
        counters["dropped_discarded"],
        missing_images,
    )
    if log_certainty:
        logger.info("%s", certainty_summary(records, min_certainty, counters["below_min_certainty"], f"reflacx {split}"))
    return records


def certainty_counts(records):
    """``{certainty: number of annotations}`` over REFLACX dataset dicts, for 1..5 (zeros kept)."""
    counts = Counter(a.get("certainty") for r in records for a in r["annotations"])
    out = {level: counts.pop(level, 0) for level in REFLACX_CERTAINTY_NAMES}
    out.update(counts)  # anything else (e.g. annotations without a certainty) stays visible
    return out


def certainty_rule(min_certainty, dropped=None):
    """The certainty threshold in use and its sources, in words (``dropped``: ellipses it removed)."""
    if min_certainty <= min(REFLACX_CERTAINTY_NAMES):
        rule = f"MIN_CERTAINTY {min_certainty:g}: every ellipse kept whatever its certainty (MDF-Net's choice)"
    else:
        count = "" if dropped is None else f": {dropped}"
        rule = f"MIN_CERTAINTY {min_certainty:g}: ellipses of certainty < {min_certainty:g} dropped{count}"
    present = REFLACX_PRESENT_CERTAINTY
    return f"{rule}; the REFLACX authors count >= {present} ({REFLACX_CERTAINTY_NAMES[present]}) as present"


def certainty_summary(records, min_certainty, dropped=None, name="reflacx"):
    """One line: annotations per ellipse certainty, then :func:`certainty_rule`.

    Sources: the REFLACX authors count a label as present from certainty 3 ("Possibly") on;
    MDF-Net keeps every ellipse whatever its certainty (``min_certainty`` 0).
    """
    counts = certainty_counts(records)
    table = ", ".join(f"{level} {REFLACX_CERTAINTY_NAMES.get(level, '?')}: {n}" for level, n in counts.items())
    return f"{name}: annotations per ellipse certainty: {table}; {certainty_rule(min_certainty, dropped)}"


def register_reflacx(name, root, split, **options):
    """Register REFLACX ``split`` as detectron2 dataset ``name`` (loaded lazily).

    ``options`` are :func:`load_reflacx`'s keyword arguments. They are validated here, so a
    wrong class name or mode fails at registration rather than when training starts.
    """
    unknown = sorted(set(options) - _LOAD_OPTIONS)
    if unknown:
        raise TypeError(f"register_reflacx: unknown option(s) {unknown}; valid: {sorted(_LOAD_OPTIONS)}")
    split = _normalise_split(split)
    mode = options.get("readers", "pooled")
    _check_options(
        mode, options.get("image_source", "auto"), options.get("fuse_iou", 0.3), options.get("min_certainty", 0)
    )
    class_names = resolve_classes(options.get("classes", MDF_NET_CLASSES), REFLACX_LESION_LABELS, "reflacx")
    loads = []

    def load():
        kwargs = {"log_certainty": not loads, **options}
        loads.append(True)
        return load_reflacx(root, split, **kwargs)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        evaluator_type="coco",
        dataset="reflacx",
        readers=mode,
        split=split,
    )
    return name


_LOAD_OPTIONS = frozenset(inspect.signature(load_reflacx).parameters) - {"root", "split"}
