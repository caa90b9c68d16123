"""The speed-ups that tools/benchmark.py led to give the same bytes as the code they replaced:
DICOM display through a lookup table of stored values, and the mapper augmenting the gray
channel before repeating it."""
import itertools

import cv2
import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset

import cxr_det  # noqa: F401
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from cxr_det.data import dicom
from cxr_det.data.albumentations import build_albumentations
from cxr_det.data.image_io import read_image
from cxr_det.data.mapper import CXRDatasetMapper
from cxr_det.synthetic.dicom_writer import write_dicom


def _both(path, monkeypatch, expect_table=True, **options):
    """read_dicom's result and notes by the lookup table and by the per-pixel pipeline."""
    calls = []
    original = dicom._display_pixels
    monkeypatch.setattr(dicom, "_display_pixels", lambda *a, **k: calls.append(1) or original(*a, **k))
    notes_table = []
    table = dicom.read_dicom(path, notes=notes_table, **options)
    assert bool(calls) != expect_table, "the lookup table was not used" if expect_table else "it was used"
    monkeypatch.setattr(dicom, "DISPLAY_LUT_MAX_ENTRIES", 0)
    notes_pixels = []
    pixels = dicom.read_dicom(path, notes=notes_pixels, **options)
    monkeypatch.undo()
    return table, pixels, notes_table, notes_pixels


@pytest.mark.parametrize(
    "bits, photometric, rescale, window",
    list(itertools.product(
        [8, 12, 16], ["MONOCHROME1", "MONOCHROME2"], [None, (1.0, -1024.0), (2.5, 3.0), (-1.5, 100.0)],
        [None, (1500.0, 900.0, "LINEAR"), (1500.0, 900.0, "LINEAR_EXACT"), (1500.0, 900.0, "SIGMOID"),
         (40.0, 0.5, "LINEAR")],  # the last: width < 1, an invalid window
    )),
)
def test_lookup_table_gives_the_per_pixel_bytes(tmp_path, monkeypatch, bits, photometric, rescale, window):
    rng = np.random.default_rng(bits)
    top = (1 << bits) - 1
    pixels = rng.integers(int(0.1 * top), int(0.8 * top) + 1, size=(23, 31)).astype(np.uint16)
    tags = {"VOILUTFunction": window[2]} if window else {}
    path = write_dicom(tmp_path / "x.dcm", pixels, bits_stored=bits, photometric=photometric, rescale=rescale,
                       window=window[:2] if window else None, **tags)
    for scaling in ("auto", "minmax"):
        table, per_pixel, notes_table, notes_pixels = _both(path, monkeypatch, scaling=scaling)
        assert table.dtype == np.uint8 and np.array_equal(table, per_pixel), scaling
        assert [n.kind for n in notes_table] == [n.kind for n in notes_pixels]
    # percentiles depend on every value: computed per pixel, as before
    table, per_pixel, _, _ = _both(path, monkeypatch, expect_table=False, scaling="percentile")
    assert np.array_equal(table, per_pixel)


def test_lookup_table_voi_lut_signed_pixels_and_modality_lut(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(30, 20)).astype(np.uint16)
    ramp = list(np.linspace(0, 255, 3000).astype(int))
    path = write_dicom(tmp_path / "voi.dcm", pixels, bits_stored=12, voi_lut=(100, 8, ramp))
    table, per_pixel, _, _ = _both(path, monkeypatch)
    assert np.array_equal(table, per_pixel)

    ds = pydicom.dcmread(str(path))
    del ds.VOILUTSequence
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
    ds.PixelData = rng.integers(-2000, 2000, size=(ds.Rows, ds.Columns)).astype(np.int16).tobytes()
    ds.save_as(str(tmp_path / "signed.dcm"))
    for scaling in ("auto", "minmax"):
        table, per_pixel, _, _ = _both(tmp_path / "signed.dcm", monkeypatch, scaling=scaling)
        assert np.array_equal(table, per_pixel)

    # a non-monotonic Modality LUT, no VOI: the display range comes from the values present
    ds = pydicom.dcmread(str(path))
    del ds.VOILUTSequence
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])
    item.add_new(0x00283006, "US", [int(v) for v in np.sin(np.arange(4096) / 300) * 1000 + 2000])
    ds.ModalityLUTSequence = [item]
    ds.save_as(str(tmp_path / "modality_lut.dcm"))
    table, per_pixel, _, _ = _both(tmp_path / "modality_lut.dcm", monkeypatch)
    assert np.array_equal(table, per_pixel) and table.min() == 0 and table.max() == 255


BOX = [40.0, 30.0, 120.0, 90.0]


def _record(tmp_path):
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(120, 40, (171, 213)), 0, 255).astype(np.uint8)
    path = tmp_path / "xray.png"
    cv2.imwrite(str(path), image)
    anno = {"bbox": list(BOX), "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 0}
    return {"file_name": str(path), "height": 171, "width": 213, "image_id": 3, "annotations": [anno]}


def _reference(record, augmentations, image_format, albumentations=None, seed=0):
    """The old mapping of the image: three channels read, then augmented."""
    from cxr_det.data.albumentations import apply_albumentations

    image = read_image(record["file_name"], image_format)
    np.random.seed(seed)
    if albumentations is not None:
        annos = [dict(a) for a in record["annotations"]]
        image, _ = apply_albumentations(albumentations, image, annos)
    aug_input = T.AugInput(image)
    T.AugmentationList(augmentations)(aug_input)
    return torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))


@pytest.mark.parametrize("image_format", ["BGR", "RGB", "L"])
@pytest.mark.parametrize("is_train", [True, False])
def test_mapper_gray_augmentation_gives_the_three_channel_tensor(tmp_path, image_format, is_train):
    record = _record(tmp_path)
    for seed in range(4):
        augmentations = [T.ResizeShortestEdge((97, 150, 233), 300, "choice"), T.RandomFlip(0.5),
                         T.RandomCrop("relative_range", (0.7, 0.9))]
        mapper = CXRDatasetMapper(is_train, augmentations=augmentations, image_format=image_format)
        assert mapper._gray_augmentation
        np.random.seed(seed)
        out = mapper(record)
        expected = _reference(record, augmentations, image_format, seed=seed)
        assert out["image"].dtype == torch.uint8 and out["image"].is_contiguous()
        assert torch.equal(out["image"], expected)


def test_mapper_keeps_three_channels_for_albumentations_and_other_augmentations(tmp_path):
    record = _record(tmp_path)
    albumentations = build_albumentations([{"name": "RandomBrightnessContrast", "brightness_limit": [0.2, 0.2],
                                            "contrast_limit": [0.1, 0.1], "p": 1.0}])  # deterministic
    augmentations = [T.ResizeShortestEdge(120, 400)]
    mapper = CXRDatasetMapper(True, augmentations=augmentations, image_format="BGR", albumentations=albumentations)
    np.random.seed(1)
    out = mapper(record)
    assert torch.equal(out["image"], _reference(record, augmentations, "BGR", albumentations, seed=1))

    photometric = [T.ResizeShortestEdge(120, 400), T.RandomBrightness(0.5, 1.5)]
    mapper = CXRDatasetMapper(True, augmentations=photometric, image_format="BGR")
    assert not mapper._gray_augmentation
    np.random.seed(2)
    out = mapper(record)
    assert torch.equal(out["image"], _reference(record, photometric, "BGR", seed=2))
