"""One evaluation of detections on chest X-rays, shared by the detectron2 evaluator and
``tools/evaluate.py``: :func:`evaluate_detections` runs every selected protocol on the same
ground truth and predictions, logs the tables and writes the result files.
"""
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence, Tuple

import numpy as np

from detectron2.structures import BoxMode

from .coco_protocol import coco_metrics, predictions_to_coco_results, records_to_coco
from .image_level import image_level_metrics
from .matching import ImageBoxes
from .protocols import DEFAULT_FROC_FPS, froc_metrics, iobb_metrics, vinbigdata_metrics

__all__ = ["PROTOCOLS", "EvalOptions", "build_image_boxes", "evaluate_detections"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("coco", "vinbigdata", "iobb", "froc", "image")


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`evaluate_detections` computes (mirrors ``cfg.TEST.CXR_EVAL``).

    protocols: any of "coco", "vinbigdata", "iobb", "froc", "image".
    vinbigdata_iou: a VinBigData match needs IoU strictly above this.
    iobb_threshold, iobb_max_dets: MDF-Net match IoBB >= threshold; predictions kept per
        image and class (MDF-Net's COCOeval used maxDets 10); None keeps all.
    froc_fps: false-positive rates per image for sensitivity and CPM.
    froc_criterion, froc_iou: a FROC hit is IoU >= froc_iou ("iou") or the predicted
        centre inside the GT box ("center").
    image_thresholds: image-level decision thresholds, see
        :func:`~cxr_det.evaluation.image_level.resolve_thresholds`.
    plots: write PNG curves next to metrics.json.
    use_faster_coco_eval: COCO through faster-coco-eval when installed (same numbers).
    """

    protocols: Tuple[str, ...] = PROTOCOLS
    vinbigdata_iou: float = 0.4
    iobb_threshold: float = 0.5
    iobb_max_dets: Optional[int] = 10
    froc_fps: Tuple[float, ...] = DEFAULT_FROC_FPS
    froc_criterion: str = "iou"
    froc_iou: float = 0.3
    image_thresholds: Tuple[float, ...] = (0.5,)
    plots: bool = True
    use_faster_coco_eval: bool = True

    def __post_init__(self):
        protocols = tuple(p.lower() for p in self.protocols)
        unknown = sorted(set(protocols) - set(PROTOCOLS))
        if unknown:
            raise ValueError(f"unknown evaluation protocol(s) {unknown}; choose from {list(PROTOCOLS)}")
        if self.froc_criterion not in ("iou", "center"):
            raise ValueError(f"froc_criterion must be 'iou' or 'center', got {self.froc_criterion!r}")
        object.__setattr__(self, "protocols", protocols)
        object.__setattr__(self, "froc_fps", tuple(float(f) for f in self.froc_fps))
        object.__setattr__(self, "image_thresholds", tuple(float(t) for t in np.atleast_1d(self.image_thresholds)))
        if self.iobb_max_dets is not None and int(self.iobb_max_dets) <= 0:
            object.__setattr__(self, "iobb_max_dets", None)

    @classmethod
    def from_cfg(cls, cfg=None, **overrides) -> "EvalOptions":
        """Options from ``cfg.TEST.CXR_EVAL`` (defaults where absent), then ``overrides``
        (keyword arguments that are not None)."""
        values = {}
        node = cfg.TEST.get("CXR_EVAL") if cfg is not None else None
        if cfg is not None and node is None:
            logger.warning("cfg.TEST.CXR_EVAL is missing (add_cxr_eval_config not called): default options")
        if node is not None:
            for f in fields(cls):
                key = f.name.upper()
                if key in node:
                    values[f.name] = node[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _gt_arrays(record: dict, num_classes: int):
    boxes, classes = [], []
    for anno in record.get("annotations", []):
        if anno.get("iscrowd", 0):
            continue  # crowd regions only matter to COCO, which handles them itself
        mode = anno.get("bbox_mode", BoxMode.XYXY_ABS)
        boxes.append(BoxMode.convert(list(map(float, anno["bbox"])), mode, BoxMode.XYXY_ABS))
        classes.append(int(anno["category_id"]))
    classes = np.asarray(classes, dtype=np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"image {record['image_id']}: GT category_id outside 0..{num_classes - 1}")
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), classes


def build_image_boxes(gt_images: Sequence[dict], predictions: Sequence[dict], num_classes: int):
    """Join the ground truth and predictions per image (in ``gt_images`` order).

    Images without a prediction entry have no predictions; prediction entries for images
    not in the ground truth are dropped with a warning, as are repeated entries.
    Returns ``(images, predictions kept)``.
    """
    by_id = OrderedDict()
    repeated = 0
    for pred in predictions:
        if pred["image_id"] in by_id:
            repeated += 1
            continue
        by_id[pred["image_id"]] = pred
    gt_ids = [rec["image_id"] for rec in gt_images]
    unknown = set(by_id) - set(gt_ids)
    if repeated:
        logger.warning("%d repeated prediction entries for the same image ignored", repeated)
    if unknown:
        logger.warning("predictions for %d image ids not in the ground truth ignored", len(unknown))
    missing = sum(1 for i in gt_ids if i not in by_id)
    if missing:
        logger.info("%d of %d images have no prediction entry (counted as predicting nothing)", missing, len(gt_ids))
    images = []
    for rec in gt_images:
        gt_boxes, gt_classes = _gt_arrays(rec, num_classes)
        pred = by_id.get(rec["image_id"], {})
        classes = np.asarray(pred.get("classes", []), dtype=np.int64).reshape(-1)
        if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(f"image {rec['image_id']}: predicted class outside 0..{num_classes - 1}")
        nf = pred.get("image_no_finding_score")
        images.append(
            ImageBoxes(
                rec["image_id"],
                gt_boxes,
                gt_classes,
                pred.get("boxes", np.zeros((0, 4))),
                pred.get("scores", np.zeros(0)),
                classes,
                None if nf is None else float(nf),
            )
        )
    kept = [by_id[i] for i in gt_ids if i in by_id]
    return images, kept


def evaluate_detections(
    gt_images: Sequence[dict],
    predictions: Sequence[dict],
    class_names: Sequence[str],
    options: Optional[EvalOptions] = None,
    output_dir: Optional[str] = None,
) -> "OrderedDict[str, OrderedDict[str, float]]":
    """Evaluate detections with every protocol of ``options`` on the same data.

    Args:
        gt_images: detectron2 dataset dicts (``image_id``, ``height``, ``width``,
            ``annotations`` with ``bbox``, ``bbox_mode``, 0-based ``category_id``, optional
            ``segmentation``/``iscrowd``/``area``); no annotation = a normal image.
        predictions: one dict per image: ``image_id``, ``boxes`` (N, 4) XYXY_ABS,
            ``scores`` (N,), ``classes`` (N,) 0-based; optional ``segmentations`` (N COCO
            RLEs) and ``image_no_finding_score`` (the model's probability that the image is
            normal, used by the VinBigData protocol).
        class_names: names of the classes 0..K-1.
        options: :class:`EvalOptions` (defaults if None).
        output_dir: if given, write ``metrics.json``, ``per_class.csv`` and the PNG plots.

    Returns:
        ``{"bbox": ..., "segm": ..., "vinbigdata": ..., "iobb": ..., "froc": ...,
        "image": ...}`` (the selected ones), each a dict of floats in percent (thresholds
        are raw scores), NaN where undefined.
    """
    from .report import log_tables, write_outputs

    options = options or EvalOptions()
    class_names = list(class_names)
    images, kept = build_image_boxes(gt_images, predictions, len(class_names))
    results, curves = OrderedDict(), OrderedDict()
    for protocol in options.protocols:
        if protocol == "coco":
            coco = coco_metrics(
                records_to_coco(gt_images, class_names),
                predictions_to_coco_results(kept),
                class_names,
                use_faster_coco_eval=options.use_faster_coco_eval,
            )
            results.update(coco)
        elif protocol == "vinbigdata":
            results["vinbigdata"], curves["vinbigdata"] = vinbigdata_metrics(
                images, class_names, options.vinbigdata_iou
            )
        elif protocol == "iobb":
            results["iobb"], curves["iobb"] = iobb_metrics(
                images, class_names, options.iobb_threshold, options.iobb_max_dets
            )
        elif protocol == "froc":
            results["froc"], curves["froc"] = froc_metrics(
                images, class_names, options.froc_fps, options.froc_criterion, options.froc_iou
            )
        elif protocol == "image":
            results["image"], curves["image"] = image_level_metrics(images, class_names, options.image_thresholds)
    log_tables(results)
    if output_dir:
        summary = {
            "classes": class_names,
            "num_images": len(images),
            "num_normal_images": int(sum(len(im.gt_classes) == 0 for im in images)),
            "num_predictions": int(sum(len(im.pred_scores) for im in images)),
            "gt_per_class": {
                name: int(sum(int((im.gt_classes == k).sum()) for im in images)) for k, name in enumerate(class_names)
            },
            "options": asdict(options),
        }
        write_outputs(output_dir, results, curves, class_names, options, summary)
    return results
