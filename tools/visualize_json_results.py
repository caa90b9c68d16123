#!/usr/bin/env python
"""Draw ground truth and predictions side by side from a COCO-format results file.

    tools/visualize_json_results.py --input output/inference/reflacx_val/coco_instances_results.json \
        --dataset reflacx_val --output output/predictions [--conf-threshold 0.3] [--run OUTPUT_DIR | --config-file cfg.yaml]

The dataset options (class set, reader mode, VinDr PNG cache) come from the training run:
``--run``, or the ``run.json`` found above ``--input``; a ``--config-file`` that would read the
images in another frame than the predictions' (e.g. the full DICOM for predictions made on
the PNG cache) is refused.
"""
import argparse
import json

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.data.datasets.builtin import register_from_config
from cxr_det.engine import RunConfigError
from cxr_det.engine.run_config import results_config
from cxr_det.utils.drawing_files import draw_results, results_by_image


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="coco_instances_results.json")
    parser.add_argument("--dataset", required=True, help="registered dataset the results are for")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--conf-threshold", type=float, default=0.3, help="draw predictions scoring at least this")
    parser.add_argument("--run", default="", help="training OUTPUT_DIR (or its run.json) the predictions come from")
    parser.add_argument("--config-file", default="", help="config whose CXR.* options were used for training")
    parser.add_argument("--num", type=int, default=0, help="draw at most this many images (0: all)")
    parser.add_argument("--max-drawn", type=int, default=20, help="predicted boxes drawn per image at most, best first")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args()

    try:
        cfg = results_config(args.input, args.run, args.config_file, args.opts)
    except RunConfigError as e:
        raise SystemExit(f"visualize_json_results.py: {e}")
    register_from_config(cfg)
    with open(args.input) as f:
        results = json.load(f)
    if not results:
        print(f"warning: {args.input} holds no predictions (an untrained or barely trained model?); "
              "only the ground truth will show")
    records = DatasetCatalog.get(args.dataset)
    class_names = MetadataCatalog.get(args.dataset).thing_classes
    try:
        by_image = results_by_image(results, records, args.conf_threshold, args.input, args.dataset)
    except ValueError as e:
        raise SystemExit(str(e))
    if args.num:
        records = records[: args.num]
    draw_results(records, by_image, class_names, args.output, args.conf_threshold, args.max_drawn)
    print(f"wrote {len(records)} image(s) to {args.output} (left: ground truth, right: predictions >= {args.conf_threshold})")


if __name__ == "__main__":
    main()
