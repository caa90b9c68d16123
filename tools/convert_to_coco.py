#!/usr/bin/env python
"""Convert REFLACX or VinDr-CXR, as shipped, to a standard COCO JSON file.

    tools/convert_to_coco.py --dataset reflacx --split train --output reflacx_train.json
    tools/convert_to_coco.py --dataset vindr --root /data --split val --classes "Aortic enlargement" Cardiomegaly \
        --readers fused --output vindr_val.json

Boxes are COCO XYWH in the pixels of the image each entry's ``file_name`` points to;
masks are polygons (REFLACX: the radiologists' ellipses; VinDr: the boxes). Besides the
COCO fields each annotation keeps ``readers`` (reading ids / rad_ids) and, for REFLACX,
``certainty`` (1 Unlikely .. 5 Consistent with). Prints a summary: images, annotations per
class (and per certainty for REFLACX), and the rows that were skipped and why.
"""
import argparse
import json
import os
from collections import Counter

from tabulate import tabulate

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict

from cxr_det.data.datasets.builtin import dataset_options
from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.labels import REFLACX_CERTAINTY_NAMES
from cxr_det.data.datasets.reflacx import certainty_counts, certainty_rule, load_reflacx
from cxr_det.data.datasets.vindr import load_vindr
from cxr_det.engine import get_cxr_cfg

LOADERS = {"reflacx": load_reflacx, "vindr": load_vindr}
# Dataset-dict annotation fields kept in the COCO annotations (detectron2 keeps only COCO's own).
EXTRA_FIELDS = ("certainty", "readers")


def carry_annotation_fields(coco, records, fields=EXTRA_FIELDS):
    """Copy ``fields`` of each dataset-dict annotation into its COCO annotation, in place.

    ``coco`` must come from detectron2's ``convert_to_coco_dict(records)``, which numbers the
    annotations 1, 2, ... in record order; the pairing is checked (count and image id), so a
    mismatch raises ValueError instead of attaching a value to the wrong lesion.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    parser.add_argument("--root", default=None, help="dataset root (default: $CXR_DATASETS or ./datasets)")
    parser.add_argument("--split", default="all", choices=["train", "val", "test", "all"])
    parser.add_argument("--classes", nargs="+", default=None, help='class names, or "all" (default: the config\'s)')
    parser.add_argument("--readers", default=None, help="reader mode (REFLACX: reading|pooled|fused; VinDr: all|fused|<rad_id>)")
    parser.add_argument("--config-file", default="", help="take the other CXR.* options from this config")
    parser.add_argument("--output", required=True, help="COCO JSON file to write")
    args = parser.parse_args()

    cfg = get_cxr_cfg(args.config_file or None)
    load = LOADERS[args.dataset]
    options = dataset_options(cfg, args.dataset)["registrar"]
    if args.classes:
        options["classes"] = args.classes
    if args.readers:
        options["readers"] = args.readers
    root = args.root or cfg.CXR.DATASET_ROOT or None

    skips = SkipLog(args.dataset)
    records = load(root, args.split, skip_log=skips, **options)
    class_names = _class_names(args.dataset, options["classes"])

    name = f"_convert_to_coco_{args.dataset}_{args.split}"
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=class_names)
    coco = carry_annotation_fields(convert_to_coco_dict(name), records)
    coco["info"]["description"] = (
        f"{args.dataset} split={args.split} readers={options['readers']} converted by cxr_det tools/convert_to_coco.py"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(coco, f)

    per_class = Counter(a["category_id"] for a in coco["annotations"])
    empty = sum(1 for r in records if not r["annotations"])
    print(f"\n{args.dataset} {args.split} ({options['readers']}): {len(coco['images'])} images "
          f"({empty} without annotations), {len(coco['annotations'])} annotations -> {args.output}\n")
    print(tabulate([(c, per_class[i]) for i, c in enumerate(class_names)], headers=["class", "annotations"], tablefmt="github"))
    if args.dataset == "reflacx":
        min_certainty = options.get("min_certainty", 0)
        rows = [(level, REFLACX_CERTAINTY_NAMES.get(level, "?"), n) for level, n in certainty_counts(records).items()]
        print()
        print(tabulate(rows, headers=["certainty", "name", "annotations"], tablefmt="github"))
        print(certainty_rule(min_certainty))
    if len(skips):
        print()
        print(tabulate(skips.as_rows(), headers=["skipped", "count"], tablefmt="github"))
    else:
        print("\nnothing skipped")


def _class_names(dataset, classes):
    from cxr_det.data.datasets.common import resolve_classes
    from cxr_det.data.datasets.labels import REFLACX_LESION_LABELS, VINDR_LOCAL_LABELS

    available = REFLACX_LESION_LABELS if dataset == "reflacx" else VINDR_LOCAL_LABELS
    return resolve_classes(classes, available, dataset)


if __name__ == "__main__":
    main()
