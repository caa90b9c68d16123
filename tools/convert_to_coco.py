#!/usr/bin/env python
"""Convert REFLACX or VinDr-CXR, as shipped, to a standard COCO JSON file.

    tools/convert_to_coco.py --dataset reflacx --split train --output reflacx_train.json
    tools/convert_to_coco.py --dataset vindr --root /data --split val --classes "Aortic enlargement" Cardiomegaly \
        --readers fused --output vindr_val.json

Boxes are COCO XYWH in the pixels of the image each entry's ``file_name`` points to;
masks are polygons (REFLACX: the radiologists' ellipses; VinDr: the boxes). Prints a
summary: images, annotations per class, and the rows that were skipped and why.
"""
import argparse
import json
import os
from collections import Counter

from tabulate import tabulate

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict

from cxr_det.data.datasets.builtin import reflacx_options, vindr_options
from cxr_det.data.datasets.common import SkipLog
from cxr_det.data.datasets.reflacx import load_reflacx
from cxr_det.data.datasets.vindr import load_vindr
from cxr_det.engine import get_cxr_cfg

LOADERS = {"reflacx": (load_reflacx, reflacx_options), "vindr": (load_vindr, vindr_options)}


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
    load, options_of = LOADERS[args.dataset]
    options = options_of(cfg)
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
    coco = convert_to_coco_dict(name)
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
