"""The classification mapper reads PNG/JPEG/DICOM into square uint8 tensors with its targets."""
import copy

import cv2
import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.data import transforms as T

from cxr_det.config import get_cxr_cfg
from cxr_det.data.classification_mapper import ClassificationDatasetMapper, build_classification_augmentation

HEIGHT, WIDTH = 40, 60


def _pixels():
    """Bright left half (200), dark right half (30): tells a flip from the original."""
    image = np.full((HEIGHT, WIDTH), 30, np.uint8)
    image[:, : WIDTH // 2] = 200
    return image


def _write(tmp_path, suffix):
    path = tmp_path / f"xray{suffix}"
    if suffix == ".dcm":
        from cxr_det.synthetic.dicom_writer import write_dicom

        write_dicom(path, _pixels().astype(np.uint16) * 16, photometric="MONOCHROME2", bits_stored=12)
    else:
        cv2.imwrite(str(path), _pixels(), [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix == ".jpg" else [])
    return path


def _cfg(*opts):
    return get_cxr_cfg(None, ["CXR.CLASSIFIER.INPUT_SIZE", "32", "INPUT.RANDOM_FLIP", "none", *opts])


def _left_brighter(image):
    """Mean of the left half minus the right half of channel 0."""
    image = image[0].float()
    half = image.shape[1] // 2
    return float(image[:, :half].mean() - image[:, half:].mean())


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".dcm"])
@pytest.mark.parametrize("image_format, channels", [("BGR", 3), ("RGB", 3), ("L", 1)])
def test_reads_each_file_type_into_a_square_uint8_tensor(tmp_path, suffix, image_format, channels):
    record = {"file_name": str(_write(tmp_path, suffix)), "image_id": 3, "study_id": 11}
    mapper = ClassificationDatasetMapper(_cfg("INPUT.FORMAT", image_format), is_train=False)
    out = mapper(record)
    image = out["image"]
    assert image.dtype == torch.uint8 and tuple(image.shape) == (channels, 32, 32)
    assert _left_brighter(image) > 100  # not flipped, contrast kept
    assert all(torch.equal(image[0], image[c]) for c in range(channels))
    assert (out["height"], out["width"]) == (HEIGHT, WIDTH)  # the file's own size, for evaluation
    assert out["study_id"] == 11 and out["image_id"] == 3
    assert not {"labels", "label_weights", "label"} & set(out)  # unlabelled: no targets


def test_multi_label_targets_become_float_tensors_and_the_input_is_untouched(tmp_path):
    record = {
        "file_name": str(_write(tmp_path, ".png")),
        "image_id": "p1/s1/view1",
        "labels": [1.0, 0.0, 1.0],
        "label_weights": [1.0, 0.0, 1.0],
        "clinical": {"age": 63.0, "sex": "Male"},
    }
    before = copy.deepcopy(record)
    out = ClassificationDatasetMapper(_cfg(), is_train=True)(record)
    assert out["labels"].dtype == np.float32 and out["labels"].tolist() == [1.0, 0.0, 1.0]
    assert out["label_weights"].dtype == np.float32 and out["label_weights"].tolist() == [1.0, 0.0, 1.0]
    assert out["clinical"] == {"age": 63.0, "sex": "Male"}  # clinical off: the raw record passes through
    assert record == before and "image" not in record


def test_labels_without_weights_get_weight_one(tmp_path):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": 1, "labels": [0, 1]}
    out = ClassificationDatasetMapper(_cfg(), is_train=False)(record)
    assert out["label_weights"].tolist() == [1.0, 1.0]


def test_single_label_target_is_an_int64_scalar(tmp_path):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": 1, "label": 2, "class_name": "Pneumonia"}
    out = ClassificationDatasetMapper(_cfg(), is_train=True)(record)
    assert out["label"].dtype == np.int64 and out["label"].shape == () and int(out["label"]) == 2
    assert out["class_name"] == "Pneumonia"


def test_none_targets_are_dropped(tmp_path):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": 1, "label": None, "labels": None}
    out = ClassificationDatasetMapper(_cfg(), is_train=False)(record)
    assert not {"labels", "label_weights", "label"} & set(out)


@pytest.mark.parametrize(
    "targets, match",
    [
        ({"labels": [1.0, 0.0, 1.0], "label_weights": [1.0, 1.0]}, r"image_id 'img-7'.*3 values.*label_weights"),
        ({"labels": [[1.0], [0.0]]}, r"image_id 'img-7'.*'labels'.*flat"),
        ({"labels": ["yes", "no"]}, r"image_id 'img-7'.*'labels'.*numbers"),
        ({"label_weights": [1.0]}, r"image_id 'img-7'.*'label_weights' without 'labels'"),
        ({"label": -1}, r"image_id 'img-7'.*class index"),
        ({"label": 1.5}, r"image_id 'img-7'.*class index"),
    ],
)
def test_malformed_targets_name_the_image(tmp_path, targets, match):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": "img-7", **targets}
    with pytest.raises(ValueError, match=match):
        ClassificationDatasetMapper(_cfg(), is_train=True)(record)


