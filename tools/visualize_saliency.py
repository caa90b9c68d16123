#!/usr/bin/env python
"""Draw Grad-CAM overlays of a trained image classifier over a registered dataset.

    tools/visualize_saliency.py --run output/demo_classification/clinical --dataset chexpert_valid \\
        [--output DIR] [--max-images N] [--labels Cardiomegaly Edema] [--saliency-labels K] [KEY VALUE ...]

One PNG per image (``<image_id>_<file stem>.png``): the X-ray and one Grad-CAM overlay per
label, titled with its probability, the decision at the run's thresholds
(``<run>/inference/<threshold dataset>/thresholds.json``, else 0.5) and the ground truth.
``--labels`` draws those labels for every image; otherwise the positive (multi-label) or
decided (single-label) labels, then the most probable, ``--saliency-labels`` in all. The
dataset is registered from the run's config (``KEY VALUE`` pairs override it, e.g.
``CXR.DATASET_ROOT``); images go through the evaluation mapper, with their own clinical data.
Default output: ``<run>/saliency/<dataset>``.
"""
import argparse
import os
import sys

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401

from detectron2.data import DatasetCatalog
from detectron2.utils.logger import setup_logger

from cxr_det.data.datasets.builtin import cxr_dataset_names, register_from_config
from cxr_det.engine import RunConfigError, inference_config
from cxr_det.engine.classification_predict import decision_rule, draw_dataset_saliency, label_indices
from cxr_det.engine.classification_setup import is_classifier
from cxr_det.engine.predictor import ClassificationPredictor
from cxr_det.engine.run_config import class_names_of


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="training OUTPUT_DIR or checkpoint (.pth) of a classifier")
    parser.add_argument("--dataset", required=True, help="registered dataset to draw (e.g. chexpert_valid)")
    parser.add_argument("--output", default="", help="folder for the PNG files (default <run>/saliency/<dataset>)")
    parser.add_argument("--max-images", type=int, default=0, help="draw the first N images only (0: all)")
    parser.add_argument("--labels", nargs="+", default=None, help="label names to draw for every image")
    parser.add_argument("--saliency-labels", type=int, default=3,
                        help="without --labels: overlays per image, positive labels first, then the most probable")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.max_images < 0 or args.saliency_labels < 1:
        parser.error("--max-images must be >= 0 and --saliency-labels >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="cxr_det", abbrev_name="cxr")
    try:
        cfg = inference_config(args.run, "", args.opts)
    except RunConfigError as e:
        sys.exit(f"visualize_saliency.py: {e}")
    cfg.freeze()
    if not is_classifier(cfg):
        sys.exit(f"visualize_saliency.py: {args.run} is a {cfg.MODEL.META_ARCHITECTURE}, not an image classifier; "
                 "draw a detector's predictions with tools/visualize_json_results.py")
    register_from_config(cfg)
    if args.dataset not in DatasetCatalog.list():
        sys.exit(f"visualize_saliency.py: no dataset {args.dataset!r} registered from the run's config; "
                 f"its datasets: {', '.join(cxr_dataset_names(cfg))}")
    records = DatasetCatalog.get(args.dataset)
    if args.max_images:
        records = records[: args.max_images]
    class_names = class_names_of(cfg)
    predictor = ClassificationPredictor(cfg)
    try:
        rule = decision_rule(cfg, class_names, predictor.task)
        labels = label_indices(args.labels, class_names) if args.labels else None
    except ValueError as e:
        sys.exit(f"visualize_saliency.py: {e}")
    run_dir = args.run if os.path.isdir(args.run) else os.path.dirname(os.path.abspath(args.run))
    output = args.output or os.path.join(run_dir, "saliency", args.dataset)
    n = draw_dataset_saliency(predictor, cfg, records, rule, output, labels=labels, saliency_labels=args.saliency_labels)
    print(f"wrote {n} Grad-CAM picture(s) of {args.dataset} to {output}")
    print(rule.describe())


if __name__ == "__main__":
    main()
