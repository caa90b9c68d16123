"""The trainer's evaluator follows the dataset metadata's ``evaluator_type``."""
import pytest

import cxr_det  # noqa: F401
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from cxr_det.config import get_cxr_cfg
from cxr_det.engine import Trainer
from cxr_det.engine.evaluators import EVALUATOR_TYPES, register_evaluator_type
from cxr_det.evaluation import CXRDetectionEvaluator


@pytest.fixture
def dataset():
    """A registered dataset name whose metadata the test sets; removed afterwards."""
    name = "_test_evaluator_type"
    DatasetCatalog.register(name, lambda: [])
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


@pytest.mark.parametrize("kind", ["cxr_detection", "coco", None])
def test_detection_types_get_the_chest_xray_evaluator(dataset, kind, tmp_path):
    meta = {"thing_classes": ["a", "b"]}
    if kind is not None:
        meta["evaluator_type"] = kind
    MetadataCatalog.get(dataset).set(**meta)
    cfg = get_cxr_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = Trainer.build_evaluator(cfg, dataset)
    assert type(evaluator) is CXRDetectionEvaluator


def test_unknown_type_names_dataset_type_and_known_ones(dataset, tmp_path):
    MetadataCatalog.get(dataset).set(thing_classes=["a"], evaluator_type="lvis")
    cfg = get_cxr_cfg()
    with pytest.raises(ValueError, match=r"'_test_evaluator_type'.*'lvis'.*known: coco, cxr_classification, cxr_detection"):
        Trainer.build_evaluator(cfg, dataset, str(tmp_path))


def test_a_new_type_is_one_entry(dataset, tmp_path):
    class Classification(DatasetEvaluator):
        def __init__(self, name, output_folder):
            self.name, self.output_folder = name, output_folder

    def factory(cfg, name, output_folder):
        return Classification(name, output_folder)

    register_evaluator_type("cxr_classification_test", factory)
    try:
        MetadataCatalog.get(dataset).set(evaluator_type="cxr_classification_test")
        evaluator = Trainer.build_evaluator(get_cxr_cfg(), dataset, str(tmp_path))
        assert isinstance(evaluator, Classification) and evaluator.output_folder == str(tmp_path)
        register_evaluator_type("cxr_classification_test", factory)  # the same factory again: fine
        with pytest.raises(ValueError, match="already registered"):
            register_evaluator_type("cxr_classification_test", lambda *a: None)
    finally:
        EVALUATOR_TYPES.pop("cxr_classification_test", None)
