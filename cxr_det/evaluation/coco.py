"""COCO metrics (AP, AP50, AP75, APs/m/l, per-class AP and AP50; bbox and segm) on
in-memory data, and the "coco" protocol of the registry.

Reference: the COCO detection evaluation (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014; cocodataset.org/#detection-eval) as pycocotools' ``COCOeval``
computes it: 10 IoU thresholds 0.5:0.95, 101 recall points, maxDets 1/10/100, area
ranges small/medium/large. The run is pycocotools' own or faster-coco-eval's C++ one (the
same numbers, several times faster; both checked in ``tests/evaluation/test_cxr_evaluator.py``, with
pycocotools 2.0.11 and faster-coco-eval 1.8). Image ids of any type (VinDr's md5
strings, which faster-coco-eval cannot take) are mapped to integers in their sorted order
first, so both backends see the same images in the same order.

The metrics are read from the finished ``COCOeval`` here (:func:`derive_coco_metrics`),
with the keys and NaN rules of detectron2's ``COCOEvaluator`` (so training logs and
checkpoints compare across versions): ``stats`` 0-5 as ``AP`` ... ``APl`` (-1, "no ground
truth in that area range", as NaN), and per class (when there are several) ``AP-<class>``,
the mean of ``eval["precision"]`` over IoU thresholds and recall points (area "all", 100
detections; -1 entries left out) and ``AP50-<class>``, the same at IoU 0.5.
"""
import contextlib
import gc
import io
import logging
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from detectron2.structures import BoxMode

from .protocols import Protocol, register_protocol

__all__ = [
    "COCO_SUMMARY_METRICS",
    "records_to_coco",
    "predictions_to_coco_results",
    "faster_coco_eval_available",
    "integer_image_ids",
    "derive_coco_metrics",
    "coco_metrics",
]

logger = logging.getLogger(__name__)

MAX_DETS = [1, 10, 100]  # COCO's standard limits (AP uses the last)
# COCOeval.stats[0:6] of a box or mask evaluation, in order.
COCO_SUMMARY_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def faster_coco_eval_available() -> bool:
    """Whether the ``faster_coco_eval`` package can be imported."""
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


def _polygon_area(polygons) -> float:
    area = 0.0
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        area += 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    return area


def _annotation_area(anno: dict, xywh, height: int, width: int) -> float:
    """COCO ``area`` as detectron2's converter computes it: the mask's when there is one."""
    if "area" in anno:
        return float(anno["area"])
    seg = anno.get("segmentation")
    if isinstance(seg, list) and seg:
        return _polygon_area(seg)
    if isinstance(seg, dict):
        rle = mask_util.frPyObjects(seg, height, width) if isinstance(seg.get("counts"), list) else seg
        return float(mask_util.area(rle))
    return float(xywh[2] * xywh[3])


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off inside the block (back on after, if it was on).

    The COCO APIs take one dict per detection: 300,000 of them for 3,000 images x 100
    detections, none of them garbage. Each collection walks every container alive, so
    with the collector on, building and indexing them took about as long again as the
    evaluation itself, growing faster than the number of detections
    (``tools/benchmark.py``, evaluation section).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def records_to_coco(records: Sequence[dict], class_names: Sequence[str]) -> dict:
    """detectron2 dataset dicts -> a COCO ground-truth dict whose category ids are the
    contiguous class indices (as the predictions use them)."""
    images, annotations = [], []
    for rec in records:
        h, w = int(rec.get("height", 0)), int(rec.get("width", 0))
        images.append({"id": rec["image_id"], "height": h, "width": w, "file_name": str(rec.get("file_name", ""))})
        for anno in rec.get("annotations", []):
            mode = anno.get("bbox_mode", BoxMode.XYXY_ABS)
            xywh = BoxMode.convert(list(map(float, anno["bbox"])), mode, BoxMode.XYWH_ABS)
            entry = {
                "id": len(annotations) + 1,
                "image_id": rec["image_id"],
                "category_id": int(anno["category_id"]),
                "bbox": [float(v) for v in xywh],
                "area": _annotation_area(anno, xywh, h, w),
                "iscrowd": int(anno.get("iscrowd", 0)),
            }
            if anno.get("segmentation"):
                entry["segmentation"] = anno["segmentation"]
            annotations.append(entry)
    categories = [{"id": i, "name": name} for i, name in enumerate(class_names)]
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}


def predictions_to_coco_results(predictions: Sequence[dict]) -> List[dict]:
    """Per-image prediction dicts (``boxes`` XYXY, ``scores``, ``classes``, optional
    ``segmentations`` RLEs) -> COCO detection results (XYWH boxes)."""
    with _gc_paused():
        return _coco_results(predictions)


