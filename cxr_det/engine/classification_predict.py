"""``tools/predict.py`` and ``tools/visualize_saliency.py`` for image classifiers: per-label
probabilities, decisions at the run's thresholds, JSON records and Grad-CAM pictures.

The detection counterparts are :mod:`cxr_det.engine.predict_files` and
:mod:`cxr_det.engine.inference`; what both share is used from there (input keys and
output file names, the clinical checks and ``predictions.json`` / ``summary.json``). Here:

- :class:`DecisionRule` / :func:`decision_rule`: how probabilities become decisions, the
  evaluator's rule (:mod:`cxr_det.evaluation.classification`: multi-label "positive when
  the probability is >= the label's threshold"; single-label the arg-max class, binary
  "class 1 when its probability is >= the threshold") with the thresholds the run chose on
  its threshold dataset (``OUTPUT_DIR/inference/<dataset>/thresholds.json``), else 0.5.
- :func:`classification_record`: one image's JSON record.
- :func:`saliency_picture`: the X-ray and the Grad-CAM overlays of the labels shown
  (:func:`shown_labels`), titled with probabilities, decisions and ground truth.
- :func:`predict_classification_files`: the loop over input files (unreadable files
  skipped, counted and named, as for detection); :func:`draw_dataset_saliency`: the
  pictures of a registered dataset.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from cxr_det.data.image_io import read_image, read_options_from_config
from cxr_det.engine.inference import InputImage, clinical_entry, output_stems
from cxr_det.engine.predict_files import input_problem_lines, read_input
from cxr_det.evaluation.classification import (
    MULTI_LABEL,
    THRESHOLDS_FILE,
    read_thresholds,
    single_label_decisions,
)
from cxr_det.utils.atomic import atomic_write_json
from cxr_det.utils.drawing_files import drawing_file_name, write_png
from cxr_det.utils.saliency import GradCAMSaliency, LabelPanel, saliency_drawing

__all__ = [
    "DEFAULT_THRESHOLD",
    "DecisionRule",
    "decision_rule",
    "thresholds_file",
    "classification_record",
    "shown_labels",
    "TRUE_CLASS",
    "ground_truth_texts",
    "saliency_picture",
    "predict_classification_files",
    "label_indices",
    "draw_dataset_saliency",
    "classification_report_lines",
    "describe_classifier",
]

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5  # decision threshold of a label when the run chose none


@dataclass
class DecisionRule:
    """How a classifier's probabilities become decisions.

    Attributes:
        task: ``"multi_label"`` or ``"single_label"``.
        class_names: the C labels / classes, in output order.
        thresholds: ``{label: threshold in [0, 1]}``: every label (multi-label), class 1
            (binary single-label), none (single-label with more classes: arg-max).
        source: the ``thresholds.json`` they come from; "" for the defaults (0.5).
        rule: the rule that chose them (``"f2"``, ``"youden"``, ``"fixed"``) and on which
            dataset, e.g. ``"f2 on chexpert_val"``; "" for the defaults.
    """

    task: str
    class_names: List[str]
    thresholds: Dict[str, float] = field(default_factory=dict)
    source: str = ""
    rule: str = ""

    def decide(self, scores: np.ndarray):
        """Multi-label: (C,) bool, positive where ``scores >= threshold``; single-label: the
        decided class index (int). ``scores``: (C,) probabilities."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if self.task == MULTI_LABEL:
            return scores >= np.array([self.thresholds[n] for n in self.class_names])
        threshold = self.thresholds.get(self.class_names[1]) if len(self.class_names) == 2 else None
        return int(single_label_decisions(scores[None], threshold)[0])

    def describe(self) -> str:
        """One line saying how decisions are made and where the thresholds come from."""
        if self.task != MULTI_LABEL and len(self.class_names) != 2:
            return "decision: the most probable class"
        what = ("a label is positive when its probability is >= its threshold" if self.task == MULTI_LABEL
                else f"{self.class_names[1]} when its probability is >= the threshold")
        if self.source:
            return f"decision: {what}; thresholds chosen by {self.rule} ({self.source})"
        return (f"decision: {what}; threshold {DEFAULT_THRESHOLD} for every label: the run has no "
                f"{THRESHOLDS_FILE} (evaluate it on its threshold dataset to choose them)")


