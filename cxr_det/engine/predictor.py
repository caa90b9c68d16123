"""Single-image inference with the test-time resize and, when enabled, clinical inputs."""
import torch

from detectron2.engine import DefaultPredictor

from cxr_det.data.clinical.pipeline import clinical_tensors, load_featurizer


class CXRPredictor(DefaultPredictor):
    """detectron2's DefaultPredictor that also feeds the patient's clinical record.

    ``predictor(image, clinical=None)``: ``image`` HxWxC uint8 in ``cfg.INPUT.FORMAT``;
    ``clinical`` a raw record (dict of values, missing ones allowed) or None. Boxes come
    back in the pixel coordinates of ``image``.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.clinical_featurizer = load_featurizer(cfg) if cfg.CXR.CLINICAL.ENABLED else None

    def __call__(self, original_image, clinical=None):
        with torch.no_grad():
            height, width = original_image.shape[:2]
            image = self.aug.get_transform(original_image).apply_image(original_image)
            inputs = {"image": torch.as_tensor(image.astype("float32").transpose(2, 0, 1)), "height": height, "width": width}
            if self.clinical_featurizer is not None:
                inputs["clinical"] = clinical_tensors(self.clinical_featurizer, clinical)
            return self.model([inputs])[0]
