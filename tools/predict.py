#!/usr/bin/env python
"""Detect lesions on PNG/JPEG/DICOM chest X-rays: annotated PNGs and JSON out.

    tools/predict.py --config-file cfg.yaml --input xray.dicom folder/ --output out/ \
        [--clinical clinical.json|clinical.csv] [--conf-threshold 0.3] MODEL.WEIGHTS model_final.pth

Boxes are in the pixel coordinates of each input file (DICOM: the DICOM's own grid).
Clinical values (with CXR.CLINICAL.ENABLED): a JSON object for one image, a JSON object
mapping file names to records, or a CSV with a ``file_name`` column; missing values allowed.
"""
import argparse
import json
import math
import os
from pathlib import Path

import cv2
import pandas as pd
from tqdm import tqdm

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401

from detectron2.data import MetadataCatalog

from cxr_det.data.datasets.builtin import register_from_config
from cxr_det.data.image_io import read_image
from cxr_det.engine import class_head_key, get_cxr_cfg
from cxr_det.engine.predictor import CXRPredictor
from cxr_det.utils.visualizer import draw_predictions

SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")


def find_images(paths):
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise SystemExit(f"--input {path}: no such file or folder")
    if not files:
        raise SystemExit(f"--input {paths}: no {'/'.join(SUFFIXES)} images found")
    return files


def load_clinical(path, files):
    """{file name: raw record} from a JSON or CSV file (None: no clinical data)."""
    if not path:
        return {}
    if path.endswith(".csv"):
        frame = pd.read_csv(path)
        if "file_name" not in frame.columns:
            raise SystemExit(f"--clinical {path}: needs a 'file_name' column; columns: {list(frame.columns)}")
        return {
            Path(row.pop("file_name")).name: {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            for row in frame.to_dict("records")
        }
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise SystemExit(f"--clinical {path}: expected a JSON object")
    if all(isinstance(v, dict) for v in data.values()) and data:
        return {Path(k).name: v for k, v in data.items()}
    if len(files) != 1:
        raise SystemExit(f"--clinical {path}: one record given but {len(files)} images; key records by file name")
    return {files[0].name: data}


def class_names_of(cfg):
    for name in tuple(cfg.DATASETS.TEST) + tuple(cfg.DATASETS.TRAIN):
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes:
            return list(classes)
    return [f"class {i}" for i in range(cfg.MODEL[class_head_key(cfg)].NUM_CLASSES)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", nargs="+", required=True, help="image files or folders")
    parser.add_argument("--output", required=True)
    parser.add_argument("--clinical", default="", help="JSON or CSV of clinical values")
    parser.add_argument("--conf-threshold", type=float, default=0.3, help="keep boxes scoring at least this")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE pairs, e.g. MODEL.WEIGHTS ...")
    args = parser.parse_args()

    cfg = get_cxr_cfg(args.config_file, args.opts)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.conf_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.conf_threshold
    register_from_config(cfg)
    cfg.freeze()
    class_names = class_names_of(cfg)
    files = find_images(args.input)
    clinical = load_clinical(args.clinical, files)
    predictor = CXRPredictor(cfg)

    os.makedirs(args.output, exist_ok=True)
    everything = []
    for path in tqdm(files, desc="predicting"):
        image = read_image(path, cfg.INPUT.FORMAT)
        instances = predictor(image, clinical.get(path.name))["instances"].to("cpu")
        boxes = instances.pred_boxes.tensor.numpy()
        scores = instances.scores.numpy()
        classes = instances.pred_classes.numpy()
        result = {
            "file_name": str(path),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "clinical": clinical.get(path.name),
            "instances": [
                {"bbox": [round(float(v), 2) for v in b], "bbox_mode": "XYXY_ABS", "category_id": int(c),
                 "class": class_names[c], "score": round(float(s), 4)}
                for b, s, c in zip(boxes, scores, classes)
            ],
            # Image-level probability of each finding: its highest box score (0 without a box).
            "image_probabilities": {
                name: round(float(scores[classes == i].max()) if (classes == i).any() else 0.0, 4)
                for i, name in enumerate(class_names)
            },
        }
        everything.append(result)
        stem = path.stem
        with open(os.path.join(args.output, f"{stem}.json"), "w") as f:
            json.dump(result, f, indent=2, default=str)
        rgb = image[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else (image.repeat(3, 2) if image.shape[2] == 1 else image)
        drawn = draw_predictions(rgb, boxes, scores, classes, class_names)
        cv2.imwrite(os.path.join(args.output, f"{stem}.png"), drawn[:, :, ::-1])
    with open(os.path.join(args.output, "predictions.json"), "w") as f:
        json.dump(everything, f, indent=2, default=str)
    print(f"{len(files)} image(s): annotated PNG + JSON in {args.output}")


if __name__ == "__main__":
    main()
