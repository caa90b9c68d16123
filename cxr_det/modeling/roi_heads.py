"""RoI fusion (MDF-Net "1D" fusion): the box predictor also sees each RoI's clinical vector."""
from contextlib import contextmanager
from typing import Optional

import torch

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers

from cxr_det.modeling.fusion import clinical_vector_dim

__all__ = ["ClinicalStandardROIHeads"]


@ROI_HEADS_REGISTRY.register()
class ClinicalStandardROIHeads(StandardROIHeads):
    """:class:`StandardROIHeads` whose box predictor input is [box-head features, clinical vector].

    The clinical vector of each image (``CXR.FUSION.HIDDEN_DIMS[-1]`` elements) is repeated
    for every RoI of that image and concatenated to the flattened box-head output, so the
    :class:`FastRCNNOutputLayers` input grows by that size. Mask and keypoint heads are
    unchanged.

    The per-image vectors are set for one call with :meth:`clinical_vectors` (as
    :class:`~cxr_det.modeling.meta_arch.ClinicalGeneralizedRCNN` does around each forward):
    the heads' ``forward(images, features, proposals, targets)`` keeps detectron2's signature,
    and the vectors follow the proposals through sampling since they are indexed by image.
    """

    @configurable
    def __init__(self, *, clinical_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.clinical_dim = clinical_dim
        self._clinical: Optional[torch.Tensor] = None

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["clinical_dim"] = clinical_vector_dim(cfg)
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        shape = ret["box_head"].output_shape
        box_dim = shape.channels * (shape.height or 1) * (shape.width or 1)
        ret["box_predictor"] = FastRCNNOutputLayers(
            cfg, ShapeSpec(channels=box_dim + clinical_vector_dim(cfg))
        )
        return ret

    @contextmanager
    def clinical_vectors(self, vectors: torch.Tensor):
        """Use ``vectors`` (N images, clinical_dim) for the calls made inside this context."""
        if vectors.dim() != 2 or vectors.shape[1] != self.clinical_dim:
            raise ValueError(f"expected clinical vectors of shape (N, {self.clinical_dim}), got {tuple(vectors.shape)}")
        self._clinical = vectors
        try:
            yield
        finally:
            self._clinical = None

    def _forward_box(self, features, proposals):
        """Stock box branch; the box head's output gets the RoIs' clinical vectors appended."""
        if self._clinical is None:
            raise RuntimeError(
                "ClinicalStandardROIHeads needs the images' clinical vectors: run it inside "
                "`with roi_heads.clinical_vectors(vectors):` (ClinicalGeneralizedRCNN does)"
            )
        if len(proposals) != len(self._clinical):
            raise ValueError(f"{len(proposals)} images of proposals but {len(self._clinical)} clinical vectors")
        counts = torch.as_tensor([len(p) for p in proposals], device=self._clinical.device)
        per_roi = self._clinical.repeat_interleave(counts, dim=0)

        def append_clinical(module, inputs, box_features):
            return torch.cat([box_features.flatten(1), per_roi.to(box_features.dtype)], dim=1)

        handle = self.box_head.register_forward_hook(append_clinical)
        try:
            return super()._forward_box(features, proposals)
        finally:
            handle.remove()
