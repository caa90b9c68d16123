"""Detectors that fuse per-image clinical data with the image (MDF-Net), as detectron2 meta-architectures.

:class:`ClinicalGeneralizedRCNN` (Faster/Mask R-CNN) and :class:`ClinicalRetinaNet` encode
each input's ``"clinical"`` dict (:class:`~cxr_det.modeling.clinical_encoder.ClinicalEncoder`)
and, as set in ``cfg.CXR.FUSION``, fuse the vector with every FPN level the heads read
(:class:`~cxr_det.modeling.fusion.ClinicalSpatialFusion`) and/or with each RoI's box-head
features (:class:`~cxr_det.modeling.roi_heads.ClinicalStandardROIHeads`, R-CNN only).

They run the stock forward and inference unchanged: for the duration of one call, a
forward hook replaces the backbone's output dict by its fused version, and the RoI heads
get the per-image vectors. With ``SPATIAL: none`` and ``ROI: False`` no module is added and
the models are the stock ones (same parameters, same outputs).
"""
import logging
from contextlib import ExitStack, contextmanager

import torch

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY, GeneralizedRCNN, RetinaNet

from cxr_det.modeling.clinical_encoder import ClinicalEncoder
from cxr_det.modeling.fusion import fusion_enabled
from cxr_det.modeling.fusion import ClinicalSpatialFusion
from cxr_det.modeling.roi_heads import ClinicalStandardROIHeads

__all__ = ["ClinicalFusionMixin", "ClinicalGeneralizedRCNN", "ClinicalRetinaNet"]

logger = logging.getLogger(__name__)


def _as_vector(clinical, key, size, dtype, index):
    value = torch.as_tensor(clinical.get(key, ()), dtype=dtype).reshape(-1)
    if value.numel() != size:
        raise ValueError(
            f"input {index}: clinical[{key!r}] has {value.numel()} values, expected {size} "
            f"(the features of CXR.CLINICAL.{'CATEGORICAL' if key == 'categorical' else 'NUMERIC'})"
        )
    return value


class ClinicalFusionMixin:
    """What both clinical meta-architectures add: the fusion modules and their use in one call.

    Placed before the detectron2 meta-architecture in the bases, so its ``__init__`` takes the
    two fusion modules and hands every other argument on.
    """

    @configurable
    def __init__(self, *, clinical_encoder=None, spatial_fusion=None, **kwargs):
        super().__init__(**kwargs)
        self.clinical_encoder = clinical_encoder
        self.spatial_fusion = spatial_fusion

    @staticmethod
    def _build_fusion(cfg, backbone_shapes, levels):
        """``clinical_encoder`` and ``spatial_fusion`` (None when not asked for) for ``from_config``."""
        if not fusion_enabled(cfg):
            return {"clinical_encoder": None, "spatial_fusion": None}
        if not cfg.CXR.CLINICAL.ENABLED:
            logger.warning("CXR.FUSION fuses clinical data but CXR.CLINICAL.ENABLED is False: "
                           "every image will be treated as having no clinical data")
        encoder = ClinicalEncoder.from_config(cfg)
        spatial = None
        if cfg.CXR.FUSION.SPATIAL != "none":
            spatial = ClinicalSpatialFusion.from_config(cfg, backbone_shapes, levels, encoder.output_dim)
        return {"clinical_encoder": encoder, "spatial_fusion": spatial}

    def _clinical_batch(self, batched_inputs):
        """(numeric float (N, n), missing float (N, n), categorical int64 (N, m)) on ``self.device``.

        An input without ``"clinical"`` (or with None) counts as all-missing: numeric 0,
        missing 1, categories 0 (unknown).
        """
        n, m = self.clinical_encoder.num_numeric, self.clinical_encoder.num_categorical
        numeric, missing, categorical = [], [], []
        for i, x in enumerate(batched_inputs):
            clinical = x.get("clinical")
            if clinical is None:
                numeric.append(torch.zeros(n))
                missing.append(torch.ones(n))
                categorical.append(torch.zeros(m, dtype=torch.int64))
            else:
                numeric.append(_as_vector(clinical, "numeric", n, torch.float32, i))
                missing.append(_as_vector(clinical, "missing", n, torch.float32, i))
                categorical.append(_as_vector(clinical, "categorical", m, torch.int64, i))
        return tuple(torch.stack(v).to(self.device) for v in (numeric, missing, categorical))

    @contextmanager
    def _clinical_fusion(self, batched_inputs):
        """For one call of the stock forward: fuse the inputs' clinical vectors where configured."""
        if self.clinical_encoder is None:
            yield
            return
        vectors = self.clinical_encoder(*self._clinical_batch(batched_inputs))
        with ExitStack() as stack:
            if self.spatial_fusion is not None:
                handle = self.backbone.register_forward_hook(
                    lambda module, inputs, features: self.spatial_fusion(features, vectors)
                )
                stack.callback(handle.remove)
            if isinstance(getattr(self, "roi_heads", None), ClinicalStandardROIHeads):
                stack.enter_context(self.roi_heads.clinical_vectors(vectors))
            yield


