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
import logging
import sys

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)

from cxr_det.evaluation.run_comparison import write_paired_comparison
from cxr_det.evaluation.coco_files import load_evaluation_inputs, load_no_finding_scores, load_predictions
from cxr_det.evaluation.core import InputReport, evaluate_detections
from cxr_det.evaluation.options import add_option_flags, options_from_args
from cxr_det.evaluation.report import format_tables, title

logger = logging.getLogger("cxr_det.tools.evaluate")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--predictions", required=True, help="COCO detection results JSON")
    parser.add_argument("--output", required=True, help="folder for metrics.json, per_class.csv and plots")
    add_option_flags(parser)
    parser.add_argument("--no-finding-scores", default=None, help="JSON of the model's own normal-image scores")
    parser.add_argument("--compare", default=None, metavar="B_JSON",
                        help="COCO results of a second model: paired comparison B - A on the same ground truth")
    parser.add_argument("--compare-no-finding-scores", default=None, help="normal-image scores of the --compare model")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the evaluation; returns the results dict (protocol -> metric -> value), or with
    ``--compare`` the comparison dict."""
    args = parse_args(argv)
    report = InputReport()
    records, predictions, class_names, cat_to_index = load_evaluation_inputs(
        args.gt, args.predictions, args.no_finding_scores, report
    )
    options = options_from_args(args, bootstrap=0 if args.compare else None)
    counts = f"{len(records)} images, {sum(len(r['annotations']) for r in records)} GT boxes, {len(class_names)} classes"
    if args.compare:
        if args.bootstrap <= 0:
            raise SystemExit("--compare needs --bootstrap > 0 resamples")
        no_finding_b = load_no_finding_scores(args.compare_no_finding_scores) if args.compare_no_finding_scores else None
        predictions_b = load_predictions(args.compare, cat_to_index, no_finding_b, report)
        print(f"{counts}; A = {args.predictions}, B = {args.compare}; {args.bootstrap} paired resamples "
              f"(seed {args.bootstrap_seed})")
        result, text, path = write_paired_comparison(
            args.output, records, predictions, predictions_b, class_names, options, args.bootstrap,
            args.bootstrap_seed, report, names=(args.predictions, args.compare),
        )
        for line in report.lines():
            print(f"input: {line}")
        print(text)
        print(f"\nWritten to {path}")
        return result
    results = evaluate_detections(records, predictions, class_names, options, output_dir=args.output, report=report)
    print(counts)
    for line in report.lines():
        print(f"input: {line}")
    for task, table in format_tables(results).items():
        print(f"\n## {title(task)}\n\n{table}")
    print(f"\nWritten to {args.output}")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    main()
