"""Command-line tools on synthetic data: COCO export, drawings, prediction on a DICOM."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401
from cxr_det.data import unregister_cxr_datasets
from cxr_det.synthetic import make_reflacx
from helpers import load_tool, model_cfg

ROOT = Path(__file__).resolve().parents[2]
DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"


def _tool(name):
    return load_tool(name)


def _run(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    try:
        return _tool(name).main()
    finally:
        unregister_cxr_datasets()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    make_reflacx(root, 30, seed=7, size=160)
    return root


def test_convert_to_coco_round_trips_through_pycocotools(root, tmp_path, monkeypatch, capsys):
    from pycocotools.coco import COCO

    from cxr_det.data.datasets.reflacx import load_reflacx

    out = tmp_path / "train.json"
    _run("convert_to_coco", ["--dataset", "reflacx", "--root", str(root), "--split", "train", "--output", str(out)], monkeypatch)
    printed = capsys.readouterr().out
    assert "Pleural abnormality" in printed and "annotations" in printed

    records = load_reflacx(root, "train")
    coco = COCO(str(out))
    assert len(coco.getImgIds()) == len(records)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())][0] == "Enlarged cardiac silhouette"
    for record in records:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[record["image_id"]]))
        assert len(anns) == len(record["annotations"])
        for ann, src in zip(anns, record["annotations"]):
            x0, y0, x1, y1 = src["bbox"]
            assert ann["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
            assert ann["category_id"] == src["category_id"] and ann["iscrowd"] == 0
            # The mask is the ellipse: its area is close to pi*a*b (less where clipped).
            mask = coco.annToMask(ann)
            assert 0.9 * ann["area"] <= mask.sum() <= 1.1 * ann["area"] + 20
            assert ann["area"] <= np.pi * (x1 - x0) * (y1 - y0) / 4 * 1.01


def test_visualize_data_draws_on_the_boxes(root, tmp_path, monkeypatch):
    out = tmp_path / "gt"
    _run("visualize_data", ["--dataset", "reflacx_train", "--output", str(out), "--num", "6",
                            "CXR.DATASET_ROOT", str(root)], monkeypatch)
    from cxr_det.data.datasets.reflacx import load_reflacx

    from cxr_det.utils.drawing import MIN_LONG_SIDE, TITLE_BACKGROUND, drawing_scale

    records = load_reflacx(root, "train")[:6]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6
    for record, png in zip(records, pngs):
        drawn = cv2.imread(str(png))
        # 160-pixel images are drawn upscaled, below a title strip.
        s = drawing_scale(record["height"], record["width"], 1.0, MIN_LONG_SIDE)
        h, w = round(record["height"] * s), round(record["width"] * s)
        assert max(h, w) == MIN_LONG_SIDE and drawn.shape[1] == w and drawn.shape[0] > h
        top = drawn.shape[0] - h
        assert (drawn[:top] == TITLE_BACKGROUND).all(axis=2).mean() > 0.7
        original = cv2.resize(cv2.imread(record["file_name"]), (w, h), interpolation=cv2.INTER_CUBIC)
        changed = np.abs(drawn[top:].astype(int) - original.astype(int)).sum(axis=2) > 30
        for anno in record["annotations"]:
            x0, y0, x1, y1 = (int(round(v * s)) for v in anno["bbox"])
            edge = changed[max(y0, 0) : y1, max(x0 - 3, 0) : x0 + 4]
            assert edge.any(axis=1).mean() > 0.5  # the box's (dashed) left edge is drawn


def test_predict_on_dicom_gives_boxes_in_dicom_pixels(tmp_path, monkeypatch):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from cxr_det.synthetic.dicom_writer import write_dicom
    
    cfg = model_cfg(str(DEMO_CONFIG))
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("random")
    height, width = 240, 360
    pixels = (np.random.default_rng(0).random((height, width)) * 4000).astype(np.uint16)
    dicom = write_dicom(tmp_path / "scan.dicom", pixels, bits_stored=12, photometric="MONOCHROME1")
    out = tmp_path / "pred"
    _run("predict", ["--config-file", str(DEMO_CONFIG), "--input", str(dicom), "--output", str(out),
                     "--conf-threshold", "0.0", "MODEL.WEIGHTS", str(tmp_path / "random.pth"),
                     "INPUT.MIN_SIZE_TEST", "120", "INPUT.MAX_SIZE_TEST", "180"], monkeypatch)
    result = json.loads((out / "scan.json").read_text())
    assert (result["height"], result["width"]) == (height, width)
    boxes = np.array([i["bbox"] for i in result["instances"]])
    assert len(boxes) > 10
    assert boxes[:, [0, 2]].max() <= width and boxes[:, [1, 3]].max() <= height
    # The model saw a 120x180 image; boxes beyond that frame prove they were mapped back.
    assert boxes[:, 2].max() > 200 and boxes[:, 3].max() > 130
    probabilities = result["image_scores"]
    assert len(probabilities) == 5
    for name, p in probabilities.items():
        scores = [i["score"] for i in result["instances"] if i["class"] == name]
        assert p == pytest.approx(max(scores, default=0.0), abs=1e-4)
    drawn = cv2.imread(str(out / "scan.png")).shape[:2]
    assert drawn[1] >= 1024 and drawn[1] / drawn[0] > 1.2  # upscaled to a legible size, landscape kept, + title


def test_visualize_json_results_side_by_side(root, tmp_path, monkeypatch):
    from cxr_det.data.datasets.reflacx import load_reflacx

    record = load_reflacx(root, "val")[0]
    box = [20.0, 30.0, 60.0, 50.0]  # XYWH
    results = [{"image_id": record["image_id"], "category_id": 1, "bbox": box, "score": 0.9},
               {"image_id": record["image_id"], "category_id": 2, "bbox": [5, 5, 10, 10], "score": 0.1}]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "vis"
    _run("visualize_json_results", ["--input", str(path), "--dataset", "reflacx_val", "--output", str(out),
                                    "--num", "1", "--conf-threshold", "0.5", "CXR.DATASET_ROOT", str(root)], monkeypatch)
    from cxr_det.utils.drawing import MIN_LONG_SIDE, TITLE_BACKGROUND, drawing_scale

    (png,) = out.glob("*.png")
    drawn = cv2.imread(str(png))
    s = drawing_scale(record["height"], record["width"], 1.0, MIN_LONG_SIDE)
    h, w = round(record["height"] * s), round(record["width"] * s)
    top = drawn.shape[0] - h
    assert drawn.shape[1] == 2 * w + 8 and top > 0  # two upscaled panels below title strips
    for panel in (drawn[:top, :w], drawn[:top, w + 8 :]):
        assert (panel == TITLE_BACKGROUND).all(axis=2).mean() > 0.7 and (panel.min(axis=2) > 200).sum() > 50
    right = drawn[top:, w + 8 :].astype(int)
    original = cv2.resize(cv2.imread(record["file_name"]), (w, h), interpolation=cv2.INTER_CUBIC).astype(int)
    changed = np.abs(right - original).sum(axis=2) > 30
    x0, y0, y1 = (int(round(v * s)) for v in (20, 30, 80))
    assert changed[y0:y1, x0 - 3 : x0 + 4].any(axis=1).mean() > 0.9  # left edge of the 0.9 box
    assert changed[int(6 * s) : int(14 * s), int(4 * s) : int(8 * s)].mean() < 0.2  # the 0.1 box is below the threshold


def test_benchmark_scores_the_look_alike_pair_as_one_class(tmp_path):
    """Swapped names on the look-alike pair: 0 AP50 per class, 100 once the pair is one class."""
    bench = _tool("benchmark_fusion")
    cats = [{"id": 0, "name": "Atelectasis"}, {"id": 1, "name": "Consolidation"}, {"id": 2, "name": "Pulmonary edema"}]
    boxes = {1: [10, 10, 40, 40], 2: [100, 100, 30, 50]}
    gt = {
        "images": [{"id": 0, "height": 200, "width": 200, "file_name": "a.png"}],
        "categories": cats,
        "annotations": [
            {"id": k + 1, "image_id": 0, "category_id": k, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, b in [(0, [150, 10, 20, 20]), *boxes.items()]
        ],
    }
    swapped = [{"image_id": 0, "category_id": 3 - k, "bbox": b, "score": 0.9} for k, b in boxes.items()]
    (tmp_path / "ground_truth_coco.json").write_text(json.dumps(gt))
    (tmp_path / "coco_instances_results.json").write_text(json.dumps(swapped))
    assert bench.merged_ap50(tmp_path, bench.LOOK_ALIKE) == pytest.approx(100.0)
    (tmp_path / "coco_instances_results.json").write_text(json.dumps(swapped[:1]))
    assert bench.merged_ap50(tmp_path, bench.LOOK_ALIKE) == pytest.approx(50.0, abs=1.0)


def test_serve_benchmark_measures_percentiles_and_proc_memory(monkeypatch):
    """tools/benchmark_serve.py's pieces in benchmarks/: percentiles and /proc readings."""
    import os

    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.serve_load import pct, summary
    from benchmarks.serve_processes import tree_cpu, tree_rss

    assert pct([], 50) is None
    assert pct([4, 1, 3, 2], 50) == 2.5 and pct([1, 2, 3, 4], 100) == 4 and pct([1, 2, 3, 4], 0) == 1
    s = summary([0.001, 0.003])
    assert (s["n"], s["p50_ms"], s["max_ms"]) == (2, 2.0, 3.0)
    assert summary([])["p50_ms"] is None
    assert tree_rss(os.getpid()) > 10 * 2**20 and tree_cpu(os.getpid()) > 0
