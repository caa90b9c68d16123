"""REFLACX or VinDr-CXR, as shipped, exported to a standard COCO JSON object
(``tools/convert_to_coco.py``).

The format is COCO's object-detection format (cocodataset.org, "Data format", instances
JSON of the 2017 release): boxes XYWH in absolute pixels of the image ``file_name`` points
to, masks as polygons (REFLACX: the radiologists' ellipses; VinDr: the boxes). The
conversion is detectron2's ``convert_to_coco_dict``; besides COCO's own fields each
annotation keeps ``readers`` (REFLACX reading ids / VinDr rad_ids) and, for REFLACX,
``certainty`` (1 Unlikely .. 5 Consistent with), which detectron2 drops.
"""
import itertools
from collections import Counter
from typing import List, Optional, Sequence, Tuple

from tabulate import tabulate

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict

from cxr_det.data.datasets.common import SkipLog, resolve_classes
from cxr_det.data.datasets.reflacx import certainty_counts, certainty_rule, load_reflacx
from cxr_det.data.datasets.vindr import load_vindr
from cxr_det.formats.reflacx_format import REFLACX_CERTAINTY_NAMES, REFLACX_LESION_LABELS
from cxr_det.formats.vindr_format import VINDR_LOCAL_LABELS

__all__ = [
    "LOADERS",
    "EXTRA_FIELDS",
    "carry_annotation_fields",
    "export_class_names",
    "export_coco",
    "export_summary",
    "ledger_summary",
]

LOADERS = {"reflacx": load_reflacx, "vindr": load_vindr}
# Dataset-dict annotation fields kept in the COCO annotations (detectron2 keeps only COCO's own).
EXTRA_FIELDS = ("certainty", "readers")
_names = itertools.count()


def carry_annotation_fields(coco: dict, records: Sequence[dict], fields: Sequence[str] = EXTRA_FIELDS) -> dict:
    """Copy ``fields`` of each dataset-dict annotation into its COCO annotation, in place.

    ``coco`` must come from detectron2's ``convert_to_coco_dict(records)``, which numbers the
    annotations 1, 2, ... in record order; the pairing is checked (count and image id).

    Returns:
        ``coco``.

    Raises:
        ValueError: the annotation counts differ, or an annotation belongs to another image
            (instead of attaching a value to the wrong lesion).
    """
    pairs = [(r.get("image_id", i), a) for i, r in enumerate(records) for a in r.get("annotations", [])]
    if len(pairs) != len(coco["annotations"]):
        raise ValueError(f"{len(coco['annotations'])} COCO annotations for {len(pairs)} dataset annotations")
    for (image_id, ann), out in zip(pairs, coco["annotations"]):
        if out["image_id"] != image_id:
            raise ValueError(f"COCO annotation {out['id']} belongs to image {out['image_id']}, expected {image_id}")
        for field in fields:
            if field in ann:
                out[field] = ann[field]
    return coco


def export_class_names(dataset: str, classes: Optional[Sequence[str]]) -> List[str]:
    """The class names an export of ``dataset`` (``"reflacx"`` or ``"vindr"``) uses for the
    loader's ``classes`` option (names, ``["all"]``, or None for the dataset's defaults).

    Raises:
        ValueError: an unknown dataset or class name (from ``resolve_classes``).
    """
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(LOADERS)}")
    available = REFLACX_LESION_LABELS if dataset == "reflacx" else VINDR_LOCAL_LABELS
    return resolve_classes(classes, available, dataset)


def export_coco(dataset: str, root: Optional[str], split: str, options: dict) -> Tuple[dict, List[dict], List[str], SkipLog]:
    """Load ``dataset``'s ``split`` from ``root`` with the registrar ``options`` (``classes``,
    ``readers``, ...; :func:`cxr_det.data.datasets.builtin.dataset_options`) and convert it.

    Returns:
        ``(coco, records, class_names, skips)``: the COCO dict (``info.description`` names
        the dataset, split and reader mode; annotations carry :data:`EXTRA_FIELDS`), the
        dataset dicts, the class names (index = ``category_id``), and the rows skipped.

    Raises:
        ValueError: an unknown dataset; the loaders' errors for missing or malformed files.
    """
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {sorted(LOADERS)}")
    skips = SkipLog(dataset)
    records = LOADERS[dataset](root, split, skip_log=skips, **options)
    class_names = export_class_names(dataset, options["classes"])
    # detectron2's converter reads a registered name; this one is removed again afterwards.
    name = f"_convert_to_coco_{dataset}_{split}_{next(_names)}"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=class_names)
    try:
        coco = carry_annotation_fields(convert_to_coco_dict(name), records)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    coco["info"]["description"] = (
        f"{dataset} split={split} readers={options['readers']} converted by cxr_det tools/convert_to_coco.py"
    )
    return coco, records, class_names, skips


def ledger_summary(skips: SkipLog) -> List[str]:
    """Lines of the conversion's accounting: for each kind of input row (REFLACX metadata and
    ellipse rows, VinDr annotation rows), the rows read, what became of them (in the output,
    another split, a class not selected, ... or skipped and why), and their total, which
    equals the rows read; a kind whose outcomes do not add up is flagged (a loader bug)."""
    rows, unbalanced = [], skips.unbalanced()
    for unit, outcome, n in skips.ledger_rows():
        if outcome == "read":
            if rows:
                rows.append(("", "", ""))
            rows.append((unit, "rows read", n))
        else:
            rows.append(("", outcome, n))
    totals = {unit: sum(skips.outcomes[unit].values()) for unit in sorted(skips.rows_read)}
    lines = [tabulate(rows, headers=["input", "outcome", "rows"], tablefmt="github")] if rows else []
    for unit, total in totals.items():
        if unit in unbalanced:
            lines.append(f"{unit}: {skips.rows_read[unit]} read but {total} accounted for: THE TOTALS DO NOT ADD UP")
        else:
            lines.append(f"{unit}: {skips.rows_read[unit]} read = {total} accounted for")
    return lines


def export_summary(dataset: str, split: str, options: dict, coco: dict, records: Sequence[dict],
                   class_names: Sequence[str], skips: SkipLog, output: str) -> str:
    """The text ``tools/convert_to_coco.py`` prints: images, annotations per class (and per
    certainty level for REFLACX, with the ``min_certainty`` rule), the rows skipped and why,
    and the accounting of every input row (:func:`ledger_summary`)."""
    per_class = Counter(a["category_id"] for a in coco["annotations"])
    empty = sum(1 for r in records if not r["annotations"])
    lines = [f"\n{dataset} {split} ({options['readers']}): {len(coco['images'])} images "
             f"({empty} without annotations), {len(coco['annotations'])} annotations -> {output}\n",
             tabulate([(c, per_class[i]) for i, c in enumerate(class_names)], headers=["class", "annotations"],
                      tablefmt="github")]
    if dataset == "reflacx":
        rows = [(level, REFLACX_CERTAINTY_NAMES.get(level, "?"), n) for level, n in certainty_counts(records).items()]
        lines += ["", tabulate(rows, headers=["certainty", "name", "annotations"], tablefmt="github"),
                  certainty_rule(options.get("min_certainty", 0))]
    if len(skips):
        lines += ["", tabulate(skips.as_rows(), headers=["skipped", "count"], tablefmt="github")]
    else:
        lines.append("\nnothing skipped")
    ledger = ledger_summary(skips)
    if ledger:
        lines += ["", "where every input row went:"] + ledger
    return "\n".join(lines)
