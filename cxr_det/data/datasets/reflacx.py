"""REFLACX registrar: radiologists' lesion ellipses on MIMIC-CXR images as detectron2 dicts.

Reads the dataset exactly as PhysioNet ships it (``reflacx/main_data/metadata_phase_*.csv``
and one ``anomaly_location_ellipses.csv`` per reading) and pairs each reading with its
MIMIC-CXR-JPG (or MIMIC-CXR DICOM) image. Every (ellipse, selected label) pair becomes one
instance whose box is the ellipse's extent and whose mask is the ellipse, both clipped to the
image. Readings of the same image can be kept apart (``per_reading``), pooled
(``all_readers``) or merged (``mean_ellipse``); see :func:`load_reflacx`. The files are read
by :mod:`.reflacx_readings`; paths, columns and vocabularies are
:mod:`cxr_det.formats.reflacx_format` (REFLACX v1.0.0, PhysioNet) and
:mod:`cxr_det.formats.mimic_cxr_format`. See docs/CONTRACT.md for the record layout and the
bad-input policy.
"""
import inspect
import logging
import os
import zlib
from collections import Counter

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_det.data.datasets.common import DatasetFormatError, SkipLog, dataset_root, find_table, resolve_classes, table_exists
from cxr_det.data.datasets.reflacx_readings import (
    ELLIPSE_ROW,
    METADATA_ROW,
    Instance,
    ellipse_geometry,
    label_targets,
    read_ellipses,
    read_metadata,
)
from cxr_det.formats import normalise_split, resolve_reader_mode
from cxr_det.formats.mimic_cxr_format import MIMIC_CXR_IMAGE_DIRS, MIMIC_CXR_IMAGE_SUFFIXES, MIMIC_CXR_JPG_DIR
from cxr_det.formats.reflacx_format import (
    MDF_NET_CLASSES,
    REFLACX_CERTAINTY_NAMES,
    REFLACX_ELLIPSE_FILE,
    REFLACX_LESION_LABELS,
    REFLACX_MAIN_DIR,
    REFLACX_PHASES,
    REFLACX_PRESENT_CERTAINTY,
    REFLACX_READER_MODES,
)
from cxr_det.utils.boxes import box_iou

__all__ = [
    "load_reflacx",
    "register_reflacx",
    "certainty_counts",
    "certainty_rule",
    "certainty_summary",
    "IMAGE_SOURCES",
]

logger = logging.getLogger(__name__)

# "auto": MIMIC-CXR-JPG if its folder exists, else the DICOM release.
IMAGE_SOURCES = ("auto",) + tuple(MIMIC_CXR_IMAGE_DIRS)


def _reader_mode(readers):
    """The REFLACX reader mode of ``readers`` in the shared vocabulary (old names warn)."""
    try:
        return resolve_reader_mode(readers, "reflacx", REFLACX_READER_MODES)
    except ValueError as e:
        raise ValueError(f"{e} (the readers option, cfg.CXR.REFLACX.READERS)") from None


def _check_options(readers, image_source, fuse_iou, min_certainty=0):
    """Validate the loading options; returns the reader mode's current name. Raises ValueError."""
    mode = _reader_mode(readers)
    if image_source not in IMAGE_SOURCES:
        raise ValueError(f"reflacx: unknown image_source {image_source!r}; valid: {list(IMAGE_SOURCES)}")
    if not 0.0 <= float(fuse_iou) <= 1.0:
        raise ValueError(f"reflacx: fuse_iou must be in [0, 1], got {fuse_iou}")
    if not 0 <= float(min_certainty) <= max(REFLACX_CERTAINTY_NAMES):
        raise ValueError(
            f"reflacx: min_certainty must be in [0, {max(REFLACX_CERTAINTY_NAMES)}] "
            f"(0 keeps every ellipse), got {min_certainty}"
        )
    return mode