def _roi_fusion_config(cfg):
    """``cfg`` with RoI heads that match ``CXR.FUSION.ROI`` (StandardROIHeads becomes the clinical one)."""
    name = cfg.MODEL.ROI_HEADS.NAME
    clinical = issubclass(ROI_HEADS_REGISTRY.get(name), ClinicalStandardROIHeads)
    if not cfg.CXR.FUSION.ROI:
        if clinical:
            raise ValueError(f"MODEL.ROI_HEADS.NAME is {name} but CXR.FUSION.ROI is False: set it True")
        return cfg
    if clinical:
        return cfg
    if name != "StandardROIHeads":
        raise ValueError(
            f"CXR.FUSION.ROI needs MODEL.ROI_HEADS.NAME StandardROIHeads or ClinicalStandardROIHeads, got {name}"
        )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.NAME = "ClinicalStandardROIHeads"
    return cfg


@META_ARCH_REGISTRY.register()
class ClinicalGeneralizedRCNN(ClinicalFusionMixin, GeneralizedRCNN):
    """Faster/Mask R-CNN with clinical fusion at every FPN level and/or at the RoI head.

    ``CXR.FUSION.ROI`` swaps ``StandardROIHeads`` for :class:`ClinicalStandardROIHeads`.
    """

    @classmethod
    def from_config(cls, cfg):
        cfg = _roi_fusion_config(cfg)
        ret = super().from_config(cfg)
        levels = set(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        if not cfg.MODEL.LOAD_PROPOSALS:
            levels |= set(cfg.MODEL.RPN.IN_FEATURES)
        ret.update(cls._build_fusion(cfg, ret["backbone"].output_shape(), levels))
        return ret

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        with self._clinical_fusion(batched_inputs):
            return super().forward(batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        with self._clinical_fusion(batched_inputs):
            return super().inference(batched_inputs, detected_instances, do_postprocess)


@META_ARCH_REGISTRY.register()
class ClinicalRetinaNet(ClinicalFusionMixin, RetinaNet):
    """RetinaNet with clinical fusion at every FPN level its head reads (no RoI fusion)."""

    @classmethod
    def from_config(cls, cfg):
        if cfg.CXR.FUSION.ROI:
            raise ValueError(
                "CXR.FUSION.ROI fuses clinical data into R-CNN box-head features; RetinaNet has no RoI "
                "head: set CXR.FUSION.ROI False and use CXR.FUSION.SPATIAL"
            )
        ret = super().from_config(cfg)
        ret.update(cls._build_fusion(cfg, ret["backbone"].output_shape(), cfg.MODEL.RETINANET.IN_FEATURES))
        return ret

    def forward(self, batched_inputs):
        with self._clinical_fusion(batched_inputs):
            return super().forward(batched_inputs)
