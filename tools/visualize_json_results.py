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
import os
from collections import defaultdict

import cv2
import numpy as np
from tqdm import tqdm

import cxr_det  # noqa: F401

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from cxr_det.data.datasets.builtin import register_from_config
from cxr_det.engine import RunConfigError, get_cxr_cfg
from cxr_det.engine.run import check_image_frame, find_run_file, read_run_file
from cxr_det.utils.visualizer import (
    MIN_LONG_SIDE,
    ground_truth_title,
    load_rgb,
    predictions_title,
    render_ground_truth,
    render_predictions,
    side_by_side,
)


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

    run_file = args.run or find_run_file(args.input)
    try:
        record = read_run_file(run_file) if run_file else None
        if record is not None and not args.config_file:
            cfg = record.config()
            cfg.merge_from_list(args.opts)
        else:
            cfg = get_cxr_cfg(args.config_file or None, args.opts)
        if record is not None:
            check_image_frame(cfg, record, args.input)
    except RunConfigError as e:
        raise SystemExit(f"visualize_json_results.py: {e}")
    register_from_config(cfg)
    with open(args.input) as f:
        results = json.load(f)
    if not results:
        print(f"warning: {args.input} holds no predictions (an untrained or barely trained model?); "
              "only the ground truth will show")
    by_image = defaultdict(list)
    for r in results:
        if r["score"] >= args.conf_threshold:
            by_image[r["image_id"]].append(r)

    records = DatasetCatalog.get(args.dataset)
    class_names = MetadataCatalog.get(args.dataset).thing_classes
    known = {r["image_id"] for r in records}
    unknown = {r["image_id"] for r in results} - known
    if unknown:
        raise SystemExit(
            f"{args.input}: {len(unknown)} image_id(s) not in dataset {args.dataset} (e.g. {sorted(unknown)[:3]}); "
            "were the results made on another dataset or with other CXR.* options?"
        )
    if args.num:
        records = records[: args.num]
    os.makedirs(args.output, exist_ok=True)
    for record in tqdm(records, desc="drawing"):
        image = load_rgb(record["file_name"])
        above = sorted(by_image.get(record["image_id"], []), key=lambda p: -p["score"])
        preds = above[: max(args.max_drawn, 0)]
        boxes = [BoxMode.convert(p["bbox"], BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for p in preds]
        n_gt = sum(not a.get("iscrowd", 0) for a in record.get("annotations", []))
        gt = render_ground_truth(image, record, class_names, show_readers=False, min_long_side=MIN_LONG_SIDE,
                                 title=ground_truth_title(n_gt))
        pr = render_predictions(image, np.asarray(boxes), [p["score"] for p in preds], [p["category_id"] for p in preds],
                                class_names, min_long_side=MIN_LONG_SIDE,
                                title=predictions_title(len(above), args.conf_threshold)
                                + (f", best {len(preds)} drawn" if len(preds) < len(above) else ""))
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        panels = side_by_side(gt.image, pr.image)
        image_id = record["image_id"]
        prefix = f"{image_id:05d}" if isinstance(image_id, int) else str(image_id)
        name = f"{prefix}_{stem}.png" if prefix != stem else f"{stem}.png"
        cv2.imwrite(os.path.join(args.output, name), panels[:, :, ::-1])
    print(f"wrote {len(records)} image(s) to {args.output} (left: ground truth, right: predictions >= {args.conf_threshold})")


if __name__ == "__main__":
    main()
