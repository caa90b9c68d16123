#!/usr/bin/env python
"""Detect lesions on, or classify, PNG/JPEG/TIFF/DICOM chest X-rays with a trained run: PNGs and JSON out.

    tools/predict.py --run output/demo_clinical --input scans/ --output out/ [--clinical vitals.csv]
    tools/predict.py --config-file cfg.yaml --input x.dicom --output out/ MODEL.WEIGHTS model_final.pth
    tools/predict.py --run output/demo_clinical --describe      # classes, clinical fields, units, ranges

The model is built from the run's own record (config, classes, clinical statistics); a
repository config may be given too (its model keys must agree and are taken from the run).
Outputs mirror the input tree: ``out/<relative path without suffix>.json`` and ``.png``
(inputs differing only in their suffix keep it), plus
``predictions.json`` (all images) and ``summary.json`` (counts, skipped files, clinical
problems). Detectors: boxes in each input file's own pixels (DICOM: its grid), drawn on the
PNG. Image classifiers (``ClinicalImageClassifier``): each label's probability and the
decision at the run's thresholds (``<run>/inference/<threshold dataset>/thresholds.json``,
else 0.5, said in the output), and a PNG of the X-ray with the Grad-CAM overlays of the
positive / most probable labels (``--saliency-labels``; ``--no-saliency`` writes none).

Clinical values: a CSV with a ``file_name`` column (path relative to the ``--input`` folder,
or the bare file name when names are unique) or a JSON object keyed the same way (or one
record for one image). Unknown fields, missing features, unparseable values and unknown
categories are reported per file; ``--strict`` makes them errors. Models trained with
``CXR.CLINICAL.SOURCE dicom`` also read PatientAge / PatientSex from DICOM inputs.
Unreadable image files are skipped, counted and listed.
"""
import argparse
import logging
import os
import sys

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401

from detectron2.utils.logger import setup_logger

from cxr_det.engine import RunConfigError, inference_config
from cxr_det.engine.classification_predict import (
    classification_report_lines,
    decision_rule,
    describe_classifier,
    predict_classification_files,
)
from cxr_det.engine.classification_setup import is_classifier
from cxr_det.engine.inference import describe_inputs, find_inputs, load_clinical_inputs, match_clinical
from cxr_det.engine.predict_files import check_clinical_inputs, predict_files, report_lines, write_outputs
from cxr_det.engine.predictor import ClassificationPredictor, CXRPredictor
from cxr_det.engine.run_config import class_names_of

logger = logging.getLogger("cxr_det.predict")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="", help="training OUTPUT_DIR or checkpoint (.pth) to predict with")
    parser.add_argument("--config-file", default="", help="config (optional with --run)")
    parser.add_argument("--input", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--output", help="folder for the JSON and PNG files")
    parser.add_argument("--clinical", default="", help="CSV or JSON of clinical values (see --describe)")
    parser.add_argument("--conf-threshold", type=float, default=0.3, help="detectors: keep boxes scoring at least this")
    parser.add_argument("--strict", action="store_true", help="clinical input problems are errors, not warnings")
    parser.add_argument("--max-drawn", type=int, default=20,
                        help="detectors: draw at most this many boxes per image, best first (the JSON has all)")
    parser.add_argument("--describe", action="store_true", help="print the model's classes and clinical fields, then exit")
    parser.add_argument("--saliency-labels", type=int, default=3,
                        help="classifiers: Grad-CAM overlays per image, positive labels first, then the most probable")
    parser.add_argument("--no-saliency", action="store_true", help="classifiers: write the JSON only, no Grad-CAM PNG")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if not args.describe and not (args.input and args.output):
        parser.error("--input and --output are required (or --describe)")
    if args.saliency_labels < 1:
        parser.error(f"--saliency-labels must be at least 1, got {args.saliency_labels} (--no-saliency: no pictures)")
    return args


def main(argv=None):
    args = parse_args(argv)
    setup_logger(name="cxr_det", abbrev_name="cxr")
    try:
        cfg = inference_config(args.run, args.config_file, args.opts)
    except RunConfigError as e:
        sys.exit(f"predict.py: {e}")
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.conf_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.conf_threshold
    cfg.freeze()
    class_names = class_names_of(cfg)
    classifier = is_classifier(cfg)
    predictor = ClassificationPredictor(cfg) if classifier else CXRPredictor(cfg)
    featurizer = predictor.clinical_featurizer
    try:
        rule = decision_rule(cfg, class_names, predictor.task) if classifier else None
    except ValueError as e:
        sys.exit(f"predict.py: {e}")
    if args.describe:
        if classifier:
            print(describe_classifier(rule))
        print(describe_inputs(class_names, featurizer, cfg.CXR.CLINICAL.SOURCE if featurizer else ""))
        return

    try:
        images = find_inputs(args.input)
        table, single = load_clinical_inputs(args.clinical) if args.clinical else ({}, None)
        clinical, unmatched = match_clinical(images, table, single)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"predict.py: {e}")
    if args.clinical and featurizer is None:
        logger.warning(f"--clinical {args.clinical}: this model does not use clinical data; ignored")
    if unmatched:
        logger.warning(f"--clinical: {len(unmatched)} record(s) match no input image, e.g. {unmatched[:3]}")
    from_dicom = featurizer is not None and cfg.CXR.CLINICAL.SOURCE == "dicom"

    check = check_clinical_inputs(images, clinical, table, single, featurizer,
                                  given=bool(args.clinical), from_dicom=from_dicom)
    problems, file_problems = check.problems, check.file_problems
    if file_problems:
        logger.warning(f"--clinical {args.clinical}: " + "; ".join(file_problems)
                       + f". The model's fields: {', '.join(list(featurizer.numeric) + list(featurizer.categorical))}"
                       " (tools/predict.py --describe)")
    if (problems or file_problems) and args.strict:
        listed = "\n".join([f"  {args.clinical}: {p}" for p in file_problems]
                           + [f"  {k}: {'; '.join(v)}" for k, v in list(problems.items())[:20]])
        n = len(problems) + (1 if file_problems else 0)
        sys.exit(f"predict.py --strict: {n} clinical input problem(s):\n{listed}")

    os.makedirs(args.output, exist_ok=True)
    if classifier:
        saliency_labels = 0 if args.no_saliency else args.saliency_labels
        everything, skipped = predict_classification_files(predictor, cfg, images, clinical, problems, args.output,
                                                           rule, saliency_labels=saliency_labels, from_dicom=from_dicom)
        summary = write_outputs(args.output, images, everything, skipped, check, unmatched)
        print("\n".join(classification_report_lines(summary, everything, args.output, rule, bool(saliency_labels),
                                                     args.clinical)))
        return
    everything, skipped = predict_files(predictor, cfg, images, clinical, problems, class_names, args.output,
                                        conf_threshold=args.conf_threshold, max_drawn=args.max_drawn,
                                        from_dicom=from_dicom)

    summary = write_outputs(args.output, images, everything, skipped, check, unmatched)
    print("\n".join(report_lines(summary, everything, args.output, args.conf_threshold, args.clinical)))


if __name__ == "__main__":
    main()