def test_missing_image_names_the_file(tmp_path):
    record = {"file_name": str(tmp_path / "gone.png"), "image_id": 1, "label": 0}
    with pytest.raises(FileNotFoundError, match="gone.png"):
        ClassificationDatasetMapper(_cfg(), is_train=False)(record)


@pytest.mark.parametrize("image_format, channels", [("RGB", 3), ("L", 1)])
def test_training_applies_albumentations_to_the_image(tmp_path, image_format, channels):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": 1, "label": 0}
    flip = [{"name": "HorizontalFlip", "p": 1.0}, {"name": "RandomBrightnessContrast", "p": 1.0}]
    cfg = _cfg("INPUT.FORMAT", image_format)
    cfg.CXR.INPUT.ALBUMENTATIONS = flip
    trained = ClassificationDatasetMapper(cfg, is_train=True)(record)["image"]
    assert tuple(trained.shape) == (channels, 32, 32)
    assert _left_brighter(trained) < -50  # the albumentations flip moved the bright half
    tested = ClassificationDatasetMapper(cfg, is_train=False)(record)["image"]
    assert _left_brighter(tested) > 100  # inference applies none


def test_flip_follows_input_random_flip(tmp_path):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": 1}
    mapper = ClassificationDatasetMapper(
        True, augmentations=[T.Resize((32, 32)), T.RandomFlip(prob=1.0)], image_format="BGR"
    )
    assert _left_brighter(mapper(record)["image"]) < -100
    for flip, kinds in [("none", []), ("horizontal", [T.RandomFlip]), ("vertical", [T.RandomFlip])]:
        cfg = _cfg("INPUT.RANDOM_FLIP", flip)
        train = build_classification_augmentation(cfg, True)
        assert [type(a) for a in train] == [T.Resize] + kinds
        assert [type(a) for a in build_classification_augmentation(cfg, False)] == [T.Resize]
    vertical = build_classification_augmentation(_cfg("INPUT.RANDOM_FLIP", "vertical"), True)[1]
    assert vertical.vertical and not vertical.horizontal


def test_input_size_zero_uses_detectron2_shortest_edge_resize(tmp_path):
    record = {"file_name": str(_write(tmp_path, ".png")), "image_id": 1}
    cfg = _cfg("CXR.CLASSIFIER.INPUT_SIZE", "0", "INPUT.MIN_SIZE_TEST", "20", "INPUT.MAX_SIZE_TEST", "100")
    out = ClassificationDatasetMapper(cfg, is_train=False)(record)
    assert tuple(out["image"].shape) == (3, 20, 30)
    with pytest.raises(ValueError, match="INPUT_SIZE"):
        build_classification_augmentation(_cfg("CXR.CLASSIFIER.INPUT_SIZE", "-1"), True)


def test_clinical_records_become_the_featurizer_tensors(tmp_path):
    from cxr_det.data.clinical.features import ClinicalFeaturizer

    featurizer = ClinicalFeaturizer(numeric=["age"], categorical=["sex"])
    featurizer.fit([{"age": 40.0, "sex": "Male"}, {"age": 80.0, "sex": "Female"}])
    stats = tmp_path / "clinical_stats.json"
    featurizer.save(stats)
    cfg = _cfg("CXR.CLINICAL.ENABLED", "True", "CXR.CLINICAL.STATS_FILE", str(stats),
               "CXR.CLINICAL.NUMERIC", "['age']", "CXR.CLINICAL.CATEGORICAL", "['sex']")
    mapper = ClassificationDatasetMapper(cfg, is_train=False)
    path = str(_write(tmp_path, ".png"))
    seen = mapper({"file_name": path, "image_id": 1, "clinical": {"age": 80.0, "sex": "Female"}})["clinical"]
    assert seen["numeric"].dtype == np.float32 and seen["numeric"].shape == (1,)
    assert seen["missing"].tolist() == [0.0] and seen["numeric"].item() > 0.5  # 80 is above the mean of 60
    assert seen["categorical"].dtype == np.int64 and seen["categorical"].tolist() == [1]  # "Female" sorts first
    absent = mapper({"file_name": path, "image_id": 2})["clinical"]
    assert absent["missing"].tolist() == [1.0] and absent["numeric"].tolist() == [0.0]
    assert absent["categorical"].tolist() == [0]
