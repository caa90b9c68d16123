"""Every shipped config loads, agrees with its class list, and builds its model."""
from pathlib import Path

import pytest

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401
from detectron2.modeling import build_model

from cxr_det.data import register_from_config
from cxr_det.engine import class_head_key, get_cxr_cfg
from cxr_det.engine.classification_setup import is_classifier
from helpers import model_cfg

CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml") if not p.name.startswith("Base-"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(p.parents[1])) for p in CONFIGS])
def test_config_builds(path):
    cfg = model_cfg(str(path), ["MODEL.WEIGHTS", "", "CXR.MOBILENET.PRETRAINED", "False", "MODEL.DEVICE", "cpu",
                                "CXR.CLASSIFIER.TORCHVISION.WEIGHTS", ""])
    if cfg.CXR.CLINICAL.ENABLED:
        cfg.CXR.CLINICAL.CATEGORICAL_SIZES = [3] * len(cfg.CXR.CLINICAL.CATEGORICAL)
    if is_classifier(cfg):
        # the label set is the registered dataset's (registration reads no file)
        register_from_config(cfg)
        from detectron2.data import MetadataCatalog

        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        model = build_model(cfg)
        assert (model.task, model.class_names) == (meta.task, list(meta.thing_classes))
        return
    dataset = cfg.DATASETS.TRAIN[0].split("_")[0]
    classes = cfg.CXR.REFLACX.CLASSES if dataset == "reflacx" else cfg.CXR.VINDR.CLASSES
    assert cfg.MODEL[class_head_key(cfg)].NUM_CLASSES == len(classes)
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize("arch, key", [("GeneralizedRCNN", "ROI_HEADS"), ("ClinicalGeneralizedRCNN", "ROI_HEADS"),
                                       ("RetinaNet", "RETINANET"), ("ClinicalRetinaNet", "RETINANET")])
def test_class_head_key_follows_the_registered_class(arch, key):
    assert class_head_key(get_cxr_cfg(opts=["MODEL.META_ARCHITECTURE", arch])) == key
