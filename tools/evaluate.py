#!/usr/bin/env python
"""Evaluate detections from files with every chest X-ray protocol of cxr_det.

    tools/evaluate.py --gt val_coco.json --predictions coco_instances_results.json --output eval/
    tools/evaluate.py --gt gt.json --predictions results.json --output eval/ --protocols vinbigdata froc \
        --froc-criterion center --iobb-threshold 0.25
    tools/evaluate.py --gt gt.json --predictions image_only.json --compare clinical.json --output cmp/

Ground truth is a COCO JSON file; predictions are COCO detection results from any
framework (``image_id``, ``category_id``, ``bbox`` as XYWH, ``score``, optional
``segmentation`` RLE). Category ids are mapped through the ground truth's categories
(sorted by id, as detectron2 does); image ids may be integers or strings (VinDr's md5
ids). Images without predictions count as predicting nothing; ground-truth boxes with width
or height <= 0, predictions for unknown images or categories, and non-contiguous category
ids are counted and reported (printed, and under ``input_checks`` in metrics.json).
Prints one table per protocol, with bootstrap 95% confidence intervals over images
(``--bootstrap``, 1000 resamples by default, 0 = off), and writes metrics.json,
per_class.csv and PNG curves to --output: the same computation as CXRDetectionEvaluator.

``--compare B.json``: a paired comparison of the predictions B against --predictions (A)
on the same ground truth: per class and overall, B - A with its paired-bootstrap 95%
interval and p-value for AP50, mAP@0.4, CPM and AUC; written to comparison.json.
"""
import argparse
import json
import logging
import os
import sys
from dataclasses import asdict

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)

from cxr_det.evaluation.bootstrap import paired_comparison
from cxr_det.evaluation.coco_files import load_ground_truth, load_no_finding_scores, load_predictions
from cxr_det.evaluation.core import (
    PROTOCOLS,
    EvalOptions,
    InputReport,
    build_image_boxes,
    drop_bad_gt_boxes,
    evaluate_detections,
)
from cxr_det.evaluation.protocols import FROC_RULES, VINBIGDATA_MATCHING
from cxr_det.evaluation.report import TITLES, json_safe, format_tables
from tabulate import tabulate

