#!/usr/bin/env python
"""Draw the ground truth of a registered dataset (boxes, ellipse masks, classes, readers) to PNGs.

    tools/visualize_data.py --dataset reflacx_train --output output/gt [--num 20]
    tools/visualize_data.py --config-file cfg.yaml --dataset vindr_val --output ... [opts]
"""
import argparse
import os

import cv2
from tqdm import tqdm

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.builtin import register_from_config
from cxr_det.engine import get_cxr_cfg
from cxr_det.utils.visualizer import MIN_LONG_SIDE, ground_truth_title, load_rgb, render_ground_truth


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="registered dataset name, e.g. reflacx_train")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--config-file", default="", help="config whose CXR.* options select classes/readers")
    parser.add_argument("--num", type=int, default=0, help="draw at most this many images (0: all)")
    parser.add_argument("--scale", type=float, default=1.0, help="output scale, applied after small images are upscaled to %d px on the long side" % MIN_LONG_SIDE)
    parser.add_argument("--no-readers", action="store_true", help="do not print reader ids")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args()

    cfg = get_cxr_cfg(args.config_file or None, args.opts)
    register_from_config(cfg)
    records = DatasetCatalog.get(args.dataset)
    class_names = MetadataCatalog.get(args.dataset).thing_classes
    if args.num:
        records = records[: args.num]
    os.makedirs(args.output, exist_ok=True)
    for record in tqdm(records, desc=f"drawing {args.dataset}"):
        n = sum(not a.get("iscrowd", 0) for a in record.get("annotations", []))
        drawn = render_ground_truth(
            load_rgb(record["file_name"]), record, class_names, not args.no_readers, args.scale,
            min_long_side=MIN_LONG_SIDE, title=ground_truth_title(n),
        ).image
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        cv2.imwrite(os.path.join(args.output, f"{record['image_id']:05d}_{stem}.png"), drawn[:, :, ::-1])
    print(f"wrote {len(records)} image(s) to {args.output}")


if __name__ == "__main__":
    main()
