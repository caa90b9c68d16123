"""tools/benchmark_fusion.py states the clinical gain with a paired-bootstrap interval,
from the two runs' saved evaluator files (issue 10, section 5)."""
import json
from pathlib import Path

import numpy as np
import pytest

from cxr_det.evaluation.coco import coco_metrics
from helpers import load_tool

ROOT = Path(__file__).resolve().parents[2]
CATS = [{"id": 0, "name": "Atelectasis"}, {"id": 1, "name": "Consolidation"}, {"id": 2, "name": "Pulmonary edema"}]


def _bench():
    return load_tool("benchmark_fusion")


def _runs(tmp_path):
    """60 images, one lesion each; the image-only model names half of the look-alike lesions
    wrongly (Consolidation <-> Pulmonary edema), the clinical model names them all right."""
    rng = np.random.default_rng(0)
    gt = {"images": [], "annotations": [], "categories": CATS}
    image_only, clinical = [], []
    for i in range(60):
        gt["images"].append({"id": i, "height": 200, "width": 200, "file_name": f"{i}.png"})
        c = int(rng.integers(0, 3))
        box = [float(v) for v in rng.uniform(10, 60, 2)] + [40.0, 40.0]
        gt["annotations"].append({"id": i + 1, "image_id": i, "category_id": c, "bbox": box, "area": 1600.0,
                                  "iscrowd": 0})
        score = float(rng.uniform(0.5, 1.0))
        wrong = c in (1, 2) and rng.random() < 0.5
        image_only.append({"image_id": i, "category_id": 3 - c if wrong else c, "bbox": box, "score": score})
        clinical.append({"image_id": i, "category_id": c, "bbox": box, "score": score})
    dirs = {}
    for name, results in (("image-only", image_only), ("clinical", clinical)):
        d = tmp_path / name / "inference" / "reflacx_val"
        d.mkdir(parents=True)
        (d / "ground_truth_coco.json").write_text(json.dumps(gt))
        (d / "coco_instances_results.json").write_text(json.dumps(results))
        dirs[name] = d
    return gt, image_only, clinical, dirs


def test_clinical_gain_with_paired_interval(tmp_path):
    bench = _bench()
    gt, image_only, clinical, dirs = _runs(tmp_path)
    gain = bench.clinical_gain(dirs["image-only"], dirs["clinical"], bench.LOOK_ALIKE, resamples=300, seed=0)
    assert list(gain)[:2] == ["AP50", "AP50 look-alike pair"]
    names = [c["name"] for c in CATS]
    # the point values are pycocotools' AP50 of each run (the numbers of the benchmark table)
    ref_a = coco_metrics(gt, image_only, names, tasks=["bbox"], use_faster_coco_eval=False)["bbox"]
    ref_b = coco_metrics(gt, clinical, names, tasks=["bbox"], use_faster_coco_eval=False)["bbox"]
    assert gain["AP50"]["A"] == pytest.approx(ref_a["AP50"], abs=1e-9)
    assert gain["AP50"]["B"] == pytest.approx(ref_b["AP50"], abs=1e-9)
    assert gain["AP50"]["difference"] == pytest.approx(ref_b["AP50"] - ref_a["AP50"], abs=1e-9)
    pair = gain["AP50 look-alike pair"]
    assert pair["difference"] == pytest.approx(
        (ref_b["AP50-Consolidation"] + ref_b["AP50-Pulmonary edema"]) / 2
        - (ref_a["AP50-Consolidation"] + ref_a["AP50-Pulmonary edema"]) / 2, abs=1e-9)
    assert 0 < pair["low"] <= pair["difference"] <= pair["high"] and pair["p_value"] < 0.05
    assert gain["AP50 Atelectasis"]["difference"] == 0.0 and gain["AP50 Atelectasis"]["p_value"] == 1.0
    # runs evaluated on different images cannot be paired
    other = json.loads((dirs["clinical"] / "ground_truth_coco.json").read_text())
    other["images"] = other["images"][:-1]
    other["annotations"] = [a for a in other["annotations"] if a["image_id"] != 59]
    (dirs["clinical"] / "ground_truth_coco.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="not evaluated on the same images"):
        bench.clinical_gain(dirs["image-only"], dirs["clinical"], bench.LOOK_ALIKE, resamples=10)