def _mean_ellipse(instances, fuse_iou, width, height, skips):
    """Merge same-class ellipses of different readings whose boxes overlap (IoU >= fuse_iou).

    The ``mean_ellipse`` reader mode.
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

    ious = box_iou([inst.box for inst in instances], [inst.box for inst in instances])
    pairs = []
    for i, a in enumerate(instances):
        for j in range(i + 1, len(instances)):
            b = instances[j]
            if a.category_id != b.category_id or members[i] & members[j]:
                continue
            iou = float(ious[i, j])
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
        geometry = ellipse_geometry(mean, width, height)
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
    """The detectron2 annotation dict of an :class:`~.reflacx_readings.Instance`."""
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
    readers="all_readers",
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
        readers: the reader mode (:data:`cxr_det.formats.READER_MODES`): ``all_readers`` (a
            record per image with every reading's ellipses, MDF-Net's choice), ``per_reading``
            (a record per reading) or ``mean_ellipse`` (a record per image, same-class
            ellipses of different readings with box IoU >= ``fuse_iou`` merged into their
            mean box). The earlier names ``pooled``, ``reading`` and ``fused`` still work,
            with a DeprecationWarning.
        min_certainty: keep ellipses whose certainty (1 Unlikely .. 5 Consistent with, see
            :data:`~cxr_det.formats.reflacx_format.REFLACX_CERTAINTY_NAMES`) is at least this;
            0 (default) keeps every ellipse, as MDF-Net does; the REFLACX authors count a
            label as present from 3 ("Possibly") on. Dropped ellipses are counted.
        drop_discarded_eye_tracking: drop readings whose eye-tracking data was discarded.
        image_source: ``jpg``, ``dicom`` or ``auto`` (JPG if ``mimic-cxr-jpg/`` exists).
        skip_log: a :class:`SkipLog` to count skipped rows into (e.g. for a summary table);
            its ledger gets the outcome of every metadata row (:data:`METADATA_ROW`: reading in
            the output, another split, discarded eye tracking, or a skip) and every ellipse row
            read (:data:`ELLIPSE_ROW`: ellipse in the output, no selected label, below
            ``min_certainty``, of a record without image, or a skip).
        log_certainty: log the annotations per certainty (:func:`certainty_summary`) at
            INFO; a dataset registered by :func:`register_reflacx` logs it on its first load.

    Every annotation keeps its ellipse's ``certainty`` (int 1..5; in ``mean_ellipse`` mode the
    highest of the merged ellipses); an ellipse whose certainty is not an integer 1..5 is a
    counted skip. Records follow docs/CONTRACT.md. Bad rows and missing readings/images are skipped and
    reported once; missing files or columns raise :class:`DatasetFormatError`.
    """
    split = normalise_split(split, "reflacx")
    readers = _check_options(readers, image_source, fuse_iou, min_certainty)
    class_names = resolve_classes(classes, REFLACX_LESION_LABELS, "reflacx")
    class_index = {name: i for i, name in enumerate(class_names)}
    root = dataset_root(root)
    main_dir = root / REFLACX_MAIN_DIR
    if image_source == "auto":
        image_source = "jpg" if (root / MIMIC_CXR_JPG_DIR).is_dir() else "dicom"
    image_dir = root / MIMIC_CXR_IMAGE_DIRS[image_source]
    suffix = MIMIC_CXR_IMAGE_SUFFIXES[image_source]

    skips = skip_log if skip_log is not None else SkipLog("reflacx")
    counters = {"clipped": 0, "dropped_discarded": 0, "below_min_certainty": 0}
    readings = read_metadata(main_dir, skips)
    in_split = [r for r in readings if split == "all" or r["split"] == split]
    skips.account(METADATA_ROW, "reading of another split", len(readings) - len(in_split))
    readings = in_split
    if drop_discarded_eye_tracking:
        counters["dropped_discarded"] = sum(r["discarded"] for r in readings)
        skips.account(METADATA_ROW, "eye-tracking data discarded (dropped)", counters["dropped_discarded"])
        readings = [r for r in readings if not r["discarded"]]

    targets_by_phase = {p: label_targets(p, class_index) for p in REFLACX_PHASES}
    for r in readings:
        reading_dir = main_dir / r["id"]
        path = reading_dir / REFLACX_ELLIPSE_FILE
        if not reading_dir.is_dir():
            skips.skip("reading folder missing (reading skipped)", str(reading_dir), unit=METADATA_ROW)
            r["instances"] = None
            continue
        if not table_exists(path):
            skips.skip(f"{REFLACX_ELLIPSE_FILE} missing (reading skipped)", str(path), unit=METADATA_ROW)
            r["instances"] = None
            continue
        try:
            r["instances"] = read_ellipses(path, r, targets_by_phase[r["phase"]], min_certainty, skips, counters)
        except (OSError, EOFError, zlib.error) as e:  # e.g. a damaged .csv.gz
            raise DatasetFormatError(f"{find_table(path)}: cannot be read ({e})") from e
    readings = [r for r in readings if r["instances"] is not None]

    # Group readings into records: one per reading, or one per image.
    groups = {}
    for r in sorted(readings, key=lambda r: (r["dicom_id"], r["id"])):
        key = (r["dicom_id"], r["id"]) if readers == "per_reading" else r["dicom_id"]
        groups.setdefault(key, []).append(r)

    records, exists_cache, missing_images = [], {}, 0
    for key in sorted(groups):
        members = groups[key]
        first = members[0]
        file_name = str(image_dir.joinpath(*first["relparts"]).with_suffix(suffix))
        if file_name not in exists_cache:
            exists_cache[file_name] = os.path.exists(file_name)
        ellipse_rows = len({(r["id"], inst.line) for r in members for inst in r["instances"]})
        if not exists_cache[file_name]:
            skips.skip("image file missing (record skipped)", file_name, unit=METADATA_ROW, rows=len(members))
            skips.account(ELLIPSE_ROW, "of a record skipped (image file missing)", ellipse_rows)
            missing_images += 1
            continue
        skips.account(METADATA_ROW, "reading in the output", len(members))
        skips.account(ELLIPSE_ROW, "ellipse in the output", ellipse_rows)
        width, height = first["width"], first["height"]
        instances = [inst._replace(readers=(r["id"],)) for r in members for inst in r["instances"]]
        if readers == "mean_ellipse":
            instances = _mean_ellipse(instances, fuse_iou, width, height, skips)
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
    split = normalise_split(split, "reflacx")
    checked = ("readers", "image_source", "fuse_iou", "min_certainty")
    mode = _check_options(**{key: options.get(key, _LOAD_DEFAULTS[key]) for key in checked})
    options = {**options, "readers": mode}  # warn about an old mode name once, here
    class_names = resolve_classes(options.get("classes", MDF_NET_CLASSES), REFLACX_LESION_LABELS, "reflacx")
    loads = []

    def load():
        kwargs = {"log_certainty": not loads, **options}
        loads.append(True)
        return load_reflacx(root, split, **kwargs)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        thing_classes=list(class_names),
        evaluator_type="cxr_detection",
        dataset="reflacx",
        readers=mode,
        split=split,
    )
    return name


_LOAD_DEFAULTS = {
    name: p.default for name, p in inspect.signature(load_reflacx).parameters.items() if name not in ("root", "split")
}
_LOAD_OPTIONS = frozenset(_LOAD_DEFAULTS)
