"""Strict checkpoint loading: a checkpoint that does not fit the model is an error.

detectron2's checkpointer loads what fits and logs the rest ("Skip loading parameter ...",
"Some model parameters or buffers are not found in the checkpoint"); a model built with a
different class count, clinical vocabulary or fusion set-up then runs with random layers and
reports results as if nothing were wrong. :class:`CXRCheckpointer` raises
:class:`CheckpointMismatchError` instead, naming the parameters and the likely cause.

The one partial load that is legitimate is fine-tuning from pretrained weights (ImageNet
backbones, COCO detectors from detectron2's model zoo: ``.pkl`` files carrying
``__author__``) into a model with new heads, while training. It is allowed only when the
trainer asks for it (``allow_pretrained_partial``) and is logged as fine-tuning.
"""
import logging
from collections import defaultdict

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["CXRCheckpointer", "CheckpointMismatchError", "describe_mismatch"]

logger = logging.getLogger(__name__)

# Parameter-name fragments and the config keys that shape them: the likely causes named in errors.
_CAUSES = (
    ("clinical_encoder.embeddings", "the clinical vocabularies (CXR.CLINICAL.CATEGORICAL / CATEGORICAL_SIZES)"),
    ("clinical_encoder", "the clinical features (CXR.CLINICAL.NUMERIC / CATEGORICAL) or CXR.CLINICAL.ENABLED"),
    ("fusion", "the clinical fusion set-up (CXR.FUSION.*) or MODEL.META_ARCHITECTURE"),
    ("cls_score", "the class count (MODEL.ROI_HEADS.NUM_CLASSES / MODEL.RETINANET.NUM_CLASSES, the dataset's CLASSES)"),
    ("bbox_pred", "the class count or MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG"),
    ("mask_head", "MODEL.MASK_ON or the class count"),
    ("norm", "the normalisation layers (MODEL.RESNETS.NORM, MODEL.FPN.NORM; a run trained without pretrained "
              "weights switched them to GN)"),
    ("backbone", "the backbone (MODEL.BACKBONE.NAME, MODEL.RESNETS.*, CXR.MOBILENET.*, MODEL.FPN.*)"),
)


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's parameters do not match the model built from the config."""


def _group(keys, limit=6):
    """'prefix.* (n)' summaries of parameter names, so a 100-key mismatch stays readable."""
    groups = defaultdict(list)
    for key in keys:
        groups[".".join(key.split(".")[:3])].append(key)
    lines = []
    for prefix, members in sorted(groups.items()):
        lines.append(members[0] if len(members) == 1 else f"{prefix}.* ({len(members)} tensors)")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more groups"]
    return lines


def describe_mismatch(missing, unexpected, incorrect_shapes) -> str:
    """A human-readable account of a failed load, with the config keys that likely differ.

    Args:
        missing: parameter names the model has and the checkpoint lacks.
        unexpected: names the checkpoint has and the model lacks.
        incorrect_shapes: ``(name, checkpoint_shape, model_shape)`` triples.
    """
    parts = []
    if incorrect_shapes:
        shown = [f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in incorrect_shapes[:6]]
        more = f" ... and {len(incorrect_shapes) - 6} more" if len(incorrect_shapes) > 6 else ""
        parts.append("shape mismatch: " + "; ".join(shown) + more)
    if missing:
        parts.append("not in the checkpoint: " + ", ".join(_group(missing)))
    if unexpected:
        parts.append("in the checkpoint but not in the model: " + ", ".join(_group(unexpected)))
    names = [k for k, _, _ in incorrect_shapes] + list(missing) + list(unexpected)
    causes = []
    for fragment, cause in _CAUSES:
        if any(fragment in name for name in names) and cause not in causes:
            causes.append(cause)
    text = "; ".join(parts)
    if causes:
        text += ". The config the model was built from likely differs from the training run's in " + "; ".join(causes)
    return text


class CXRCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` whose loads are strict.

    Loading raises :class:`CheckpointMismatchError` when any parameter or buffer is missing,
    unexpected or of another shape, except when ``allow_pretrained_partial`` is True and the
    file is a pretrained model-zoo file (``__author__`` set by detectron2's loader for
    ``.pkl`` / ``.pyth`` files: ImageNet backbones, COCO detectors), which is logged as
    fine-tuning. Saving is detectron2's.
    """

    def __init__(self, model, save_dir="", *, allow_pretrained_partial=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_pretrained_partial = allow_pretrained_partial
        self._source = ""

    def load(self, path, *args, **kwargs):
        self._source = path
        return super().load(path, *args, **kwargs)

    def _load_model(self, checkpoint):
        pretrained = checkpoint.get("__author__") is not None
        incompatible = super()._load_model(checkpoint)
        missing = list(incompatible.missing_keys)
        unexpected = list(incompatible.unexpected_keys)
        shapes = list(incompatible.incorrect_shapes)
        if not (missing or unexpected or shapes):
            return incompatible
        if pretrained and self.allow_pretrained_partial:
            total = len(self.model.state_dict())
            new = len(set(missing) | {k for k, _, _ in shapes})
            logger.info(
                f"Fine-tuning from pretrained weights {self._source} ({checkpoint['__author__']}): "
                f"{total - new} of {total} tensors loaded, {new} initialised anew (new heads or layers)"
            )
            return incompatible
        raise CheckpointMismatchError(
            f"{self._source or 'checkpoint'} does not fit the model: {describe_mismatch(missing, unexpected, shapes)}. "
            "Build the model from the run that wrote the checkpoint (--run OUTPUT_DIR, or the checkpoint path as "
            "MODEL.WEIGHTS with the config of that run)."
        )
