"""Two prediction sets on the same ground truth, compared: the paired-bootstrap table of
``tools/evaluate.py --compare``, and the AP50 gain of one training run over another from
their evaluator files (the clinical gain of ``tools/benchmark_fusion.py``,
:mod:`benchmarks.fusion_benchmark`), with a group of look-alike classes scored apart and
as one class.

The intervals and p-values are those of :mod:`cxr_det.evaluation.bootstrap` (percentile
intervals, Efron & Tibshirani 1993; paired p-value, Davison & Hinkley 1997); AP50 is COCO's
(pycocotools ``COCOeval``, :mod:`cxr_det.evaluation.coco`). A run's inputs are read from
the files its evaluator wrote (:mod:`cxr_det.evaluation.coco_files`).
"""
import json
import os
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
from tabulate import tabulate

from cxr_det.utils.atomic import atomic_write_json

from .bootstrap import difference_row, paired_comparison, paired_resamples
from .coco import coco_metrics
from .coco_files import GROUND_TRUTH_FILE, RESULTS_FILE, load_ground_truth, load_predictions
from .core import EvalOptions, build_image_boxes, drop_bad_gt_boxes
from .report import json_safe

__all__ = [
    "write_paired_comparison",
    "merged_ap50",
    "clinical_gain",
]

def write_paired_comparison(output_dir, records, predictions_a, predictions_b, class_names, options,
                            resamples: int, seed: int, report=None, names=("A", "B")):
    """Paired bootstrap comparison of predictions B against A on the ground truth
    ``records`` (see :func:`cxr_det.evaluation.bootstrap.paired_comparison`), written to
    ``output_dir/comparison.json``. Returns ``(comparison, text, path)``: ``text`` one
    table per metric (B - A, its 95% interval and p-value per class). Bad ground-truth boxes
    and prediction problems are counted in ``report``. Raises ValueError for
    ``resamples`` < 1."""
    if resamples < 1:
        raise ValueError(f"a paired comparison needs at least 1 bootstrap resample, got {resamples}")
    records = drop_bad_gt_boxes(records, report)
    images_a, _ = build_image_boxes(records, predictions_a, len(class_names), report)
    images_b, _ = build_image_boxes(records, predictions_b, len(class_names), report)
    result = paired_comparison(images_a, images_b, class_names, options, resamples, seed)
    parts = []
    for metric, rows in result.items():
        body = [[row, v["A"], v["B"], v["difference"], f"[{v['low']:.2f}, {v['high']:.2f}]", v["p_value"]]
                for row, v in rows.items()]
        parts.append(f"\n## {metric}: B - A, paired bootstrap 95% CI\n")
        parts.append(tabulate(body, headers=["class", "A", "B", "B - A", "95% CI", "p"], tablefmt="pipe",
                              floatfmt=".3f"))
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "comparison.json")
    atomic_write_json(path, json_safe({"A": names[0], "B": names[1], "resamples": resamples, "seed": seed,
                                       "options": asdict(options), "input_checks": report.as_dict() if report else {},
                                       "comparison": result}), indent=2)
    return result, "\n".join(parts), path


def merged_ap50(inference_dir, classes: Sequence[str]) -> float:
    """COCO AP50 (percent) of ``classes`` scored as one class, from the evaluator's files
    in ``inference_dir`` (``ground_truth_coco.json``, ``coco_instances_results.json``):
    finding the lesion counts, naming it among ``classes`` does not. Raises SystemExit
    naming the file when one of ``classes`` is not in the ground truth."""
    inference_dir = Path(inference_dir)
    gt = json.loads((inference_dir / GROUND_TRUTH_FILE).read_text())
    dt = json.loads((inference_dir / RESULTS_FILE).read_text())
    ids = {c["id"] for c in gt["categories"] if c["name"] in classes}
    if len(ids) != len(classes):
        raise SystemExit(f"{inference_dir}/{GROUND_TRUTH_FILE} lacks one of the classes {classes}")
    merged = min(ids)
    gt["categories"] = [{"id": merged, "name": " or ".join(classes)}]
    gt["annotations"] = [dict(a, category_id=merged) for a in gt["annotations"] if a["category_id"] in ids]
    dt = [dict(r, category_id=merged) for r in dt if r["category_id"] in ids]
    return coco_metrics(gt, dt, [gt["categories"][0]["name"]], tasks=["bbox"])["bbox"]["AP50"]


def clinical_gain(image_only_dir, clinical_dir, look_alike: Sequence[str], resamples: int = 1000, seed: int = 0):
    """Clinical - image-only COCO AP50 with paired-bootstrap 95% intervals over images.

    Reads each run's evaluator files (``ground_truth_coco.json``,
    ``coco_instances_results.json``) from its inference folder; both must hold the same
    images and ground truth (else SystemExit naming the files). Returns an ordered dict of
    rows ("AP50", "AP50 look-alike pair" (mean of the pair's AP50), then "AP50 <class>"),
    each ``{"A": image-only, "B": clinical, "difference", "low", "high", "p_value"}`` in
    percent (see :func:`cxr_det.evaluation.bootstrap.difference_row`).
    """
    image_only_dir, clinical_dir = Path(image_only_dir), Path(clinical_dir)
    records, names, cat_to_index = load_ground_truth(image_only_dir / GROUND_TRUTH_FILE)
    other, other_names, _ = load_ground_truth(clinical_dir / GROUND_TRUTH_FILE)
    if names != other_names or records != other:
        raise SystemExit(f"{image_only_dir}/{GROUND_TRUTH_FILE} and {clinical_dir}/{GROUND_TRUTH_FILE} differ: "
                         "the two runs were not evaluated on the same images")
    missing = [c for c in look_alike if c not in names]
    if missing:
        raise SystemExit(f"{image_only_dir}/{GROUND_TRUTH_FILE} lacks the classes {missing}")
    records = drop_bad_gt_boxes(records)
    images = [
        build_image_boxes(records, load_predictions(d / RESULTS_FILE, cat_to_index), len(names))[0]
        for d in (image_only_dir, clinical_dir)
    ]
    scorer, (point_a, point_b), ((class_a, sum_a), (class_b, sum_b)) = paired_resamples(
        images[0], images[1], names, EvalOptions(protocols=("coco",)), resamples, seed
    )
    pair = [names.index(c) for c in look_alike]
    rows = OrderedDict()
    rows["AP50"] = difference_row(point_a[1]["AP50"], point_b[1]["AP50"], sum_b["AP50"] - sum_a["AP50"])
    with np.errstate(invalid="ignore"):
        look_a, look_b = np.nanmean(class_a["AP50"][:, pair], axis=1), np.nanmean(class_b["AP50"][:, pair], axis=1)
    rows["AP50 look-alike pair"] = difference_row(
        np.mean(point_a[0]["AP50"][pair]), np.mean(point_b[0]["AP50"][pair]), look_b - look_a
    )
    for k, name in enumerate(names):
        rows[f"AP50 {name}"] = difference_row(
            point_a[0]["AP50"][k], point_b[0]["AP50"][k], class_b["AP50"][:, k] - class_a["AP50"][:, k]
        )
    return rows
