"""The evaluation's inputs as files, written and read here side by side.

Format: COCO (Lin et al., ECCV 2014; the ``instances`` annotation format and the
detection results format of cocodataset.org/#format-data / #format-results). Ground truth
is a COCO dataset JSON (``images``, ``annotations`` with XYWH ``bbox``, ``categories``),
predictions are COCO detection results (``image_id``, ``category_id``, XYWH ``bbox``,
``score``, optional RLE ``segmentation``), and the model's own normal-image scores are
``[{"image_id", "score"}]``.

:func:`write_evaluation_inputs` writes what the evaluator evaluated
(``ground_truth_coco.json``, ``coco_instances_results.json``,
``cxr_eval_no_finding_scores.json``); :func:`load_evaluation_inputs` (and the loaders
under it, which take such files from any framework) reads them back as the dataset dicts
and per-image prediction dicts of :func:`~cxr_det.evaluation.core.evaluate_detections`,
which then gives the evaluator's numbers again (tested).
"""
import json
import logging
import os
from collections import Counter, OrderedDict
from typing import Optional, Sequence

import numpy as np

from detectron2.structures import BoxMode

from cxr_det.utils.atomic import atomic_write_json

from .coco import predictions_to_coco_results, records_to_coco
from .core import NO_FINDING_SCORE_KEY

__all__ = [
    "GROUND_TRUTH_FILE",
    "RESULTS_FILE",
    "NO_FINDING_SCORES_FILE",
    "write_evaluation_inputs",
    "load_evaluation_inputs",
    "load_ground_truth",
    "load_predictions",
    "load_no_finding_scores",
]

logger = logging.getLogger(__name__)

GROUND_TRUTH_FILE = "ground_truth_coco.json"
RESULTS_FILE = "coco_instances_results.json"
NO_FINDING_SCORES_FILE = "cxr_eval_no_finding_scores.json"


def _json_default(obj):
    """numpy arrays and scalars (e.g. in dataset dicts) as plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def write_evaluation_inputs(
    output_dir: str,
    predictions: Sequence[dict],
    class_names: Sequence[str],
    records: Optional[Sequence[dict]] = None,
    coco_gt: Optional[dict] = None,
) -> dict:
    """Write the inputs of an evaluation to ``output_dir`` (created if needed).

    Args:
        predictions: per-image prediction dicts (``image_id``, ``boxes`` XYXY, ``scores``,
            ``classes``, optional ``segmentations`` and ``image_no_finding_score``).
        class_names: names of the classes 0..K-1 (the COCO category ids).
        records, coco_gt: the ground truth as detectron2 dataset dicts, or already as a COCO
            dict (:func:`~cxr_det.evaluation.coco.records_to_coco`); one of them.

    Returns ``{"gt": path, "predictions": path, "no_finding_scores": path or None}``; the
    scores file is written only when some prediction carries a no-finding score. Each file
    is written atomically (a failure or a kill leaves the previous file whole).
    Raises ValueError when neither ``records`` nor ``coco_gt`` is given.
    """
    if coco_gt is None:
        if records is None:
            raise ValueError("write_evaluation_inputs: give the ground truth as records or coco_gt")
        coco_gt = records_to_coco(records, class_names)
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "gt": os.path.join(output_dir, GROUND_TRUTH_FILE),
        "predictions": os.path.join(output_dir, RESULTS_FILE),
        "no_finding_scores": None,
    }
    atomic_write_json(paths["gt"], coco_gt, default=_json_default)
    atomic_write_json(paths["predictions"], predictions_to_coco_results(predictions))
    scores = [{"image_id": p["image_id"], "score": p[NO_FINDING_SCORE_KEY]} for p in predictions if NO_FINDING_SCORE_KEY in p]
    if scores:
        paths["no_finding_scores"] = os.path.join(output_dir, NO_FINDING_SCORES_FILE)
        atomic_write_json(paths["no_finding_scores"], scores)
    return paths


def load_evaluation_inputs(gt_path: str, predictions_path: Optional[str] = None,
                           no_finding_scores_path: Optional[str] = None, report=None):
    """Files as :func:`write_evaluation_inputs` writes them (or from any framework) ->
    ``(records, predictions, class_names, cat_to_index)`` for
    :func:`~cxr_det.evaluation.core.evaluate_detections`. ``gt_path`` may be a folder
    holding the three files of :func:`write_evaluation_inputs` (then the other paths are
    taken from it when None; else ValueError). Problems found are counted in ``report`` (an
    :class:`~cxr_det.evaluation.core.InputReport`); see :func:`load_ground_truth` and
    :func:`load_predictions` for the errors raised."""
    if os.path.isdir(gt_path):
        folder = gt_path
        gt_path = os.path.join(folder, GROUND_TRUTH_FILE)
        predictions_path = predictions_path or os.path.join(folder, RESULTS_FILE)
        if no_finding_scores_path is None and os.path.isfile(os.path.join(folder, NO_FINDING_SCORES_FILE)):
            no_finding_scores_path = os.path.join(folder, NO_FINDING_SCORES_FILE)
    if predictions_path is None:
        raise ValueError(f"{gt_path}: no predictions file given")
    records, class_names, cat_to_index = load_ground_truth(gt_path, report)
    no_finding = load_no_finding_scores(no_finding_scores_path) if no_finding_scores_path else None
    predictions = load_predictions(predictions_path, cat_to_index, no_finding, report)
    return records, predictions, class_names, cat_to_index


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
            pred[NO_FINDING_SCORE_KEY] = no_finding_scores[pred["image_id"]]
    for image_id in set(no_finding_scores or ()) - set(per_image):
        predictions.append({"image_id": image_id, NO_FINDING_SCORE_KEY: no_finding_scores[image_id]})
    return predictions


def load_no_finding_scores(path):
    """``[{"image_id", "score"}]`` or ``{image_id: score}`` -> {image_id: score}."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        return {int(k) if str(k).lstrip("-").isdigit() else k: float(v) for k, v in data.items()}
    return {d["image_id"]: float(d["score"]) for d in data}