logger = logging.getLogger("cxr_det.tools.evaluate")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--predictions", required=True, help="COCO detection results JSON")
    parser.add_argument("--output", required=True, help="folder for metrics.json, per_class.csv and plots")
    defaults = EvalOptions()
    parser.add_argument("--protocols", nargs="+", default=list(defaults.protocols), choices=PROTOCOLS)
    parser.add_argument("--vinbigdata-iou", type=float, default=defaults.vinbigdata_iou)
    parser.add_argument("--vinbigdata-matching", choices=VINBIGDATA_MATCHING, default=defaults.vinbigdata_matching,
                        help="voc: the VOC devkit's (Kaggle metric); greedy: best still-free GT box")
    parser.add_argument("--iobb-threshold", type=float, default=defaults.iobb_threshold)
    parser.add_argument("--iobb-max-dets", type=int, default=defaults.iobb_max_dets, help="0: keep all")
    parser.add_argument("--froc-fps", type=float, nargs="+", default=list(defaults.froc_fps))
    parser.add_argument("--froc-criterion", choices=["iou", "center"], default=defaults.froc_criterion)
    parser.add_argument("--froc-iou", type=float, default=defaults.froc_iou)
    parser.add_argument("--froc-rule", choices=FROC_RULES, default=defaults.froc_rule,
                        help="one_to_one: a second hit of a found lesion is a FP; luna16: it is ignored")
    parser.add_argument(
        "--image-thresholds", type=float, nargs="+", default=list(defaults.image_thresholds),
        help="one value, one per class, or one per class then one for 'any'",
    )
    parser.add_argument("--no-finding-scores", default=None, help="JSON of the model's own normal-image scores")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG curves")
    parser.add_argument("--coco-backend", choices=["faster", "pycocotools"], default="faster")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="resamples of the images for 95%% confidence intervals (0: none)")
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    parser.add_argument("--compare", default=None, metavar="B_JSON",
                        help="COCO results of a second model: paired comparison B - A on the same ground truth")
    parser.add_argument("--compare-no-finding-scores", default=None, help="normal-image scores of the --compare model")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the evaluation; returns the results dict (protocol -> metric -> value)."""
    args = parse_args(argv)
    report = InputReport()
    records, class_names, cat_to_index = load_ground_truth(args.gt, report)
    no_finding = load_no_finding_scores(args.no_finding_scores) if args.no_finding_scores else None
    predictions = load_predictions(args.predictions, cat_to_index, no_finding, report)
    options = EvalOptions(
        protocols=tuple(args.protocols),
        vinbigdata_iou=args.vinbigdata_iou,
        iobb_threshold=args.iobb_threshold,
        iobb_max_dets=args.iobb_max_dets,
        froc_fps=tuple(args.froc_fps),
        froc_criterion=args.froc_criterion,
        froc_iou=args.froc_iou,
        image_thresholds=tuple(args.image_thresholds),
        plots=not args.no_plots,
        use_faster_coco_eval=args.coco_backend == "faster",
        vinbigdata_matching=args.vinbigdata_matching,
        froc_rule=args.froc_rule,
        bootstrap=0 if args.compare else args.bootstrap,
        bootstrap_seed=args.bootstrap_seed,
    )
    if args.compare:
        return compare(args, records, class_names, cat_to_index, predictions, options, report)
    results = evaluate_detections(records, predictions, class_names, options, output_dir=args.output, report=report)
    print(f"{len(records)} images, {sum(len(r['annotations']) for r in records)} GT boxes, {len(class_names)} classes")
    for line in report.lines():
        print(f"input: {line}")
    for task, table in format_tables(results).items():
        print(f"\n## {TITLES.get(task, task)}\n\n{table}")
    print(f"\nWritten to {args.output}")
    return results


def compare(args, records, class_names, cat_to_index, predictions_a, options, report):
    """Paired bootstrap comparison of --compare (B) against --predictions (A); prints one
    table per metric and writes ``comparison.json``. Returns the comparison dict (see
    :func:`cxr_det.evaluation.bootstrap.paired_comparison`)."""
    if args.bootstrap <= 0:
        raise SystemExit("--compare needs --bootstrap > 0 resamples")
    no_finding_b = load_no_finding_scores(args.compare_no_finding_scores) if args.compare_no_finding_scores else None
    predictions_b = load_predictions(args.compare, cat_to_index, no_finding_b, report)
    records = drop_bad_gt_boxes(records, report)
    images_a, _ = build_image_boxes(records, predictions_a, len(class_names), report)
    images_b, _ = build_image_boxes(records, predictions_b, len(class_names), report)
    result = paired_comparison(images_a, images_b, class_names, options, args.bootstrap, args.bootstrap_seed)
    print(f"{len(records)} images, {sum(len(r['annotations']) for r in records)} GT boxes, {len(class_names)} classes; "
          f"A = {args.predictions}, B = {args.compare}; {args.bootstrap} paired resamples (seed {args.bootstrap_seed})")
    for line in report.lines():
        print(f"input: {line}")
    for metric, rows in result.items():
        body = [[row, v["A"], v["B"], v["difference"], f"[{v['low']:.2f}, {v['high']:.2f}]", v["p_value"]]
                for row, v in rows.items()]
        print(f"\n## {metric}: B - A, paired bootstrap 95% CI\n")
        print(tabulate(body, headers=["class", "A", "B", "B - A", "95% CI", "p"], tablefmt="pipe", floatfmt=".3f"))
    os.makedirs(args.output, exist_ok=True)
    path = os.path.join(args.output, "comparison.json")
    with open(path, "w") as f:
        json.dump(json_safe({"A": args.predictions, "B": args.compare, "resamples": args.bootstrap,
                              "seed": args.bootstrap_seed, "options": asdict(options),
                              "input_checks": report.as_dict(), "comparison": result}), f, indent=2)
    print(f"\nWritten to {path}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    main()
