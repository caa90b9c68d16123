"""Single-image inference with the test-time preprocessing and, when enabled, clinical inputs:
:class:`CXRPredictor` for detectors, :class:`ClassificationPredictor` for image classifiers."""
import torch

from detectron2.data import transforms as T
from detectron2.modeling import build_model

from cxr_det.data.classification_mapper import ClassificationDatasetMapper
from cxr_det.data.clinical.pipeline import clinical_tensors, load_featurizer
from cxr_det.engine.checkpoint import CXRCheckpointer


def _trained_model(cfg, who: str):
    """The model ``cfg`` builds, in eval mode, with ``MODEL.WEIGHTS`` loaded strictly."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError(f"{who}: MODEL.WEIGHTS is empty; prediction needs trained weights")
    model = build_model(cfg)
    model.eval()
    CXRCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model


class CXRPredictor:
    """detectron2's ``DefaultPredictor`` pattern, with strict weights and the clinical record.

    Build it from :func:`cxr_det.engine.run_config.inference_config`. ``predictor(image,
    clinical=None)``: ``image`` HxWxC uint8 in ``cfg.INPUT.FORMAT``; ``clinical`` a raw record
    (dict of values, missing ones allowed) or None. Returns the model's output dict for the
    image; boxes in the pixel coordinates of ``image``.

    Raises:
        ValueError: ``MODEL.WEIGHTS`` is empty (a random model is never used for prediction).
        CheckpointMismatchError: the checkpoint does not fit the model the config builds.
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = _trained_model(self.cfg, "CXRPredictor")
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT
        self.clinical_featurizer = load_featurizer(cfg) if cfg.CXR.CLINICAL.ENABLED else None

    def __call__(self, original_image, clinical=None):
        with torch.no_grad():
            height, width = original_image.shape[:2]
            image = self.aug.get_transform(original_image).apply_image(original_image)
            inputs = {"image": torch.as_tensor(image.astype("float32").transpose(2, 0, 1)), "height": height, "width": width}
            if self.clinical_featurizer is not None:
                inputs["clinical"] = clinical_tensors(self.clinical_featurizer, clinical)
            return self.model([inputs])[0]


class ClassificationPredictor:
    """An image classifier's predictions on files, preprocessed exactly as in evaluation.

    Inputs are made by :class:`~cxr_det.data.classification_mapper.ClassificationDatasetMapper`
    in test mode (the mapper of the evaluation loader: the same reading options, resize,
    format and clinical tensors), so a file's probabilities equal those of its evaluation.

    - ``predictor.inputs(file_name, clinical=None)``: the model input dict of an image file
      (PNG, JPEG or DICOM) and its raw clinical record (None: every feature imputed);
    - ``predictor(inputs)``: the model's output for it, ``{"scores": (C,) probabilities,
      "logits": (C,)}`` on the CPU.

    Attributes: ``model`` (eval mode), ``mapper``, ``clinical_featurizer`` (None for an
    image-only model), ``task`` (the model's, ``"multi_label"`` or ``"single_label"``).

    Raises:
        ValueError: ``MODEL.WEIGHTS`` is empty.
        CheckpointMismatchError: the checkpoint does not fit the model the config builds.
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        self.model = _trained_model(self.cfg, "ClassificationPredictor")
        self.mapper = ClassificationDatasetMapper(self.cfg, is_train=False)
        self.clinical_featurizer = self.mapper.clinical_featurizer
        self.task = self.model.task

    def inputs(self, file_name, clinical=None) -> dict:
        """The mapper's dict for ``file_name`` (``image``, and ``clinical`` tensors when the
        model uses clinical data). Raises the image readers' errors for unreadable files."""
        return self.mapper({"file_name": str(file_name), "image_id": str(file_name), "clinical": clinical})

    def __call__(self, inputs: dict) -> dict:
        with torch.no_grad():
            output = self.model([inputs])[0]
        return {key: value.to("cpu") if isinstance(value, torch.Tensor) else value for key, value in output.items()}
