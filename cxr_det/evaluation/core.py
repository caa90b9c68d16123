"""One evaluation of detections on chest X-rays, shared by the detectron2 evaluator and
``tools/evaluate.py``: :func:`evaluate_detections` checks the inputs, runs every selected
protocol of the registry (:mod:`cxr_det.evaluation.protocols`) on the same ground truth
and predictions, logs the tables and writes the result files.
"""
import itertools
import logging
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from detectron2.structures import BoxMode
from detectron2.utils import comm

from cxr_det.data.datasets.common import SkipLog, box_problem

from .bootstrap import bootstrap_intervals
from .matching import ImageBoxes
from .options import EvalOptions
from .protocols import PROTOCOLS, ProtocolInputs

__all__ = [
    "gather_predictions",
    "NO_FINDING_SCORE_KEY",
    "EvalOptions",
    "InputReport",
    "drop_bad_gt_boxes",
    "build_image_boxes",
    "evaluate_detections",
]

logger = logging.getLogger(__name__)

# Key of a prediction dict (and of a model's output dict) holding the model's own
# probability that the image is normal (the VinBigData "No finding" confidence).
NO_FINDING_SCORE_KEY = "image_no_finding_score"


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


def gather_predictions(predictions: list, distributed: bool = True) -> Optional[list]:
    """Every process's ``predictions`` (lists of per-image entries) concatenated in process 0,
    as detectron2's COCOEvaluator gathers them; None in the other processes (they report
    nothing). Without ``distributed``, ``predictions`` as they are."""
    if not distributed:
        return predictions
    comm.synchronize()
    gathered = comm.gather(predictions, dst=0)
    return list(itertools.chain(*gathered)) if comm.is_main_process() else None


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
        nf = pred.get(NO_FINDING_SCORE_KEY)
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
    coco_gt: Optional[dict] = None,
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
        coco_gt: the COCO ground-truth dict of ``gt_images`` already converted
            (:func:`~cxr_det.evaluation.coco.records_to_coco`, e.g. from the evaluator's
            cache); used only when no ground-truth box had to be left out.

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
    bad_before = sum(report.bad_gt_boxes.values())
    gt_images = drop_bad_gt_boxes(gt_images, report)
    images, kept = build_image_boxes(gt_images, predictions, len(class_names), report)
    if images and not any(len(im.gt_classes) for im in images):
        logger.warning(
            "none of the %d images has a lesion: box AP, AUC and sensitivity are undefined (NaN) and the "
            "VinBigData mAP is its 'No finding' AP alone; read the image-level specificity and false positives "
            "per normal image",
            len(images),
        )
    dropped = sum(report.bad_gt_boxes.values()) > bad_before
    inputs = ProtocolInputs(gt_images, kept, images, class_names, None if dropped else coco_gt)
    results, curves = OrderedDict(), OrderedDict()
    for name in options.protocols:
        protocol_results, protocol_curves = PROTOCOLS[name].run(inputs, options)
        results.update(protocol_results)
        curves.update(protocol_curves)
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