def thresholds_file(cfg) -> Optional[str]:
    """The ``thresholds.json`` of a run, or None when there is none.

    Looked for under ``inference/<dataset>/`` of the folder of ``MODEL.WEIGHTS`` (the run
    folder, wherever it was moved) and of ``OUTPUT_DIR``, for the threshold dataset
    ``TEST.CXR_CLS_EVAL.THRESHOLD_DATASET`` (default ``DATASETS.TEST[0]``), as
    :class:`~cxr_det.evaluation.classification.ClassificationEvaluator` writes it.
    """
    dataset = cfg.TEST.CXR_CLS_EVAL.THRESHOLD_DATASET or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if not dataset:
        return None
    folders = [os.path.dirname(os.path.abspath(cfg.MODEL.WEIGHTS))] if cfg.MODEL.WEIGHTS else []
    folders.append(cfg.OUTPUT_DIR)
    for folder in folders:
        path = os.path.join(folder, "inference", dataset, THRESHOLDS_FILE)
        if os.path.isfile(path):
            return path
    return None


def decision_rule(cfg, class_names: Sequence[str], task: str) -> DecisionRule:
    """The :class:`DecisionRule` of a trained run: its ``thresholds.json``
    (:func:`thresholds_file`), else :data:`DEFAULT_THRESHOLD` per label (logged).

    Raises:
        ValueError: a ``thresholds.json`` for another task or label set, or not readable
            (:func:`~cxr_det.evaluation.classification.read_thresholds`, naming the file).
    """
    names = [str(n) for n in class_names]
    path = thresholds_file(cfg)
    if path is None:
        binary = task != MULTI_LABEL and len(names) == 2
        defaults = names if task == MULTI_LABEL else names[1:] if binary else []
        rule = DecisionRule(task, names, {n: DEFAULT_THRESHOLD for n in defaults})
        if defaults:
            logger.warning(rule.describe())
        return rule
    thresholds = dict(read_thresholds(path, names, task))
    with open(path) as f:
        content = json.load(f)
    how = f"{content.get('rule', '?')} on {content.get('chosen_on', '?')}"
    return DecisionRule(task, names, thresholds, source=path, rule=how)


def classification_record(key: str, scores, rule: DecisionRule, height: int, width: int,
                          clinical_raw=None, clinical_problems=(), featurizer=None) -> dict:
    """One image's classification, ready for ``json.dump``; the layout of the detection
    record (:func:`cxr_det.engine.inference.prediction_record`) without boxes.

    Args:
        key: the input's relative path; scores: (C,) probabilities (sigmoid per label for
            multi-label, softmax for single-label); height, width: the file's size in pixels.

    Returns:
        ``{"file_name", "height", "width", "task", "image_scores": {label: probability},
        "thresholds": {label: threshold}, "thresholds_from": thresholds.json path or
        "default", then multi-label ``"decisions": {label: bool}`` and ``"positive":
        [labels]`` (most probable first), single-label ``"decided_class": name``;
        "clinical": {"raw", "used", "problems"}`` (with a clinical featurizer)}.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    names = rule.class_names
    result = {
        "file_name": key,
        "height": int(height),
        "width": int(width),
        "task": rule.task,
        "image_scores": {name: round(float(scores[c]), 4) for c, name in enumerate(names)},
        "thresholds": {name: round(float(t), 4) for name, t in rule.thresholds.items()},
        "thresholds_from": rule.source or "default",
    }
    decided = rule.decide(scores)
    if rule.task == MULTI_LABEL:
        result["decisions"] = {name: bool(decided[c]) for c, name in enumerate(names)}
        result["positive"] = [names[c] for c in np.argsort(-scores, kind="stable") if decided[c]]
    else:
        result["decided_class"] = names[decided]
    if featurizer is not None:
        result["clinical"] = clinical_entry(clinical_raw, clinical_problems, featurizer)
    return result


def shown_labels(scores, rule: DecisionRule, k: int) -> List[int]:
    """The label indices a picture shows, at most ``k``: the positive labels (multi-label)
    or the decided class (single-label) first, then the most probable others, each group by
    decreasing probability."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    decided = rule.decide(scores)
    chosen = np.asarray(decided, dtype=bool) if rule.task == MULTI_LABEL else np.arange(len(scores)) == decided
    order = np.argsort(-scores, kind="stable")
    ranked = [int(c) for c in order if chosen[c]] + [int(c) for c in order if not chosen[c]]
    return ranked[: max(int(k), 0)]


TRUE_CLASS = "true class"


def ground_truth_texts(record: dict, task: str) -> Dict[int, str]:
    """``{label index: text}`` of a dataset dict's ground truth for the overlay titles:
    multi-label ``"positive"`` / ``"negative"`` / ``"ignored"`` (label weight 0) per label,
    single-label :data:`TRUE_CLASS` for the true class only; ``{}`` without targets."""
    if task == MULTI_LABEL:
        labels = record.get("labels")
        if labels is None:
            return {}
        weights = record.get("label_weights")
        weights = [1.0] * len(labels) if weights is None else weights
        return {c: "ignored" if float(w) == 0 else ("positive" if float(v) > 0.5 else "negative")
                for c, (v, w) in enumerate(zip(labels, weights))}
    label = record.get("label")
    return {} if label is None else {int(label): TRUE_CLASS}


