"""Evaluation section of ``tools/benchmark.py``: seconds to evaluate N images x 14 classes x
100 detections with each protocol, COCO by faster-coco-eval and by pycocotools
(``TEST.CXR_EVAL.USE_FASTER_COCO_EVAL``), at N/2 and N images: twice the images should take
twice the time.

The data are generated: 1024 x 1024 px images, 40% without lesions, the others with 1-4
ground-truth boxes of the 14 VinDr-CXR (Kaggle) classes; per image 100 detections of random
classes, scores and boxes, of which one per lesion lies near it (a few pixels off) with a
higher score. Each protocol runs through the registry
(:data:`cxr_det.evaluation.protocols.PROTOCOLS`) on inputs prepared once, as
:func:`cxr_det.evaluation.core.evaluate_detections` runs it; the last row is that whole
function (every protocol, faster-coco-eval, no files written).
"""
import logging
import time

import numpy as np

import cxr_det.evaluation  # noqa: F401  (compatibility fixes first; registers every protocol)
from detectron2.structures import BoxMode

from cxr_det.evaluation.coco import records_to_coco
from cxr_det.evaluation.core import EvalOptions, build_image_boxes, drop_bad_gt_boxes, evaluate_detections
from cxr_det.evaluation.protocols import PROTOCOLS, ProtocolInputs
from cxr_det.formats.vindr_format import VINDR_KAGGLE_CLASSES

from benchmarks.perf_common import Section

__all__ = ["SIDE", "detection_set", "run_eval"]

SIDE = 1024  # image side, pixels


def detection_set(images: int, classes: int = 14, detections: int = 100, seed: int = 0):
    """``(gt_images, predictions)``: detectron2 dataset dicts and per-image prediction dicts
    (``boxes`` XYXY, ``scores``, ``classes``) as described in the module docstring."""
    rng = np.random.default_rng(seed)
    gt_images, predictions = [], []
    for i in range(images):
        count = 0 if rng.random() < 0.4 else int(rng.integers(1, 5))
        xy = rng.uniform(0, SIDE * 0.8, (count, 2))
        gt = np.concatenate([xy, xy + rng.uniform(20, SIDE * 0.2, (count, 2))], axis=1)
        gt_classes = rng.integers(0, classes, count)
        annotations = [{"bbox": box.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(c), "iscrowd": 0}
                       for box, c in zip(gt, gt_classes)]
        gt_images.append({"image_id": i, "height": SIDE, "width": SIDE, "file_name": f"{i}.png",
                          "annotations": annotations})
        xy = rng.uniform(0, SIDE * 0.8, (detections, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(10, SIDE * 0.2, (detections, 2))], axis=1)
        labels = rng.integers(0, classes, detections)
        scores = rng.random(detections) * 0.6
        boxes[:count] = gt + rng.normal(0, 4, gt.shape)
        labels[:count] = gt_classes
        scores[:count] = 0.4 + 0.6 * rng.random(count)
        predictions.append({"image_id": i, "boxes": boxes, "scores": scores, "classes": labels})
    return gt_images, predictions


def _timings(images: int, pycocotools: bool):
    """{step: seconds} for one evaluation of ``images`` images."""
    names = list(VINDR_KAGGLE_CLASSES)
    gt_images, predictions = detection_set(images, len(names))
    out = {}
    start = time.perf_counter()
    kept_gt = drop_bad_gt_boxes(gt_images)
    boxes, kept = build_image_boxes(kept_gt, predictions, len(names))
    coco_gt = records_to_coco(kept_gt, names)
    out["inputs (checks, per-image arrays, COCO ground truth)"] = time.perf_counter() - start
    inputs = ProtocolInputs(kept_gt, kept, boxes, names, coco_gt)
    runs = [("COCO, faster-coco-eval", "coco", EvalOptions(use_faster_coco_eval=True))]
    if pycocotools:
        runs.append(("COCO, pycocotools", "coco", EvalOptions(use_faster_coco_eval=False)))
    runs += [(f"{name}", name, EvalOptions()) for name in ("vinbigdata", "iobb", "froc", "image")]
    for label, name, options in runs:
        print(f"    {images} images: {label} ...", flush=True)
        start = time.perf_counter()
        PROTOCOLS[name].run(inputs, options)
        out[label] = time.perf_counter() - start
    start = time.perf_counter()
    logging.disable(logging.INFO)  # evaluate_detections logs its tables
    try:
        evaluate_detections(gt_images, predictions, names, EvalOptions(use_faster_coco_eval=True))
    finally:
        logging.disable(logging.NOTSET)
    out["evaluate_detections, every protocol (faster-coco-eval)"] = time.perf_counter() - start
    return out


def run_eval(settings) -> Section:
    """The evaluation section; ``settings``: the mode's ``eval`` settings of
    :mod:`benchmarks.performance` (``images``: N; ``pycocotools``: whether to time it)."""
    n = int(settings["images"])
    half = _timings(n // 2, settings["pycocotools"])
    full = _timings(n, settings["pycocotools"])
    rows = [[step, half[step], full[step], full[step] / half[step]] for step in full]
    headers = ["step", f"seconds, {n // 2} images", f"seconds, {n} images", "ratio (linear = 2)"]
    notes = [f"14 classes, 100 detections per image ({n * 100:,} detections at {n} images), {SIDE} px images; "
             "protocols with their default options (TEST.CXR_EVAL)"]
    if "COCO, pycocotools" in full:
        notes.append(f"faster-coco-eval is {full['COCO, pycocotools'] / full['COCO, faster-coco-eval']:.1f}x faster "
                     f"than pycocotools at {n} images")
    return Section("eval", f"Evaluation: {n} images x 14 classes x 100 detections", headers, rows, notes,
                   {"images": n, "half": half, "full": full})
