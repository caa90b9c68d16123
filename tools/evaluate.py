#!/usr/bin/env python
"""Evaluate detections from files with every chest X-ray protocol of cxr_det.

    tools/evaluate.py --gt val_coco.json --predictions coco_instances_results.json --output eval/
    tools/evaluate.py --gt gt.json --predictions results.json --output eval/ --protocols vinbigdata froc \
        --froc-criterion center --iobb-threshold 0.25

Ground truth is a COCO JSON file; predictions are COCO detection results from any
framework (``image_id``, ``category_id``, ``bbox`` as XYWH, ``score``, optional
``segmentation`` RLE). Category ids are mapped through the ground truth's categories
(sorted by id, as detectron2 does); images without predictions count as predicting
nothing. Prints one table per protocol and writes metrics.json, per_class.csv and PNG
curves to --output: the same computation as CXRDetectionEvaluator.
"""
import argparse
import json
import logging
import sys
from collections import Counter, OrderedDict

import numpy as np

import cxr_det  # noqa: F401  (applies detectron2 compatibility fixes first)

from detectron2.structures import BoxMode

from cxr_det.evaluation.core import PROTOCOLS, EvalOptions, evaluate_detections
from cxr_det.evaluation.report import TITLES, format_tables

logger = logging.getLogger("cxr_det.tools.evaluate")


def load_ground_truth(path):
    """COCO ground truth -> (detectron2 dataset dicts, class names, {category id: class index})."""
    with open(path) as f:
        data = json.load(f)
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    if not categories:
        raise ValueError(f"{path}: no categories")
    cat_to_index = {c["id"]: i for i, c in enumerate(categories)}
    annotations = {}
    for anno in data.get("annotations", []):
        if anno["category_id"] not in cat_to_index:
            raise ValueError(f"{path}: annotation {anno.get('id')} has unknown category_id {anno['category_id']}")
        record_anno = {
            "bbox": [float(v) for v in anno["bbox"]],
            "bbox_mode": BoxMode.XYWH_ABS,
            "category_id": cat_to_index[anno["category_id"]],
            "iscrowd": int(anno.get("iscrowd", 0)),
        }
        for key in ("area", "segmentation"):
            if key in anno:
                record_anno[key] = anno[key]
        annotations.setdefault(anno["image_id"], []).append(record_anno)
    records = [
        {
            "image_id": img["id"],
            "file_name": img.get("file_name", ""),
            "height": img.get("height", 0),
            "width": img.get("width", 0),
            "annotations": annotations.get(img["id"], []),
        }
        for img in data.get("images", [])
    ]
    return records, [c["name"] for c in categories], cat_to_index


def load_predictions(path, cat_to_index, no_finding_scores=None):
    """COCO detection results (+ optional {image_id: normal-image score}) -> per-image dicts."""
    with open(path) as f:
        results = json.load(f)
    if isinstance(results, dict) and "annotations" in results:
        results = results["annotations"]
    per_image = OrderedDict()
    unknown = Counter()
    for r in results:
        if r["category_id"] not in cat_to_index:
            unknown[r["category_id"]] += 1
            continue
        entry = per_image.setdefault(r["image_id"], {"boxes": [], "scores": [], "classes": [], "segmentations": []})
        x, y, w, h = (float(v) for v in r["bbox"])
        entry["boxes"].append([x, y, x + w, y + h])
        entry["scores"].append(float(r["score"]))
        entry["classes"].append(cat_to_index[r["category_id"]])
        entry["segmentations"].append(r.get("segmentation"))
    if unknown:
        logger.warning("ignored results of categories not in the ground truth: %s", dict(unknown))
    predictions = []
    for image_id, e in per_image.items():
        pred = {
            "image_id": image_id,
            "boxes": np.asarray(e["boxes"], dtype=np.float64).reshape(-1, 4),
            "scores": np.asarray(e["scores"]),
            "classes": np.asarray(e["classes"], dtype=np.int64),
        }
        if any(s is not None for s in e["segmentations"]):
            pred["segmentations"] = e["segmentations"]
        predictions.append(pred)
    for pred in predictions:
        if no_finding_scores and pred["image_id"] in no_finding_scores:
            pred["image_no_finding_score"] = no_finding_scores[pred["image_id"]]
    for image_id in set(no_finding_scores or ()) - set(per_image):
        predictions.append({"image_id": image_id, "image_no_finding_score": no_finding_scores[image_id]})
    return predictions


def load_no_finding_scores(path):
    """``[{"image_id", "score"}]`` or ``{image_id: score}`` -> {image_id: score}."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        return {int(k) if str(k).lstrip("-").isdigit() else k: float(v) for k, v in data.items()}
    return {d["image_id"]: float(d["score"]) for d in data}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO ground-truth JSON")
    parser.add_argument("--predictions", required=True, help="COCO detection results JSON")
    parser.add_argument("--output", required=True, help="folder for metrics.json, per_class.csv and plots")
    defaults = EvalOptions()
    parser.add_argument("--protocols", nargs="+", default=list(defaults.protocols), choices=PROTOCOLS)
    parser.add_argument("--vinbigdata-iou", type=float, default=defaults.vinbigdata_iou)
    parser.add_argument("--iobb-threshold", type=float, default=defaults.iobb_threshold)
    parser.add_argument("--iobb-max-dets", type=int, default=defaults.iobb_max_dets, help="0: keep all")
    parser.add_argument("--froc-fps", type=float, nargs="+", default=list(defaults.froc_fps))
    parser.add_argument("--froc-criterion", choices=["iou", "center"], default=defaults.froc_criterion)
    parser.add_argument("--froc-iou", type=float, default=defaults.froc_iou)
    parser.add_argument(
        "--image-thresholds", type=float, nargs="+", default=list(defaults.image_thresholds),
        help="one value, one per class, or one per class then one for 'any'",
    )
    parser.add_argument("--no-finding-scores", default=None, help="JSON of the model's own normal-image scores")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG curves")
    parser.add_argument("--coco-backend", choices=["faster", "pycocotools"], default="faster")
    return parser.parse_args(argv)


def main(argv=None):
    """Run the evaluation; returns the results dict (protocol -> metric -> value)."""
    args = parse_args(argv)
    records, class_names, cat_to_index = load_ground_truth(args.gt)
    no_finding = load_no_finding_scores(args.no_finding_scores) if args.no_finding_scores else None
    predictions = load_predictions(args.predictions, cat_to_index, no_finding)
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
    )
    results = evaluate_detections(records, predictions, class_names, options, output_dir=args.output)
    print(f"{len(records)} images, {sum(len(r['annotations']) for r in records)} GT boxes, {len(class_names)} classes")
    for task, table in format_tables(results).items():
        print(f"\n## {TITLES.get(task, task)}\n\n{table}")
    print(f"\nWritten to {args.output}")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    main()
