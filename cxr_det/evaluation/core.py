"""One evaluation of detections on chest X-rays, shared by the detectron2 evaluator and
``tools/evaluate.py``: :func:`evaluate_detections` runs every selected protocol on the same
ground truth and predictions, logs the tables and writes the result files.
"""
import logging
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field, fields
from typing import Optional, Sequence, Tuple

import numpy as np

from detectron2.structures import BoxMode

from cxr_det.config import CXR_EVAL_PROTOCOLS
from cxr_det.data.datasets.common import SkipLog, box_problem

from .bootstrap import bootstrap_intervals
from .coco_protocol import coco_metrics, predictions_to_coco_results, records_to_coco
from .image_level import image_level_metrics
from .matching import ImageBoxes
from .protocols import (
    DEFAULT_FROC_FPS,
    FROC_RULES,
    VINBIGDATA_MATCHING,
    froc_metrics,
    iobb_metrics,
    vinbigdata_metrics,
)

__all__ = ["PROTOCOLS", "EvalOptions", "InputReport", "drop_bad_gt_boxes", "build_image_boxes", "evaluate_detections"]

logger = logging.getLogger(__name__)

PROTOCOLS = CXR_EVAL_PROTOCOLS


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`evaluate_detections` computes (mirrors ``cfg.TEST.CXR_EVAL``).

    protocols: any of "coco", "vinbigdata", "iobb", "froc", "image".
    vinbigdata_iou: a VinBigData match needs IoU strictly above this.
    vinbigdata_matching: "voc" (the VOC devkit's rule, the Kaggle metric) or "greedy"
        (best still-free GT box), see :func:`~cxr_det.evaluation.protocols.vinbigdata_metrics`.
    iobb_threshold, iobb_max_dets: MDF-Net match IoBB >= threshold; predictions kept per
        image and class (MDF-Net's COCOeval used maxDets 10); None keeps all.
    froc_fps: false-positive rates per image for sensitivity and CPM.
    froc_criterion, froc_iou: a FROC hit is IoU >= froc_iou ("iou") or the predicted
        centre inside the GT box ("center").
    froc_rule: "one_to_one" (a second hit of a found lesion is a FP) or "luna16" (it is
        ignored), see :func:`~cxr_det.evaluation.protocols.froc_metrics`.
    image_thresholds: image-level decision thresholds, see
        :func:`~cxr_det.evaluation.image_level.resolve_thresholds`.
    plots: write PNG curves next to metrics.json.
    use_faster_coco_eval: COCO through faster-coco-eval when installed (same numbers).
    bootstrap: resamples of the images for 95% confidence intervals of AP50, mAP@t, CPM
        and AUC (:mod:`~cxr_det.evaluation.bootstrap`); 0 turns them off.
    bootstrap_seed: seed of the resampling.
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
    vinbigdata_matching: str = "voc"
    froc_rule: str = "one_to_one"
    bootstrap: int = 0
    bootstrap_seed: int = 0

    def __post_init__(self):
        protocols = tuple(p.lower() for p in self.protocols)
        unknown = sorted(set(protocols) - set(PROTOCOLS))
        if unknown:
            raise ValueError(f"unknown evaluation protocol(s) {unknown}; choose from {list(PROTOCOLS)}")
        if self.froc_criterion not in ("iou", "center"):
            raise ValueError(f"froc_criterion must be 'iou' or 'center', got {self.froc_criterion!r}")
        if self.vinbigdata_matching not in VINBIGDATA_MATCHING:
            raise ValueError(
                f"vinbigdata_matching (TEST.CXR_EVAL.VINBIGDATA_MATCHING) must be one of {list(VINBIGDATA_MATCHING)}, "
                f"got {self.vinbigdata_matching!r}"
            )
        if self.froc_rule not in FROC_RULES:
            raise ValueError(f"froc_rule (TEST.CXR_EVAL.FROC_RULE) must be one of {list(FROC_RULES)}, got {self.froc_rule!r}")
        if int(self.bootstrap) < 0:
            raise ValueError(f"bootstrap (TEST.CXR_EVAL.BOOTSTRAP) must be >= 0 resamples, got {self.bootstrap}")
        object.__setattr__(self, "bootstrap", int(self.bootstrap))
        object.__setattr__(self, "bootstrap_seed", int(self.bootstrap_seed))
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


@dataclass
class InputReport:
    """What :func:`evaluate_detections` found wrong with its inputs, counted.

    bad_gt_boxes: {reason: count} of ground-truth boxes left out (the loaders' bad-row
        policy, :func:`cxr_det.data.datasets.common.box_problem`: width or height <= 0, a
        non-finite coordinate); a box that cannot overlap anything would otherwise be a
        lesion no detection can find.
    repeated_prediction_entries: prediction entries for an image already seen (ignored).
    predictions_for_unknown_images: prediction entries whose image is not in the ground
        truth (ignored), and ``unknown_image_boxes`` their boxes.
    images_without_predictions: ground-truth images without a prediction entry (they
        predict nothing).
    unknown_categories: {category id: count} of predicted boxes whose category is not in
        the ground truth (filled by readers of COCO files, e.g. ``tools/evaluate.py``).
    category_ids: {category id: class index} when the ground truth's category ids are not
        0..K-1 in order (filled by ``tools/evaluate.py``).
    """

    bad_gt_boxes: Counter = field(default_factory=Counter)
    repeated_prediction_entries: int = 0
    predictions_for_unknown_images: int = 0
    unknown_image_boxes: int = 0
    images_without_predictions: int = 0
    unknown_categories: Counter = field(default_factory=Counter)
    category_ids: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain JSON-able counts (as written to ``metrics.json`` under ``input_checks``)."""
        out = asdict(self)
        out["bad_gt_boxes"] = dict(self.bad_gt_boxes)
        out["unknown_categories"] = {str(k): int(v) for k, v in self.unknown_categories.items()}
        out["category_ids"] = {str(k): int(v) for k, v in self.category_ids.items()}
        return out

    def lines(self):
        """Human-readable lines, one per problem found (none when the inputs were clean)."""
        out = []
        for reason, n in self.bad_gt_boxes.items():
            out.append(f"{n} ground-truth box(es) left out: {reason}")
        if self.repeated_prediction_entries:
            out.append(f"{self.repeated_prediction_entries} repeated prediction entries for the same image ignored")
        if self.predictions_for_unknown_images:
            out.append(
                f"{self.predictions_for_unknown_images} prediction entries ({self.unknown_image_boxes} boxes) for "
                "image ids not in the ground truth ignored"
            )
        if self.unknown_categories:
            out.append(f"predicted boxes of categories not in the ground truth ignored: {dict(self.unknown_categories)}")
        if self.category_ids:
            out.append(f"category ids mapped to class indices: {self.category_ids}")
        if self.images_without_predictions:
            out.append(f"{self.images_without_predictions} images have no prediction entry (they predict nothing)")
        return out


def drop_bad_gt_boxes(gt_images: Sequence[dict], report: Optional[InputReport] = None):
    """The dataset dicts without ground-truth boxes that cannot be lesions (width or height
    <= 0, non-finite coordinates; the loaders' bad-row policy). Each one is counted by
    reason in ``report.bad_gt_boxes`` and reported once as a warning. Records are copied
    only when they lose a box. Returns the list of records."""
    skipped = SkipLog("evaluation ground truth")
    out = []
    for rec in gt_images:
        annos = rec.get("annotations", [])
        keep = []
        for anno in annos:
            mode = anno.get("bbox_mode", BoxMode.XYXY_ABS)
            try:
                box = BoxMode.convert(list(map(float, anno["bbox"])), mode, BoxMode.XYXY_ABS)
            except (TypeError, ValueError):
                box = anno["bbox"]
            problem = box_problem(box)
            if problem is None:
                keep.append(anno)
            else:
                skipped.skip(problem, f"image {rec.get('image_id')!r} box {list(anno['bbox'])}")
        out.append(rec if len(keep) == len(annos) else dict(rec, annotations=keep))
    skipped.report(logger)
    if report is not None:
        report.bad_gt_boxes.update(skipped.counts)
    return out


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


def build_image_boxes(
    gt_images: Sequence[dict], predictions: Sequence[dict], num_classes: int, report: Optional[InputReport] = None
):
    """Join the ground truth and predictions per image (in ``gt_images`` order).

    Images without a prediction entry have no predictions; prediction entries for images
    not in the ground truth are dropped with a warning, as are repeated entries; all three
    are counted in ``report`` when given. Raises ValueError for a class index outside
    ``0..num_classes-1``. Returns ``(images, predictions kept)``.
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
    if report is not None:
        report.repeated_prediction_entries += repeated
        report.predictions_for_unknown_images += len(unknown)
        report.unknown_image_boxes += int(sum(len(np.atleast_1d(by_id[i].get("scores", []))) for i in unknown))
        report.images_without_predictions += missing
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
    report: Optional[InputReport] = None,
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
        report: an :class:`InputReport` to fill with the input problems found (counted
            there, warned in the log, and written to ``metrics.json``).

    Ground-truth boxes with width or height <= 0 are left out of every protocol (see
    :func:`drop_bad_gt_boxes`).

    Returns:
        ``{"bbox": ..., "segm": ..., "vinbigdata": ..., "iobb": ..., "froc": ...,
        "image": ..., "bootstrap": ...}`` (the selected ones; "bootstrap" when
        ``options.bootstrap`` > 0, see
        :func:`~cxr_det.evaluation.bootstrap.bootstrap_intervals`), each a dict of floats in
        percent (thresholds are raw scores), NaN where undefined.
    """
    from .report import log_tables, write_outputs

    options = options or EvalOptions()
    class_names = list(class_names)
    report = report if report is not None else InputReport()
    gt_images = drop_bad_gt_boxes(gt_images, report)
    images, kept = build_image_boxes(gt_images, predictions, len(class_names), report)
    if images and not any(len(im.gt_classes) for im in images):
        logger.warning(
            "none of the %d images has a lesion: box AP, AUC and sensitivity are undefined (NaN) and the "
            "VinBigData mAP is its 'No finding' AP alone; read the image-level specificity and false positives "
            "per normal image",
            len(images),
        )
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
                images, class_names, options.vinbigdata_iou, options.vinbigdata_matching
            )
        elif protocol == "iobb":
            results["iobb"], curves["iobb"] = iobb_metrics(
                images, class_names, options.iobb_threshold, options.iobb_max_dets
            )
        elif protocol == "froc":
            results["froc"], curves["froc"] = froc_metrics(
                images, class_names, options.froc_fps, options.froc_criterion, options.froc_iou, options.froc_rule
            )
        elif protocol == "image":
            results["image"], curves["image"] = image_level_metrics(images, class_names, options.image_thresholds)
    if options.bootstrap > 0:
        if images:
            results["bootstrap"] = bootstrap_intervals(
                images, class_names, options, options.bootstrap, options.bootstrap_seed
            )
        else:
            logger.warning("no images: no bootstrap intervals")
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
            "input_checks": report.as_dict(),
        }
        write_outputs(output_dir, results, curves, class_names, options, summary)
    return results
