"""tools/dataset_stats.py on synthetic detection and classification datasets: the figures
equal those counted here from the registered dataset dicts."""
import json
from collections import Counter

import pytest

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog

from cxr_det.config import get_cxr_cfg
from cxr_det.data import register_from_config, unregister_cxr_datasets
from cxr_det.synthetic import make_reflacx
from cxr_det.synthetic.chexpert_writer import make_chexpert
from cxr_det.synthetic.image_label_writers import make_image_folder
from helpers import load_tool


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("stats")
    make_reflacx(root, 8, seed=2, size=96)
    make_chexpert(root, 10, seed=2, size=32)
    make_image_folder(root, "covid", 3, seed=2, layout="flat", size=16)
    return root


def _run(argv):
    try:
        return load_tool("dataset_stats").main(argv)
    finally:
        unregister_cxr_datasets()


def _records(root, name, *opts):
    """The dataset dicts and metadata of ``name`` as registration gives them."""
    register_from_config(get_cxr_cfg(opts=["CXR.DATASET_ROOT", str(root), *opts]))
    try:
        return DatasetCatalog.get(name), MetadataCatalog.get(name)
    finally:
        unregister_cxr_datasets()


def test_detection_boxes_and_images_per_class(root, tmp_path, capsys):
    out = tmp_path / "stats" / "reflacx.json"
    stats = _run(["--dataset", "reflacx_all", "--json", str(out), "CXR.DATASET_ROOT", str(root)])
    records, meta = _records(root, "reflacx_all")
    assert stats["task"] == "detection" and stats["records"] == len(records)
    assert stats["images"] == len({r["file_name"] for r in records})
    boxes = Counter(a["category_id"] for r in records for a in r["annotations"])
    assert boxes and stats["boxes"] == sum(boxes.values())
    assert [row["class"] for row in stats["classes"]] == meta.thing_classes
    for i, row in enumerate(stats["classes"]):
        images = {r["file_name"] for r in records if any(a["category_id"] == i for a in r["annotations"])}
        assert (row["boxes"], row["images"]) == (boxes[i], len(images))
    assert stats["images_without_boxes"] == len({r["file_name"] for r in records if not r["annotations"]})
    assert json.loads(out.read_text()) == stats
    printed = capsys.readouterr().out
    assert f"reflacx_all (detection): {stats['images']} images" in printed and meta.thing_classes[0] in printed


def test_multi_label_positive_negative_ignored_and_prevalence(root, capsys):
    opts = ["CXR.DATASET_ROOT", str(root), "CXR.CHEXPERT.VIEWS", "all", "CXR.CHEXPERT.UNCERTAINTY", "ignore"]
    stats = _run(["--dataset", "chexpert_train", *opts])
    records, meta = _records(root, "chexpert_train", *opts[2:])
    assert stats["task"] == "multi_label" and stats["images"] == len(records) > 0
    assert stats["options"]["registrar"]["uncertainty"]["Edema"] == "ignore"
    assert sum(row["ignored"] for row in stats["classes"]) > 0  # the data has uncertain cells
    for j, row in enumerate(stats["classes"]):
        assert row["class"] == meta.thing_classes[j]
        positive = sum(r["labels"][j] == 1 and r["label_weights"][j] > 0 for r in records)
        negative = sum(r["labels"][j] == 0 and r["label_weights"][j] > 0 for r in records)
        ignored = sum(r["label_weights"][j] == 0 for r in records)
        assert (row["positive"], row["negative"], row["ignored"]) == (positive, negative, ignored)
        assert row["prevalence"] == (positive / (positive + negative) if positive + negative else None)
    assert "prevalence" in capsys.readouterr().out


def test_single_label_images_and_share(root):
    opts = ["CXR.DATASET_ROOT", str(root), "CXR.IMAGE_FOLDER.NAME", "covid", "CXR.IMAGE_FOLDER.VAL_FRACTION", "0.0"]
    stats = _run(["--dataset", "folder_train", *opts])
    records, meta = _records(root, "folder_train", *opts[2:])
    counts = Counter(r["label"] for r in records)
    assert stats["task"] == "single_label" and stats["images"] == len(records) == 12
    assert [(row["class"], row["images"], row["share"]) for row in stats["classes"]] == [
        (name, counts[i], counts[i] / len(records)) for i, name in enumerate(meta.thing_classes)]


def test_unknown_dataset_lists_the_registered_names(root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(["--dataset", "chexpert_tain", "CXR.DATASET_ROOT", str(root)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "'chexpert_tain' is not registered" in err and "chexpert_train" in err and "reflacx_val" in err


def test_dataset_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match=r"chexpert_valid cannot be loaded: .*CheXpert"):
        _run(["--dataset", "chexpert_valid", "CXR.DATASET_ROOT", str(tmp_path)])