def _coco_results(predictions):
    results = []
    for pred in predictions:
        boxes = np.asarray(pred.get("boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(pred.get("scores", []), dtype=np.float64).reshape(-1)
        classes = np.asarray(pred.get("classes", [])).reshape(-1)
        n = min(len(boxes), len(scores), len(classes))
        # Whole arrays to Python numbers at once: the same floats as per-box float(), and
        # the conversion no longer dominates the evaluation of 100 boxes per image.
        xywh = np.concatenate([boxes[:n, :2], boxes[:n, 2:] - boxes[:n, :2]], axis=1).tolist()
        segms = pred.get("segmentations")
        image_id = pred["image_id"]
        for k, (bbox, score, cls) in enumerate(zip(xywh, scores[:n].tolist(), classes[:n].tolist())):
            entry = {"image_id": image_id, "category_id": int(cls), "bbox": bbox, "score": score}
            if segms is not None and segms[k] is not None:
                entry["segmentation"] = segms[k]
            results.append(entry)
    return results


def _fresh(coco_gt: dict) -> dict:
    """A copy that COCO's APIs may change: they only set top-level keys of the entries."""
    out = dict(coco_gt)
    for key in ("images", "annotations", "categories"):
        out[key] = [dict(entry) for entry in coco_gt.get(key, [])]
    return out


def integer_image_ids(coco_gt: dict, coco_results: Sequence[dict]):
    """``(coco_gt, coco_results, dropped)`` with image ids replaced by 1, 2, ... in the
    sorted order of the original ids (the order COCOeval visits them; given order if
    they cannot be compared), so that any id type (e.g. md5 strings) works in both COCOeval
    backends. Results for images not in ``coco_gt`` are dropped and counted in ``dropped``
    (pycocotools would stop on them). Raises ValueError naming a repeated image id."""
    ids = [img["id"] for img in coco_gt.get("images", [])]
    seen = set()
    for image_id in ids:
        if image_id in seen:
            raise ValueError(f"COCO ground truth: image id {image_id!r} is listed more than once")
        seen.add(image_id)
    try:
        ordered = sorted(ids)
    except TypeError:
        ordered = ids
    to_int = {image_id: k + 1 for k, image_id in enumerate(ordered)}
    gt = dict(coco_gt)
    gt["images"] = [dict(img, id=to_int[img["id"]]) for img in coco_gt.get("images", [])]
    annotations = []
    for anno in coco_gt.get("annotations", []):
        if anno["image_id"] not in to_int:
            raise ValueError(f"COCO ground truth: annotation {anno.get('id')} refers to unknown image {anno['image_id']!r}")
        annotations.append(dict(anno, image_id=to_int[anno["image_id"]]))
    gt["annotations"] = annotations
    results = [dict(r, image_id=to_int[r["image_id"]]) for r in coco_results if r["image_id"] in to_int]
    return gt, results, len(coco_results) - len(results)


def _run_cocoeval(coco_gt: dict, results: List[dict], iou_type: str, use_faster: bool):
    if use_faster:
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster

        gt_api = FasterCOCO(_fresh(coco_gt), print_function=logger.debug)
        dt_api = gt_api.loadRes(results)
        coco_eval = COCOeval_faster(gt_api, dt_api, iou_type, print_function=logger.debug)
        coco_eval.params.maxDets = list(MAX_DETS)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return coco_eval

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()) as captured:
        gt_api = COCO()
        gt_api.dataset = _fresh(coco_gt)
        gt_api.createIndex()
        dt_api = gt_api.loadRes(results)
        coco_eval = COCOeval(gt_api, dt_api, iou_type)
        coco_eval.params.maxDets = list(MAX_DETS)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    logger.debug("pycocotools COCOeval (%s):\n%s", iou_type, captured.getvalue())
    return coco_eval


def derive_coco_metrics(coco_eval, class_names: Sequence[str]) -> "OrderedDict[str, float]":
    """The metrics of a finished (evaluated, accumulated, summarized) ``COCOeval``, in percent.

    ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` from ``coco_eval.stats`` (NaN where
    pycocotools reports -1); with two or more classes also ``AP-<class>`` for every class,
    then ``AP50-<class>``: means of ``coco_eval.eval["precision"]`` (IoU, recall, class,
    area, max dets) at area "all" and the last maxDets, over every IoU threshold resp. the
    one nearest 0.5, entries of -1 (no ground truth) left out; NaN when none is left.
    ``coco_eval=None`` (no predictions at all) gives NaN summary metrics and no per-class
    keys. Raises ValueError when the number of classes differs from the evaluation's.
    """
    if coco_eval is None:
        logger.warning("COCO: no predictions: every metric is NaN")
        return OrderedDict((metric, float("nan")) for metric in COCO_SUMMARY_METRICS)
    stats = coco_eval.stats
    results = OrderedDict(
        (metric, float(stats[k] * 100 if stats[k] >= 0 else "nan")) for k, metric in enumerate(COCO_SUMMARY_METRICS)
    )
    if len(class_names) <= 1:
        return results
    precisions = coco_eval.eval["precision"]
    if precisions.shape[2] != len(class_names):
        raise ValueError(f"COCO: {len(class_names)} class names for an evaluation of {precisions.shape[2]} categories")
    iou50 = int(np.argmin(np.abs(np.asarray(coco_eval.params.iouThrs) - 0.5)))
    for prefix, ious in (("AP", slice(None)), ("AP50", iou50)):
        for k, name in enumerate(class_names):
            p = precisions[ious, :, k, 0, -1]
            p = p[p > -1]
            ap = np.mean(p) if p.size else float("nan")
            results[f"{prefix}-{name}"] = float(ap * 100)
    return results


def coco_metrics(
    coco_gt: dict,
    coco_results: Sequence[dict],
    class_names: Sequence[str],
    tasks: Optional[Sequence[str]] = None,
    use_faster_coco_eval: bool = True,
) -> Dict[str, Dict[str, float]]:
    """COCO metrics per task ("bbox", "segm"), in percent (see :func:`derive_coco_metrics`).

    ``tasks=None``: "bbox", plus "segm" when the results carry segmentations and every GT
    annotation has one. ``use_faster_coco_eval`` uses faster-coco-eval when installed
    (else pycocotools, with a log line). Image ids may be of any type (see
    :func:`integer_image_ids`); results for images not in ``coco_gt`` are dropped with a
    warning. No results at all gives NaN metrics, as in detectron2.
    """
    with _gc_paused():
        return _coco_metrics(coco_gt, coco_results, class_names, tasks, use_faster_coco_eval)


def _coco_metrics(coco_gt, coco_results, class_names, tasks, use_faster_coco_eval):
    coco_gt, coco_results, dropped = integer_image_ids(coco_gt, coco_results)
    if dropped:
        logger.warning("COCO: %d results for images not in the ground truth ignored", dropped)
    use_faster = bool(use_faster_coco_eval) and faster_coco_eval_available()
    if use_faster_coco_eval and not use_faster:
        logger.info("faster_coco_eval is not installed: using pycocotools' COCOeval")
    if tasks is None:
        tasks = ["bbox"]
        if any("segmentation" in r for r in coco_results):
            if all("segmentation" in a for a in coco_gt["annotations"]):
                tasks.append("segm")
            else:
                logger.warning("predictions have masks but some ground truth has no segmentation: no segm metrics")
    out = OrderedDict()
    for i, task in enumerate(tasks):
        # loadRes adds keys to the results: every task but the last gets copies of the
        # entries (integer_image_ids made them, so the caller's are never touched).
        results = coco_results if i == len(tasks) - 1 else [dict(r) for r in coco_results]
        if task == "segm":
            results = [r for r in results if "segmentation" in r]
            for r in results:
                r.pop("bbox", None)  # let COCO use the mask area, as detectron2 does
        coco_eval = _run_cocoeval(coco_gt, results, task, use_faster) if results else None
        logger.info("COCO %s evaluated with %s", task, "faster-coco-eval" if use_faster else "pycocotools")
        out[task] = derive_coco_metrics(coco_eval, list(class_names))
    return out


def _run(inputs, options):
    coco_gt = inputs.coco_gt if inputs.coco_gt is not None else records_to_coco(inputs.gt_images, inputs.class_names)
    results = coco_metrics(
        coco_gt,
        predictions_to_coco_results(inputs.predictions),
        inputs.class_names,
        use_faster_coco_eval=options.use_faster_coco_eval,
    )
    return results, {}


def _csv_columns(results, options):
    cols = []
    for task in ("bbox", "segm"):
        if task in results:
            cols += [(f"{task}_AP", task, "AP", "AP"), (f"{task}_AP50", task, "AP50", "AP50")]
    return cols


register_protocol(Protocol(
    name="coco", run=_run, titles={"bbox": "COCO bbox", "segm": "COCO segm"}, csv_columns=_csv_columns
))
