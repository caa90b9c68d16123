#!/usr/bin/env python
"""Detect lesions on PNG/JPEG/TIFF/DICOM chest X-rays with a trained run: annotated PNGs and JSON out.

    tools/predict.py --run output/demo_clinical --input scans/ --output out/ [--clinical vitals.csv]
    tools/predict.py --config-file cfg.yaml --input x.dicom --output out/ MODEL.WEIGHTS model_final.pth
    tools/predict.py --run output/demo_clinical --describe      # classes, clinical fields, units, ranges

The model is built from the run's own record (config, classes, clinical statistics); a
repository config may be given too (its model keys must agree and are taken from the run).
Outputs mirror the input tree: ``out/<relative path without suffix>.json`` and ``.png``
(inputs differing only in their suffix keep it), plus
``predictions.json`` (all images) and ``summary.json`` (counts, skipped files, clinical
problems). Boxes are in each input file's own pixels (DICOM: its grid).

Clinical values: a CSV with a ``file_name`` column (path relative to the ``--input`` folder,
or the bare file name when names are unique) or a JSON object keyed the same way (or one
record for one image). Unknown fields, missing features, unparseable values and unknown
categories are reported per file; ``--strict`` makes them errors. Models trained with
``CXR.CLINICAL.SOURCE dicom`` also read PatientAge / PatientSex from DICOM inputs.
Unreadable image files are skipped, counted and listed.
"""
import argparse
import json
import logging
import os
import sys

import cv2
from tqdm import tqdm

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401

from detectron2.utils.logger import setup_logger

from cxr_det.data.image_io import read_image, read_options_from_config
from cxr_det.engine import RunConfigError, inference_config
from cxr_det.engine.inference import (
    check_clinical_record,
    describe_inputs,
    dicom_clinical_record,
    find_inputs,
    load_clinical_inputs,
    match_clinical,
    output_stems,
    prediction_record,
    unknown_clinical_fields,
)
from cxr_det.engine.predictor import CXRPredictor
from cxr_det.engine.run import class_names_of
from cxr_det.utils.visualizer import MIN_LONG_SIDE, draw_predictions, predictions_title

logger = logging.getLogger("cxr_det.predict")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="", help="training OUTPUT_DIR or checkpoint (.pth) to predict with")
    parser.add_argument("--config-file", default="", help="config (optional with --run)")
    parser.add_argument("--input", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--output", help="folder for the JSON and PNG files")
    parser.add_argument("--clinical", default="", help="CSV or JSON of clinical values (see --describe)")
    parser.add_argument("--conf-threshold", type=float, default=0.3, help="keep boxes scoring at least this")
    parser.add_argument("--strict", action="store_true", help="clinical input problems are errors, not warnings")
    parser.add_argument("--max-drawn", type=int, default=20,
                        help="draw at most this many boxes per image, best first (the JSON has all)")
    parser.add_argument("--describe", action="store_true", help="print the model's classes and clinical fields, then exit")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs")
    args = parser.parse_args(argv)
    if not args.describe and not (args.input and args.output):
        parser.error("--input and --output are required (or --describe)")
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
    predictor = CXRPredictor(cfg)
    featurizer = predictor.clinical_featurizer
    if args.describe:
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

    problems, file_problems = {}, []
    if featurizer is not None:
        fields = sorted({f for record in table.values() for f in record}) if table else sorted(single or {})
        file_problems = unknown_clinical_fields(fields, featurizer)
        if file_problems:
            logger.warning(f"--clinical {args.clinical}: " + "; ".join(file_problems)
                           + f". The model's fields: {', '.join(list(featurizer.numeric) + list(featurizer.categorical))}"
                           " (tools/predict.py --describe)")
        for image in images:
            record = clinical[image.key]
            if from_dicom and record is None:
                continue  # read from the DICOM header below; checked there
            found = check_clinical_record(record, featurizer, fields=False)
            if found and (args.clinical or not from_dicom):
                problems[image.key] = found
        if (problems or file_problems) and args.strict:
            listed = "\n".join([f"  {args.clinical}: {p}" for p in file_problems]
                               + [f"  {k}: {'; '.join(v)}" for k, v in list(problems.items())[:20]])
            n = len(problems) + (1 if file_problems else 0)
            sys.exit(f"predict.py --strict: {n} clinical input problem(s):\n{listed}")

    os.makedirs(args.output, exist_ok=True)
    stems = output_stems(args.output, [image.key for image in images])
    everything, skipped = [], {}
    for image in tqdm(images, desc="predicting"):
        try:
            pixels = read_image(image.path, cfg.INPUT.FORMAT, **read_options_from_config(cfg))
        except Exception as e:  # noqa: BLE001 - a bad file is skipped, named and counted
            skipped[image.key] = f"{type(e).__name__}: {e}"
            problems.pop(image.key, None)
            logger.warning(f"{image.path}: skipped ({e})")
            continue
        record = clinical[image.key]
        if from_dicom:
            header = dicom_clinical_record(image.path)
            if header is not None:
                record = {**header, **(record or {})}
            found = check_clinical_record(record, featurizer, fields=False)
            if found:
                problems[image.key] = found
        instances = predictor(pixels, record)["instances"].to("cpu")
        result = prediction_record(image.key, instances, class_names, pixels.shape[0], pixels.shape[1],
                                   record, problems.get(image.key, ()), featurizer)
        everything.append(result)
        stem = stems[image.key]
        with open(stem + ".json", "w") as f:
            json.dump(result, f, indent=2, default=str, allow_nan=False)
        rgb = pixels[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else (pixels.repeat(3, 2) if pixels.shape[2] == 1 else pixels)
        shown = sorted(result["instances"], key=lambda d: -d["score"])[: max(args.max_drawn, 0)]
        title = f"{image.key} - {predictions_title(len(result['instances']), args.conf_threshold)}"
        if len(shown) < len(result["instances"]):
            title += f", best {len(shown)} drawn"
        drawn = draw_predictions(rgb, [d["bbox"] for d in shown], [d["score"] for d in shown],
                                 [d["category_id"] for d in shown], class_names, min_long_side=MIN_LONG_SIDE, title=title)
        cv2.imwrite(stem + ".png", drawn[:, :, ::-1])

    with open(os.path.join(args.output, "predictions.json"), "w") as f:
        json.dump(everything, f, indent=2, default=str, allow_nan=False)
    summary = {"images": len(images), "predicted": len(everything), "skipped": skipped,
               "clinical_file_problems": file_problems, "clinical_problems": problems,
               "clinical_unmatched": unmatched}
    with open(os.path.join(args.output, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"{len(everything)} of {len(images)} image(s) predicted: JSON + annotated PNG in {args.output}")
    empty = sum(not r["instances"] for r in everything)
    if empty:
        print(f"{empty} image(s) have no finding scoring >= {args.conf_threshold} (--conf-threshold sets the cut)")
    if skipped:
        print(f"{len(skipped)} file(s) skipped (unreadable):")
        for key, why in skipped.items():
            print(f"  {key}: {why}")
    for problem in file_problems:
        print(f"--clinical {args.clinical}: {problem}")
    if problems:
        print(f"clinical input problems in {len(problems)} image(s) (see summary.json; --strict makes them errors):")
        for key, found in list(problems.items())[:10]:
            print(f"  {key}: {'; '.join(found)}")


if __name__ == "__main__":
    main()
