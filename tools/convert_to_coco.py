#!/usr/bin/env python
"""Convert REFLACX or VinDr-CXR, as shipped, to a standard COCO JSON file.

    tools/convert_to_coco.py --dataset reflacx --split train --output reflacx_train.json
    tools/convert_to_coco.py --dataset vindr --root /data --split val --classes "Aortic enlargement" Cardiomegaly \
        --readers weighted_boxes_fusion --output vindr_val.json

Boxes are COCO XYWH in the pixels of the image each entry's ``file_name`` points to;
masks are polygons (REFLACX: the radiologists' ellipses; VinDr: the boxes). Besides the
COCO fields each annotation keeps ``readers`` (reading ids / rad_ids) and, for REFLACX,
``certainty`` (1 Unlikely .. 5 Consistent with). Prints a summary: images, annotations per
class (and per certainty for REFLACX), and the rows that were skipped and why.
"""
import argparse

import cxr_det  # noqa: F401

from cxr_det.config import get_cxr_cfg
from cxr_det.data.datasets.builtin import dataset_options
from cxr_det.data.coco_export import LOADERS, export_coco, export_summary
from cxr_det.utils.atomic import atomic_write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, choices=sorted(LOADERS))
    parser.add_argument("--root", default=None, help="dataset root (default: $CXR_DATASETS or ./datasets)")
    parser.add_argument("--split", default="all", choices=["train", "val", "test", "all"])
    parser.add_argument("--classes", nargs="+", default=None, help='class names, or "all" (default: the config\'s)')
    parser.add_argument("--readers", default=None,
                        help="reader mode (REFLACX: all_readers|per_reading|mean_ellipse; VinDr: "
                        "all_readers|weighted_boxes_fusion|<rad_id>; the old names still work, with a warning)")
    parser.add_argument("--config-file", default="", help="take the other CXR.* options from this config")
    parser.add_argument("--output", required=True, help="COCO JSON file to write")
    args = parser.parse_args()

    cfg = get_cxr_cfg(args.config_file or None)
    options = dataset_options(cfg, args.dataset)["registrar"]
    if args.classes:
        options["classes"] = args.classes
    if args.readers:
        options["readers"] = args.readers
    root = args.root or cfg.CXR.DATASET_ROOT or None

    coco, records, class_names, skips = export_coco(args.dataset, root, args.split, options)
    atomic_write_json(args.output, coco)  # a failure or a kill leaves no partial file
    print(export_summary(args.dataset, args.split, options, coco, records, class_names, skips, args.output))


if __name__ == "__main__":
    main()
