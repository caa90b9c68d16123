#!/usr/bin/env python
"""Evaluate detections (or image-level classifications) from files with cxr_det's metrics.

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

Classification (``--dataset``): the predictions are a ``classification_predictions.json``
written by ClassificationEvaluator (one object per image: ``image_id``, ``scores``); the
ground truth is the registered dataset ``--dataset`` (registered from ``--config-file``,
``--root`` and trailing ``KEY VALUE`` config options, as tools/train_net.py does)::

    tools/evaluate.py --dataset chexpert_valid --root datasets --output eval/ \
        --predictions output/run/inference/chexpert_valid/classification_predictions.json \
        --thresholds output/run/inference/chexpert_val/thresholds.json

``--thresholds thresholds.json`` applies thresholds chosen on validation (else they are
chosen on these predictions by ``--threshold-rule``, default TEST.CXR_CLS_EVAL's);
``--bootstrap N`` gives 95% intervals of the per-label AUC and mAUC. Prints the tables and
writes metrics.json, classification_predictions.json, thresholds.json and the PNGs: the same
computation as the evaluator (cxr_det.evaluation.classification.evaluate_classification).
"""
import argparse
import logging
import sys

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)

from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data import register_from_config
from cxr_det.evaluation.classification import (
    THRESHOLD_RULES,
    classification_inputs,
    classification_task,
    evaluate_classification,
    format_classification_tables,
    read_classification_predictions,
    read_thresholds,
)
from cxr_det.evaluation.run_comparison import write_paired_comparison
from cxr_det.evaluation.coco_files import load_evaluation_inputs, load_no_finding_scores, load_predictions
from cxr_det.evaluation.core import InputReport, evaluate_detections
from cxr_det.evaluation.options import add_option_flags, options_from_args
from cxr_det.evaluation.report import format_tables, title

logger = logging.getLogger("cxr_det.tools.evaluate")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", default=None, help="detection: COCO ground-truth JSON")
    parser.add_argument("--predictions", required=True,
                        help="COCO detection results JSON, or with --dataset a classification_predictions.json")
    parser.add_argument("--output", required=True, help="folder for metrics.json, per_class.csv and plots")
    add_option_flags(parser)
    parser.add_argument("--no-finding-scores", default=None, help="JSON of the model's own normal-image scores")
    parser.add_argument("--compare", default=None, metavar="B_JSON",
                        help="COCO results of a second model: paired comparison B - A on the same ground truth")
    parser.add_argument("--compare-no-finding-scores", default=None, help="normal-image scores of the --compare model")
    cls = parser.add_argument_group("classification (image-level labels)")
    cls.add_argument("--dataset", default=None,
                     help="registered classification dataset whose labels are the ground truth: classification mode")
    cls.add_argument("--config-file", default="", help="config whose CXR.* options register the dataset")
    cls.add_argument("--root", default=None,
                     help="dataset root (CXR.DATASET_ROOT; default $CXR_DATASETS or ./datasets)")
    cls.add_argument("--thresholds", default=None,
                     help="thresholds.json chosen on validation (written by the evaluator); default: choose here")
    cls.add_argument("--threshold-rule", default=None, choices=THRESHOLD_RULES,
                     help="rule choosing thresholds without --thresholds (default TEST.CXR_CLS_EVAL.THRESHOLD_RULE)")
    cls.add_argument("--fixed-threshold", type=float, default=None,
                     help="threshold of the 'fixed' rule (default TEST.CXR_CLS_EVAL.FIXED_THRESHOLD)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="classification: config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.dataset is None:
        if args.gt is None:
            parser.error("detection needs --gt (COCO ground truth); classification needs --dataset")
        if args.opts:
            parser.error(f"unrecognized arguments: {' '.join(args.opts)} (config options are for --dataset)")
    elif args.gt or args.compare or args.no_finding_scores:
        parser.error("--dataset (classification) does not take --gt, --compare or --no-finding-scores")
    return args


def classification_main(args):
    """Classification mode: the metrics of ``args.predictions`` on the dataset ``args.dataset``;
    returns ``{"classification": {metric: value}}`` as ClassificationEvaluator does."""
    cfg = get_cxr_cfg(args.config_file or None, args.opts)
    if args.root:
        cfg.CXR.DATASET_ROOT = args.root
    register_from_config(cfg)
    if args.dataset not in DatasetCatalog.list():
        raise SystemExit(f"--dataset {args.dataset!r} is not registered; "
                         f"registered: {', '.join(sorted(DatasetCatalog.list()))}")
    metadata = MetadataCatalog.get(args.dataset)
    class_names = list(metadata.get("thing_classes", None) or [])
    if not class_names:
        raise SystemExit(f"--dataset {args.dataset!r} has no thing_classes (label names) in its metadata")
    records = DatasetCatalog.get(args.dataset)
    task = classification_task(records, cfg.CXR.CLASSIFIER.TASK or metadata.get("task", None), args.dataset)
    predictions = read_classification_predictions(args.predictions, len(class_names))
    inputs = classification_inputs(records, predictions, class_names, task, args.dataset)
    thresholds = read_thresholds(args.thresholds, class_names, task) if args.thresholds else None
    options = cfg.TEST.CXR_CLS_EVAL
    metrics, _ = evaluate_classification(
        inputs, thresholds,
        threshold_rule=args.threshold_rule or options.THRESHOLD_RULE,
        fixed_threshold=options.FIXED_THRESHOLD if args.fixed_threshold is None else args.fixed_threshold,
        bootstrap=args.bootstrap, bootstrap_seed=args.bootstrap_seed, output_dir=args.output, plots=args.plots,
        dataset_name=args.dataset, threshold_source=args.thresholds or "",
    )
    print(f"{args.dataset}: {len(inputs.image_ids)} images, {len(class_names)} {task.replace('_', '-')} classes; "
          f"thresholds from {args.thresholds or 'these predictions'}")
    for key, value in inputs.checks.items():
        if value:
            print(f"input: {value} {key.replace('_', ' ')} left out")
    print(f"\n{format_classification_tables(metrics, class_names)}")
    print(f"\nWritten to {args.output}")
    return {"classification": dict(metrics.results)}


def main(argv=None):
    """Run the evaluation; returns the results dict (protocol -> metric -> value; with
    ``--dataset`` ``{"classification": ...}``), or with ``--compare`` the comparison dict."""
    args = parse_args(argv)
    if args.dataset:
        return classification_main(args)
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
