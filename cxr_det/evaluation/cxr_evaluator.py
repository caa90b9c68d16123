"""``CXRDetectionEvaluator``: every chest X-ray detection protocol in one detectron2 evaluator,
configured by ``cfg.TEST.CXR_EVAL`` (:func:`cxr_det.config.add_cxr_eval_config`)."""
import copy
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm

from .coco_protocol import predictions_to_coco_results, records_to_coco
from .core import EvalOptions, evaluate_detections

__all__ = ["CXRDetectionEvaluator", "NO_FINDING_SCORE_KEY"]

logger = logging.getLogger(__name__)

# Key of a model output dict holding the model's own probability that the image is normal.
NO_FINDING_SCORE_KEY = "image_no_finding_score"


def _json_default(obj):
    """numpy arrays and scalars (e.g. in dataset dicts) as plain JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _to_float(value) -> float:
    return float(torch.as_tensor(value).detach().cpu().reshape(-1)[0])


class CXRDetectionEvaluator(DatasetEvaluator):
    """COCO, VinBigData, MDF-Net IoBB, FROC and image-level metrics from one pass.

    Ground truth is the registered dataset's dicts (``DatasetCatalog``; boxes in any
    ``BoxMode``; no annotation = normal image) and ``MetadataCatalog`` ``thing_classes``.
    ``process`` takes the model's ``instances`` (``pred_boxes``, ``scores``,
    ``pred_classes``, optional ``pred_masks``) and, when a model scores images itself,
    ``output["image_no_finding_score"]`` (probability that the image is normal; the
    VinBigData "No finding" confidence, instead of 1 - highest box score).

    ``evaluate`` returns ``{"bbox", "segm", "vinbigdata", "iobb", "froc", "image"}`` (those
    selected), each a dict of floats in percent like detectron2's (thresholds are raw
    scores) -- see :func:`~cxr_det.evaluation.core.evaluate_detections`. Dataset images that
    were never processed count as predicting nothing. With ``output_dir`` it writes
    ``metrics.json``, ``per_class.csv``, the PNG curves, and the inputs as files that
    ``tools/evaluate.py`` re-evaluates: ``ground_truth_coco.json``,
    ``coco_instances_results.json`` (COCO results) and ``cxr_eval_no_finding_scores.json``.
    """

    def __init__(
        self,
        dataset_name: str,
        cfg=None,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        *,
        protocols: Optional[Sequence[str]] = None,
        vinbigdata_iou: Optional[float] = None,
        iobb_threshold: Optional[float] = None,
        iobb_max_dets: Optional[int] = None,
        froc_fps: Optional[Sequence[float]] = None,
        froc_criterion: Optional[str] = None,
        froc_iou: Optional[float] = None,
        image_thresholds=None,
        plots: Optional[bool] = None,
        use_faster_coco_eval: Optional[bool] = None,
        vinbigdata_matching: Optional[str] = None,
        froc_rule: Optional[str] = None,
        bootstrap: Optional[int] = None,
        bootstrap_seed: Optional[int] = None,
    ):
        """Options come from ``cfg.TEST.CXR_EVAL`` when ``cfg`` is given (else defaults);
        keyword arguments that are not None override them."""
        self._dataset_name = dataset_name
        self._options = EvalOptions.from_cfg(
            cfg,
            protocols=protocols,
            vinbigdata_iou=vinbigdata_iou,
            iobb_threshold=iobb_threshold,
            iobb_max_dets=iobb_max_dets,
            froc_fps=froc_fps,
            froc_criterion=froc_criterion,
            froc_iou=froc_iou,
            image_thresholds=image_thresholds,
            plots=plots,
            use_faster_coco_eval=use_faster_coco_eval,
            vinbigdata_matching=vinbigdata_matching,
            froc_rule=froc_rule,
            bootstrap=bootstrap,
            bootstrap_seed=bootstrap_seed,
        )
        metadata = MetadataCatalog.get(dataset_name)
        if not metadata.get("thing_classes"):
            raise ValueError(f"dataset {dataset_name!r} has no thing_classes in its metadata")
        self._class_names = list(metadata.thing_classes)
        self._output_dir = output_dir
        self._distributed = distributed
        self._cpu = torch.device("cpu")
        self._predictions = []

    @property
    def options(self) -> EvalOptions:
        return self._options

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            pred = {"image_id": inp["image_id"]}
            if "instances" in out:
                inst = out["instances"].to(self._cpu)
                pred["boxes"] = inst.pred_boxes.tensor.numpy().astype(np.float64)
                pred["scores"] = inst.scores.numpy().astype(np.float64)
                pred["classes"] = inst.pred_classes.numpy().astype(np.int64)
                if inst.has("pred_masks") and "coco" in self._options.protocols:
                    pred["segmentations"] = [r["segmentation"] for r in instances_to_coco_json(inst, inp["image_id"])]
            if out.get(NO_FINDING_SCORE_KEY) is not None:
                pred[NO_FINDING_SCORE_KEY] = _to_float(out[NO_FINDING_SCORE_KEY])
            self._predictions.append(pred)

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            predictions = list(itertools.chain(*comm.gather(self._predictions, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            predictions = self._predictions
        if not predictions:
            logger.warning("[CXRDetectionEvaluator] Did not receive valid predictions.")
            return {}
        records = DatasetCatalog.get(self._dataset_name)
        if self._output_dir:
            self._save_inputs(records, predictions)
        results = evaluate_detections(records, predictions, self._class_names, self._options, self._output_dir)
        return copy.deepcopy(OrderedDict(results))

    def _save_inputs(self, records, predictions):
        """The evaluation's inputs as COCO files, for ``tools/evaluate.py``."""
        os.makedirs(self._output_dir, exist_ok=True)
        with open(os.path.join(self._output_dir, "ground_truth_coco.json"), "w") as f:
            json.dump(records_to_coco(records, self._class_names), f, default=_json_default)
        with open(os.path.join(self._output_dir, "coco_instances_results.json"), "w") as f:
            json.dump(predictions_to_coco_results(predictions), f)
        scores = [
            {"image_id": p["image_id"], "score": p[NO_FINDING_SCORE_KEY]}
            for p in predictions
            if NO_FINDING_SCORE_KEY in p
        ]
        if scores:
            with open(os.path.join(self._output_dir, "cxr_eval_no_finding_scores.json"), "w") as f:
                json.dump(scores, f)
