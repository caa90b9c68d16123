"""Which evaluator a dataset gets: by the ``evaluator_type`` in its metadata.

detectron2's registrars record ``evaluator_type`` in ``MetadataCatalog`` ("coco",
"lvis", ...) and its ``train_net.py`` examples dispatch on it; so does
:meth:`cxr_det.engine.trainer.Trainer.build_evaluator`, through :data:`EVALUATOR_TYPES`.
Image-level classification datasets say ``evaluator_type="cxr_classification"``
(:class:`~cxr_det.evaluation.classification.ClassificationEvaluator`). A new kind of dataset
adds one entry with :func:`register_evaluator_type`.
"""
import os
from typing import Callable, Dict

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from cxr_det.evaluation import ClassificationEvaluator, CXRDetectionEvaluator

__all__ = [
    "DEFAULT_EVALUATOR_TYPE",
    "EVALUATOR_TYPES",
    "register_evaluator_type",
    "evaluator_type_of",
    "build_evaluator",
]

DEFAULT_EVALUATOR_TYPE = "cxr_detection"


def _cxr_detection(cfg, dataset_name: str, output_folder: str) -> DatasetEvaluator:
    return CXRDetectionEvaluator(dataset_name, cfg=cfg, output_dir=output_folder)


def _cxr_classification(cfg, dataset_name: str, output_folder: str) -> DatasetEvaluator:
    return ClassificationEvaluator(dataset_name, cfg=cfg, output_dir=output_folder)


# evaluator_type -> factory(cfg, dataset_name, output_folder). "coco" is what the registrars
# wrote before "cxr_detection" (and what detectron2's register_coco_instances writes): the
# chest X-ray evaluator computes COCO's metrics among its protocols, so it serves both.
# "cxr_classification": the image-level label datasets (CheXpert, MIMIC-CXR-JPG labels, VinDr
# image labels, folders of classes).
EVALUATOR_TYPES: Dict[str, Callable[..., DatasetEvaluator]] = {
    "cxr_detection": _cxr_detection,
    "coco": _cxr_detection,
    "cxr_classification": _cxr_classification,
}


def register_evaluator_type(name: str, factory: Callable[..., DatasetEvaluator]):
    """Make datasets whose metadata says ``evaluator_type=name`` evaluated by
    ``factory(cfg, dataset_name, output_folder)``.

    Raises:
        ValueError: ``name`` is already taken by another factory.
    """
    if EVALUATOR_TYPES.get(name, factory) is not factory:
        raise ValueError(f"evaluator_type {name!r} is already registered ({EVALUATOR_TYPES[name]})")
    EVALUATOR_TYPES[name] = factory


def evaluator_type_of(dataset_name: str) -> str:
    """The ``evaluator_type`` in ``dataset_name``'s metadata; :data:`DEFAULT_EVALUATOR_TYPE`
    when the metadata has none (datasets registered by hand, as in the tests).

    Raises:
        ValueError: the type is not in :data:`EVALUATOR_TYPES` (naming the dataset, the type
            and the known types).
    """
    kind = MetadataCatalog.get(dataset_name).get("evaluator_type", None) or DEFAULT_EVALUATOR_TYPE
    if kind not in EVALUATOR_TYPES:
        raise ValueError(
            f"dataset {dataset_name!r} has evaluator_type {kind!r} in its metadata; no evaluator is registered for "
            f"it (known: {', '.join(sorted(EVALUATOR_TYPES))}; cxr_det.engine.evaluators.register_evaluator_type adds one)"
        )
    return kind


def build_evaluator(cfg, dataset_name: str, output_folder: str = None) -> DatasetEvaluator:
    """The evaluator of ``dataset_name`` by its metadata's ``evaluator_type``
    (:func:`evaluator_type_of`), writing into ``output_folder`` (default
    ``OUTPUT_DIR/inference/<dataset_name>``).

    Raises:
        ValueError: an unknown ``evaluator_type``.
    """
    if output_folder is None:
        output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    return EVALUATOR_TYPES[evaluator_type_of(dataset_name)](cfg, dataset_name, output_folder)
