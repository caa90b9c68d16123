"""Single-image inference with the test-time resize and, when enabled, clinical inputs."""
import torch

from detectron2.data import transforms as T
from detectron2.modeling import build_model

from cxr_det.data.clinical.pipeline import clinical_tensors, load_featurizer
from cxr_det.engine.checkpoint import CXRCheckpointer


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
        if not cfg.MODEL.WEIGHTS:
            raise ValueError("CXRPredictor: MODEL.WEIGHTS is empty; prediction needs trained weights")
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        CXRCheckpointer(self.model).load(cfg.MODEL.WEIGHTS)
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
