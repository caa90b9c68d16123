#!/usr/bin/env python
"""Draw the ground truth of a registered dataset (boxes, ellipse masks, classes, readers) to PNGs.

    tools/visualize_data.py --dataset reflacx_train --output output/gt [--num 20]
    tools/visualize_data.py --config-file cfg.yaml --dataset vindr_val --output ... [opts]
"""
import argparse

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data.datasets.builtin import register_from_config
from cxr_det.utils.drawing import MIN_LONG_SIDE
from cxr_det.utils.drawing_files import draw_dataset


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
    draw_dataset(records, class_names, args.output, show_readers=not args.no_readers, scale=args.scale,
                 desc=f"drawing {args.dataset}")
    print(f"wrote {len(records)} image(s) to {args.output}")


if __name__ == "__main__":
    main()
