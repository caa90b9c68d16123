"""The mapper reads PNG/DICOM and keeps boxes and ellipse masks aligned with the pixels."""
import cv2
import numpy as np
import pytest
import torch

import cxr_det  # noqa: F401
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from cxr_det.data.albumentations import build_albumentations
from cxr_det.data.ellipse import ellipse_polygon
from cxr_det.data.mapper import CXRDatasetMapper

BOX = [40.0, 30.0, 120.0, 90.0]


def _record(tmp_path, suffix=".png"):
    """A 160x200 image, black but for a bright ellipse inscribed in BOX."""
    image = np.zeros((160, 200), np.uint8)
    centre = (int((BOX[0] + BOX[2]) / 2), int((BOX[1] + BOX[3]) / 2))
    axes = (int((BOX[2] - BOX[0]) / 2), int((BOX[3] - BOX[1]) / 2))
    cv2.ellipse(image, centre, axes, 0, 0, 360, 255, -1)
    path = tmp_path / f"xray{suffix}"
    cv2.imwrite(str(path), image)
    anno = {
        "bbox": list(BOX),
        "bbox_mode": BoxMode.XYXY_ABS,
        "category_id": 1,
        "segmentation": [ellipse_polygon(BOX)],
        "iscrowd": 0,
        "readers": ["P300R000001"],
    }
    return {"file_name": str(path), "height": 160, "width": 200, "image_id": 7, "annotations": [anno], "dicom_id": "abc"}


def _mask_of(instances, shape):
    poly = instances.gt_masks.polygons[0][0].reshape(-1, 2)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask


@pytest.mark.parametrize(
    "specs",
    [
        [{"name": "HorizontalFlip", "p": 1.0}],
        [{"name": "Affine", "rotate": [25, 25], "translate_px": {"x": [12, 12], "y": [-8, -8]}, "p": 1.0}],
        [{"name": "VerticalFlip", "p": 1.0}, {"name": "RandomBrightnessContrast", "p": 1.0}],
    ],
)
def test_albumentations_keep_boxes_and_masks_on_the_lesion(tmp_path, specs):
    mapper = CXRDatasetMapper(
        True,
        augmentations=[T.ResizeShortestEdge(120, 400)],
        image_format="BGR",
        albumentations=build_albumentations(specs),
        use_instance_mask=True,
    )
    out = mapper(_record(tmp_path))
    image = out["image"].numpy()
    assert image.shape == (3, 120, 150)
    inst = out["instances"]
    assert len(inst) == 1 and inst.gt_classes.tolist() == [1]
    lesion = (image[0] > 127).astype(np.uint8)
    mask = _mask_of(inst, lesion.shape)
    iou = (lesion & mask).sum() / (lesion | mask).sum()
    assert iou > 0.9, iou
    ys, xs = np.nonzero(lesion)
    box = inst.gt_boxes.tensor[0].numpy()
    # The box is the ellipse's extent (re-derived from the moved polygon), within 2 px.
    assert np.allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=2.0), box
    assert out["dicom_id"] == "abc" and "annotations" not in out


def test_inference_mapper_reads_dicom_and_drops_annotations(tmp_path):
    from cxr_det.synthetic.dicom_writer import write_dicom

    record = _record(tmp_path)
    pixels = cv2.imread(record["file_name"], cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 16
    path = tmp_path / "xray.dicom"
    write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=12)
    record["file_name"] = str(path)
    mapper = CXRDatasetMapper(False, augmentations=[T.ResizeShortestEdge(80, 400)], image_format="L")
    out = mapper(record)
    assert out["image"].shape == (1, 80, 100)
    assert "instances" not in out and "annotations" not in out
    assert out["image"].dtype == torch.uint8 and out["image"].max() > 200


def test_unknown_albumentation_names_the_entry():
    with pytest.raises(ValueError, match=r"ALBUMENTATIONS\[1\].*NotATransform"):
        build_albumentations([{"name": "HorizontalFlip"}, {"name": "NotATransform"}])
    with pytest.raises(ValueError, match=r"ALBUMENTATIONS\[0\] \(HorizontalFlip\)"):
        build_albumentations([{"name": "HorizontalFlip", "bogus": 3}])


def test_missing_image_names_the_file(tmp_path):
    record = _record(tmp_path)
    record["file_name"] = str(tmp_path / "gone.png")
    mapper = CXRDatasetMapper(True, augmentations=[], image_format="BGR")
    with pytest.raises(FileNotFoundError, match="gone.png"):
        mapper(record)


def test_mapper_reads_pixels_by_the_configured_scaling_rule(tmp_path):
    """CXR.INPUT.SCALING reaches the training mapper (and so the run's recorded config)."""
    from cxr_det.config import get_cxr_cfg
    from cxr_det.data.image_io import read_image

    ramp = np.tile(np.linspace(0, 4095, 200).astype(np.uint16), (160, 1))
    path = tmp_path / "ramp16.png"
    cv2.imwrite(str(path), ramp)
    record = {"file_name": str(path), "height": 160, "width": 200, "image_id": 1}
    images = {}
    for rule in ("auto", "percentile"):
        cfg = get_cxr_cfg(None, ["CXR.INPUT.SCALING", rule, "CXR.INPUT.PERCENTILES", "[10.0, 90.0]",
                                 "INPUT.MIN_SIZE_TEST", "160", "INPUT.MAX_SIZE_TEST", "200"])
        mapper = CXRDatasetMapper(cfg, is_train=False)
        images[rule] = mapper(record)["image"][0].numpy()
        expected = read_image(path, cfg.INPUT.FORMAT, scaling=rule, percentiles=(10.0, 90.0))[:, :, 0]
        assert np.array_equal(images[rule], expected)
    # The 10..90 percentile window clips both ends; the full-range rule does not.
    assert (images["percentile"] == 255).mean() > 0.05 and (images["auto"] == 255).mean() < 0.01
