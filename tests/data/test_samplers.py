"""Imbalance samplers: image-level repeat factors, the class-balanced sampler, the classification
loaders that select them, and detectron2's box-level repeat factors on REFLACX dicts."""
import itertools
import logging
import math
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data.samplers import RepeatFactorTrainingSampler, TrainingSampler
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from cxr_det.config import get_cxr_cfg
from cxr_det.data.classification_loader import (
    build_classification_test_loader,
    build_classification_train_loader,
    build_classification_train_sampler,
)
from cxr_det.data.samplers import ClassBalancedSampler, image_repeat_factors, label_repeat_factors, positive_labels


def _draw(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def _multi(labels, weights=None, image_id=0):
    return {"image_id": image_id, "labels": labels, "label_weights": weights or [1.0] * len(labels)}


# 10 images, 3 labels. Label 0: 5 positives; label 1: 1 positive (image 5; image 6's positive is
# ignored, weight 0); label 2: 2 positives (images 5 and 7); images 8 and 9 have none.
HAND = [_multi([1, 0, 0], image_id=i) for i in range(5)] + [
    _multi([0, 1, 1], image_id=5),
    _multi([0, 1, 0], [1.0, 0.0, 1.0], image_id=6),
    _multi([1, 0, 1], image_id=7),
    _multi([0, 0, 0], image_id=8),
    _multi([0, 0, 0], [0.0, 0.0, 0.0], image_id=9),
]


def test_image_repeat_factors_follow_the_lvis_rule_on_a_hand_example():
    t = 0.5
    r0, r1, r2 = 1.0, math.sqrt(t / (1 / 10)), math.sqrt(t / (2 / 10))  # f0 = 0.6 -> sqrt(5/6) < 1 -> 1
    assert label_repeat_factors(HAND, t) == pytest.approx({0: r0, 1: r1, 2: r2})
    expected = [r0] * 5 + [max(r1, r2), 1.0, max(r0, r2), 1.0, 1.0]
    factors = image_repeat_factors(HAND, t)
    assert factors.dtype == torch.float32 and factors.tolist() == pytest.approx(expected)
    assert image_repeat_factors(HAND, 0.0).tolist() == [1.0] * 10  # detectron2's default threshold: no repeats


def test_single_label_repeat_factors_count_images_per_class():
    dicts = [{"image_id": i, "label": c} for i, c in enumerate([0] * 8 + [1] * 2)]
    assert image_repeat_factors(dicts, 0.4).tolist() == pytest.approx([1.0] * 8 + [math.sqrt(0.4 / 0.2)] * 2)


def test_repeat_factors_reject_dicts_without_targets_and_bad_thresholds():
    with pytest.raises(ValueError, match=r"image 'box-image'.*neither 'labels'.*nor 'label'"):
        image_repeat_factors([{"image_id": "box-image", "annotations": []}], 0.1)
    with pytest.raises(ValueError, match="REPEAT_THRESHOLD"):
        image_repeat_factors(HAND, -0.1)
    with pytest.raises(ValueError, match="empty"):
        image_repeat_factors([], 0.1)
    with pytest.raises(ValueError, match=r"image 4: 2 labels but 3 label_weights"):
        positive_labels({"image_id": 4, "labels": [1, 0], "label_weights": [1, 1, 1]})


def test_repeat_factors_raise_the_drawn_frequency_of_a_rare_label():
    # 95 images; label 1 is positive on 5 of them (f = 0.053), label 0 on all others.
    dicts = [_multi([1, 0], image_id=i) for i in range(90)] + [_multi([0, 1], image_id=90 + i) for i in range(5)]
    factors = image_repeat_factors(dicts, 0.3)
    assert float(factors[-1]) == pytest.approx(math.sqrt(0.3 / (5 / 95)))
    n = 20000
    plain = sum(i >= 90 for i in _draw(TrainingSampler(len(dicts), seed=1), n)) / n
    repeated = sum(i >= 90 for i in _draw(RepeatFactorTrainingSampler(factors, seed=1), n)) / n
    expected = float(factors[90:].sum() / factors.sum())
    assert plain == pytest.approx(5 / 95, abs=0.01)
    assert repeated == pytest.approx(expected, abs=0.015) and repeated > 2 * plain


def test_class_balanced_sampler_draws_classes_equally_often():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    sampler = ClassBalancedSampler(labels, seed=3)
    assert sampler.class_counts.tolist() == [90, 9, 1]
    drawn = Counter(labels[i] for i in _draw(sampler, 30000))
    for c in range(3):
        assert drawn[c] / 30000 == pytest.approx(1 / 3, abs=0.02), drawn
    indices = Counter(i for i in _draw(ClassBalancedSampler(labels, seed=3), 30000) if labels[i] == 0)
    assert len(indices) > 80  # within a class, images are drawn uniformly (with replacement)


def test_class_balanced_sampler_is_deterministic_per_seed():
    labels = [0, 0, 0, 1, 1, 2] * 5
    first = _draw(ClassBalancedSampler(labels, seed=7), 200)
    assert first == _draw(ClassBalancedSampler(labels, seed=7), 200)
    assert first != _draw(ClassBalancedSampler(labels, seed=8), 200)


def test_class_balanced_sampler_shards_one_stream_across_ranks(monkeypatch):
    labels = [0] * 7 + [1] * 3
    stream = _draw(ClassBalancedSampler(labels, seed=11), 300)
    shards = []
    for rank in range(3):
        monkeypatch.setattr(comm, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(comm, "get_world_size", lambda: 3)
        shards.append(_draw(ClassBalancedSampler(labels, seed=11), 100))
    for rank, shard in enumerate(shards):
        assert shard == stream[rank::3]  # rank r takes positions r, r + 3, ...: disjoint, and together the stream


def test_class_balanced_sampler_rejects_bad_labels():
    with pytest.raises(ValueError, match="empty"):
        ClassBalancedSampler([])
    with pytest.raises(ValueError, match=r"labels\[1\] = -1"):
        ClassBalancedSampler([0, -1])
    with pytest.raises(ValueError, match=r"labels\[0\] = 0.5"):
        ClassBalancedSampler([0.5, 1])


# --- detection: detectron2's box-level repeat factors through DATALOADER.SAMPLER_TRAIN --------------

@pytest.fixture(scope="module")
def reflacx_root(tmp_path_factory):
    from cxr_det.synthetic import make_reflacx

    root = tmp_path_factory.mktemp("reflacx_rfs")
    make_reflacx(root, 40, seed=1, size=64)
    return root


def test_detectron2_repeat_factors_oversample_rare_reflacx_classes(reflacx_root, catalog_names):
    from cxr_det.data.datasets.reflacx import register_reflacx

    name = "test_rfs_reflacx_all"
    register_reflacx(name, reflacx_root, "all")
    catalog_names.append(name)
    cfg = get_cxr_cfg(None, ["DATASETS.TRAIN", f"('{name}',)", "DATALOADER.NUM_WORKERS", "0",
                             "DATALOADER.ASPECT_RATIO_GROUPING", "False", "SOLVER.IMS_PER_BATCH", "8"])
    dicts = get_detection_dataset_dicts([name], filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    classes_of = [{a["category_id"] for a in d["annotations"]} for d in dicts]
    images_per_class = Counter(c for cs in classes_of for c in cs)
    rare = min(images_per_class, key=images_per_class.get)
    assert images_per_class[rare] < max(images_per_class.values()) / 2  # the data is imbalanced

    t = 0.5
    class_rep = {c: max(1.0, math.sqrt(t / (k / len(dicts)))) for c, k in images_per_class.items()}
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(dicts, t)
    assert factors.tolist() == pytest.approx([max(class_rep[c] for c in cs) for cs in classes_of])
    assert class_rep[rare] > 1 and all(f > 1 for f, cs in zip(factors.tolist(), classes_of) if rare in cs)

    def rare_share(sampler_name):
        cfg.DATALOADER.SAMPLER_TRAIN = sampler_name
        cfg.DATALOADER.REPEAT_THRESHOLD = t
        seed_all_rng(0)  # detectron2's samplers take their seed from the global RNG
        has_rare = lambda d: rare in {a["category_id"] for a in d["annotations"]}  # noqa: E731
        loader = build_detection_train_loader(cfg, mapper=has_rare)
        drawn = [x for batch in itertools.islice(loader, 1000) for x in batch]
        return sum(drawn) / len(drawn)

    plain, repeated = rare_share("TrainingSampler"), rare_share("RepeatFactorTrainingSampler")
    expected = sum(f for f, cs in zip(factors.tolist(), classes_of) if rare in cs) / float(factors.sum())
    assert plain == pytest.approx(images_per_class[rare] / len(dicts), abs=0.015)
    assert repeated == pytest.approx(expected, abs=0.015) and repeated > plain + 0.03


# --- the classification loaders ----------------------------------------------------------------------

@pytest.fixture
def tiny_classification(tmp_path, catalog_names):
    """Two registered datasets over 6 tiny PNGs: multi-label (2 labels) and single-label (3 classes)."""
    files = []
    for i in range(6):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), np.full((24, 20), 40 * i, np.uint8))
        files.append(str(path))
    multi = [{"file_name": f, "image_id": i, "labels": [float(i == 5), 1.0], "label_weights": [1.0, 1.0]}
             for i, f in enumerate(files)]
    single = [{"file_name": f, "image_id": i, "label": [0, 0, 0, 0, 1, 2][i]} for i, f in enumerate(files)]
    for name, dicts, classes, task in [("test_cls_multi", multi, ["Edema", "Support Devices"], "multi_label"),
                                       ("test_cls_single", single, ["Normal", "COVID", "Pneumonia"], "single_label")]:
        DatasetCatalog.register(name, lambda dicts=dicts: [dict(d) for d in dicts])
        MetadataCatalog.get(name).set(thing_classes=classes, evaluator_type="cxr_classification", task=task)
        catalog_names.append(name)
    return files


def _loader_cfg(train, sampler, *opts):
    return get_cxr_cfg(None, ["DATASETS.TRAIN", f"('{train}',)", "DATALOADER.SAMPLER_TRAIN", sampler,
                              "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2",
                              "CXR.CLASSIFIER.INPUT_SIZE", "16", "INPUT.RANDOM_FLIP", "none", *opts])


@pytest.mark.parametrize("train, sampler", [
    ("test_cls_multi", "TrainingSampler"),
    ("test_cls_multi", "RepeatFactorTrainingSampler"),
    ("test_cls_single", "RepeatFactorTrainingSampler"),
    ("test_cls_single", "ClassBalancedSampler"),
])
def test_train_loader_yields_batches_with_the_chosen_sampler(tiny_classification, train, sampler):
    cfg = _loader_cfg(train, sampler, "DATALOADER.REPEAT_THRESHOLD", "0.5")
    batch = next(iter(build_classification_train_loader(cfg)))
    assert len(batch) == 2
    for x in batch:
        assert x["image"].dtype == torch.uint8 and tuple(x["image"].shape) == (3, 16, 16)
        if train == "test_cls_multi":
            assert x["labels"].shape == (2,) and x["label_weights"].dtype == np.float32
        else:
            assert x["label"].dtype == np.int64 and x["label"].shape == ()


def test_sampler_choice_and_epoch_size_are_logged(tiny_classification, caplog):
    dicts = DatasetCatalog.get("test_cls_multi")
    with caplog.at_level(logging.INFO, logger="cxr_det.data.classification_loader"):
        cfg = _loader_cfg("test_cls_multi", "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", "0.5")
        sampler = build_classification_train_sampler(cfg, dicts, seed=0)
    assert isinstance(sampler, RepeatFactorTrainingSampler)
    # "Edema" is positive on 1 of 6 images: r = sqrt(0.5 * 6) = 1.732; the epoch holds 5 + 1.732 images.
    assert "Using training sampler RepeatFactorTrainingSampler" in caplog.text
    assert "'Edema': 1.732" in caplog.text and "effective epoch size 6.7 images" in caplog.text


def test_train_sampler_errors_are_clear(tiny_classification):
    multi = DatasetCatalog.get("test_cls_multi")
    with pytest.raises(ValueError, match=r"ClassBalancedSampler needs single-label.*image 0.*multi-label"):
        build_classification_train_sampler(_loader_cfg("test_cls_multi", "ClassBalancedSampler"), multi)
    for name in ("RandomSubsetTrainingSampler", "NoSuchSampler"):
        with pytest.raises(ValueError, match=rf"SAMPLER_TRAIN '{name}'.*ClassBalancedSampler"):
            build_classification_train_sampler(_loader_cfg("test_cls_multi", name), multi)
    with pytest.raises(ValueError, match="DATASETS.TRAIN is empty"):
        build_classification_train_loader(_loader_cfg("test_cls_multi", "TrainingSampler", "DATASETS.TRAIN", "()"))


def test_test_loader_yields_every_image_once_in_order(tiny_classification):
    cfg = _loader_cfg("test_cls_single", "TrainingSampler")
    batches = list(build_classification_test_loader(cfg, "test_cls_single"))
    assert [len(b) for b in batches] == [1] * 6
    assert [b[0]["image_id"] for b in batches] == list(range(6))
    assert [int(b[0]["label"]) for b in batches] == [0, 0, 0, 0, 1, 2]
    assert all(tuple(b[0]["image"].shape) == (3, 16, 16) for b in batches)
