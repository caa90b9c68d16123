"""COCO files from any framework -> the evaluation's inputs: ground truth as detectron2
dataset dicts, detection results as per-image prediction dicts (used by
``tools/evaluate.py`` and ``tools/benchmark_fusion.py``)."""
import json
import logging
from collections import Counter, OrderedDict

import numpy as np

from detectron2.structures import BoxMode

__all__ = ["load_ground_truth", "load_predictions", "load_no_finding_scores"]

logger = logging.getLogger(__name__)


def load_ground_truth(path, report=None):
    """COCO ground truth -> (detectron2 dataset dicts, class names, {category id: class index}).

    Category ids need not be 0..K-1: they are mapped in sorted order, and the mapping is
    recorded in ``report.category_ids`` when it is not the identity. Raises ValueError
    naming the file for no categories or an annotation of an unknown category.
    """
    with open(path) as f:
        data = json.load(f)
    categories = sorted(data.get("categories", []), key=lambda c: c["id"])
    if not categories:
        raise ValueError(f"{path}: no categories")
    cat_to_index = {c["id"]: i for i, c in enumerate(categories)}
    if report is not None and any(cat_id != i for cat_id, i in cat_to_index.items()):
        report.category_ids.update(cat_to_index)
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


def load_predictions(path, cat_to_index, no_finding_scores=None, report=None):
    """COCO detection results (+ optional {image_id: normal-image score}) -> per-image dicts.

    Results of categories not in ``cat_to_index`` are ignored, counted in
    ``report.unknown_categories`` and warned about.
    """
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
        logger.warning("%s: ignored results of categories not in the ground truth: %s", path, dict(unknown))
        if report is not None:
            report.unknown_categories.update(unknown)
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