def _decision_text(rule: DecisionRule, scores, c: int) -> str:
    name = rule.class_names[c]
    if rule.task == MULTI_LABEL:
        t = rule.thresholds[name]
        return f"≥ {t:.2f}: positive" if scores[c] >= t else f"< {t:.2f}: negative"
    decided = "decided class" if rule.decide(scores) == c else ""
    t = rule.thresholds.get(name)
    if t is None:  # arg-max over the classes, or class 0 of a binary task
        return decided
    return f"{'≥' if scores[c] >= t else '<'} {t:.2f}" + (f": {decided}" if decided else "")


def saliency_picture(saliency: GradCAMSaliency, inputs: dict, image_rgb: np.ndarray, scores, rule: DecisionRule,
                     labels: Sequence[int], name: str, truth: Optional[Dict[int, str]] = None) -> np.ndarray:
    """The Grad-CAM picture of one image (:func:`~cxr_det.utils.saliency.saliency_drawing`).

    Args:
        saliency: the model's :class:`~cxr_det.utils.saliency.GradCAMSaliency`.
        inputs: the model input of the image (:meth:`ClassificationPredictor.inputs`).
        image_rgb: (H, W, 3) uint8 RGB, the file as read (heatmaps are resized onto it).
        scores: (C,) probabilities; labels: indices of the labels to show.
        name: the image's name (first title line); truth: :func:`ground_truth_texts`.

    Returns:
        (H', W', 3) uint8 RGB.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    truth = truth or {}
    heatmaps = saliency(inputs, labels)
    panels = [LabelPanel(rule.class_names[c], float(scores[c]), _decision_text(rule, scores, c), truth.get(c, ""))
              for c in labels]
    order = np.argsort(-scores, kind="stable")
    title = [f"{name} — Grad-CAM ({'multi-label' if rule.task == MULTI_LABEL else 'single-label'})",
             "probabilities: " + ", ".join(f"{rule.class_names[c]} {scores[c]:.2f}" for c in order),
             rule.describe()]
    true_class = [rule.class_names[c] for c, text in truth.items() if text == TRUE_CLASS]
    if true_class:
        title.append(f"ground truth: {true_class[0]}")
    title.append("overlay: jet colours, red = where the label's score draws most of its evidence "
                 "(each map scaled to its own maximum)")
    return saliency_drawing(image_rgb, list(heatmaps), panels, title)


def predict_classification_files(predictor, cfg, images: Sequence[InputImage], clinical: Dict[str, Optional[dict]],
                                 problems: Dict[str, List[str]], output_dir: str, rule: DecisionRule, *,
                                 saliency_labels: int = 3, from_dicom: bool = False):
    """Classify each image; write ``<output_dir>/<key without suffix>.json`` and, unless
    ``saliency_labels`` is 0, the Grad-CAM ``.png`` (file names of
    :func:`~cxr_det.engine.inference.output_stems`, as for detection).

    Args:
        predictor: a :class:`~cxr_det.engine.predictor.ClassificationPredictor`.
        cfg: its config (the image reading options of the picture).
        images: the inputs; clinical: ``{key: raw record or None}``.
        problems: ``{key: messages}`` from
            :func:`~cxr_det.engine.predict_files.check_clinical_inputs`; updated in place
            (unreadable files removed, DICOM header records checked).
        rule: :func:`decision_rule`'s decisions.
        saliency_labels: labels drawn per image (:func:`shown_labels`); 0: no pictures.
        from_dicom: merge ``{"age", "gender"}`` from each DICOM header under the given record.

    Returns:
        ``(records, skipped)``: the JSON record of each classified image
        (:func:`classification_record`) and ``{key: why}`` for the files that could not be
        read (skipped, counted, logged).
    """
    featurizer = predictor.clinical_featurizer
    saliency = GradCAMSaliency(predictor.model) if saliency_labels > 0 else None
    read_options = read_options_from_config(cfg)
    stems = output_stems(output_dir, [image.key for image in images])
    everything, skipped = [], {}
    for image in tqdm(images, desc="classifying"):
        read = read_input(image, "RGB", read_options, clinical[image.key], featurizer, problems, skipped,
                          from_dicom=from_dicom)
        if read is None:
            continue
        pixels, record = read
        inputs = predictor.inputs(image.path, record)
        scores = predictor(inputs)["scores"].numpy()
        result = classification_record(image.key, scores, rule, pixels.shape[0], pixels.shape[1], record,
                                       problems.get(image.key, ()), featurizer)
        stem = stems[image.key]
        if saliency is not None:
            labels = shown_labels(scores, rule, saliency_labels)
            result["saliency_labels"] = [rule.class_names[c] for c in labels]
            drawn = saliency_picture(saliency, inputs, pixels, scores, rule, labels, image.key)
            write_png(stem + ".png", drawn)
        everything.append(result)
        atomic_write_json(stem + ".json", result, indent=2, default=str, allow_nan=False)
    return everything, skipped


def label_indices(names: Sequence[str], class_names: Sequence[str]) -> List[int]:
    """Indices of the label ``names`` (``--labels``) in ``class_names``.

    Raises:
        ValueError: an unknown name, listing the model's labels.
    """
    unknown = [n for n in names if n not in class_names]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; the model's labels: {', '.join(class_names)}")
    return [list(class_names).index(n) for n in names]


def draw_dataset_saliency(predictor, cfg, records: Sequence[dict], rule: DecisionRule, output_dir: str, *,
                          labels: Optional[Sequence[int]] = None, saliency_labels: int = 3) -> int:
    """Grad-CAM pictures of dataset dicts (``tools/visualize_saliency.py``), the ground truth
    beside the probabilities, one ``output_dir/<drawing_file_name>`` PNG per dict
    (:func:`cxr_det.utils.drawing_files.drawing_file_name`).

    Each dict goes through the predictor's mapper as in evaluation (its own clinical record).

    Args:
        predictor: a :class:`~cxr_det.engine.predictor.ClassificationPredictor`.
        cfg: its config (the image reading options of the picture).
        records: classification dataset dicts (``file_name``, ``image_id``, ``labels`` /
            ``label_weights`` or ``label``, ``clinical``).
        labels: label indices drawn for every image; None: :func:`shown_labels` with
            ``saliency_labels`` per image.

    Returns:
        the number of files written.

    Raises:
        the mapper's errors for a missing or unreadable image (naming the file).
    """
    os.makedirs(output_dir, exist_ok=True)
    saliency = GradCAMSaliency(predictor.model)
    read_options = read_options_from_config(cfg)
    for record in tqdm(records, desc="Grad-CAM"):
        inputs = predictor.mapper(record)
        scores = predictor(inputs)["scores"].numpy()
        shown = list(labels) if labels is not None else shown_labels(scores, rule, saliency_labels)
        pixels = read_image(record["file_name"], "RGB", **read_options)
        name = f"{record['image_id']}: {'/'.join(PurePath(record['file_name']).parts[-3:])}"
        drawn = saliency_picture(saliency, inputs, pixels, scores, rule, shown, name,
                                 ground_truth_texts(record, rule.task))
        write_png(os.path.join(output_dir, drawing_file_name(record)), drawn)
    return len(records)


def classification_report_lines(summary: dict, records: Sequence[dict], output_dir: str, rule: DecisionRule,
                                saliency: bool, clinical_file: str = "") -> List[str]:
    """What ``tools/predict.py`` prints at the end for a classifier: counts, the decision
    rule, decisions per label (multi-label: positive images; single-label: images per
    decided class), skipped files, clinical problems of the file and of the first 10 images."""
    made = "JSON + Grad-CAM PNG" if saliency else "JSON"
    lines = [f"{summary['predicted']} of {summary['images']} image(s) classified: {made} in {output_dir}",
             rule.describe()]
    if rule.task == MULTI_LABEL:
        counts = {n: sum(r["decisions"][n] for r in records) for n in rule.class_names}
        lines.append("positive images per label: " + ", ".join(f"{n} {k}" for n, k in counts.items()))
    else:
        counts = {n: sum(r["decided_class"] == n for r in records) for n in rule.class_names}
        lines.append("images per decided class: " + ", ".join(f"{n} {k}" for n, k in counts.items()))
    return lines + input_problem_lines(summary, clinical_file)


def describe_classifier(rule: DecisionRule) -> str:
    """The task and decision lines ``predict.py --describe`` prints before the labels and
    clinical fields of :func:`~cxr_det.engine.inference.describe_inputs`."""
    if rule.task == MULTI_LABEL:
        task = "multi-label classifier: one probability per label (sigmoid), several labels may be positive"
    else:
        task = "single-label classifier: one probability per class (softmax, summing to 1)"
    lines = [task, rule.describe()]
    if rule.thresholds:
        lines.append("thresholds: " + ", ".join(f"{n} {t:.3f}" for n, t in rule.thresholds.items()))
    return "\n".join(lines)
