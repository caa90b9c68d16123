"""Strict checkpoint loading, crash-safe saving and resuming.

Loading: a checkpoint that does not fit the model is an error.

detectron2's checkpointer loads what fits and logs the rest ("Skip loading parameter ...",
"Some model parameters or buffers are not found in the checkpoint"); a model built with a
different class count, clinical vocabulary or fusion set-up then runs with random layers and
reports results as if nothing were wrong. :class:`CXRCheckpointer` raises
:class:`CheckpointMismatchError` instead, naming the parameters and the likely cause.

The one partial load that is legitimate is fine-tuning from pretrained weights (ImageNet
backbones, COCO detectors from detectron2's model zoo: ``.pkl`` files carrying
``__author__``) into a model with new heads, while training. It is allowed only when the
trainer asks for it (``allow_pretrained_partial``) and is logged as fine-tuning.

Saving survives ``kill -9`` at any moment: the ``.pth`` is written to a temporary file beside
it and renamed over it (:func:`cxr_det.utils.atomic.atomic_save`), and ``last_checkpoint`` is
replaced (atomically too) only after that, so it always names a complete file. ``--resume``
of a folder whose ``last_checkpoint`` names a file that cannot be read anyway (written by an
older version killed mid-save, truncated by a full disk, deleted) falls back to the newest
readable periodic checkpoint ``model_NNNNNNN.pth`` before it, with a warning naming the
unreadable file, and tags that one; with none readable it raises
:class:`UnreadableCheckpointError` naming every file tried. Falling back rather than failing
lets a pre-empted cluster job that is requeued with ``--resume`` go on by itself, losing one
more checkpoint period at most.
"""
import logging
import os
import re
from collections import defaultdict

import torch

from detectron2.checkpoint import DetectionCheckpointer

from cxr_det.engine.run import RunConfigError
from cxr_det.utils.atomic import atomic_save, atomic_write_text

__all__ = [
    "CXRCheckpointer",
    "CheckpointMismatchError",
    "UnreadableCheckpointError",
    "describe_mismatch",
    "LAST_CHECKPOINT_FILE",
    "periodic_checkpoint_iteration",
]

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


LAST_CHECKPOINT_FILE = "last_checkpoint"  # fvcore's tag file: the basename of the latest checkpoint
# Periodic and interrupt checkpoints: ``<prefix>_<iteration, 7 digits>.pth`` (fvcore's PeriodicCheckpointer).
_PERIODIC = re.compile(r"^(?P<prefix>.+)_(?P<iteration>\d{7})\.pth$")


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's parameters do not match the model built from the config."""


class UnreadableCheckpointError(RunConfigError):
    """A checkpoint file that cannot be read (truncated, not a torch/pickle file, missing).

    A :class:`~cxr_det.engine.run.RunConfigError` (``tools/train_net.py`` reports it in one
    line); ``paths`` lists the files that were tried.
    """

    def __init__(self, message: str, paths=()):
        super().__init__(message)
        self.paths = list(paths)


def periodic_checkpoint_iteration(path: str):
    """The iteration in a periodic checkpoint's name (``model_0000029.pth`` -> 29), or None
    for other names (``model_final.pth``, ``model_best.pth``)."""
    match = _PERIODIC.match(os.path.basename(path))
    return int(match.group("iteration")) if match else None


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
    fine-tuning. A file that cannot be read raises :class:`UnreadableCheckpointError`.

    Saving is atomic (the module's docstring): each :meth:`save` first calls the callables in
    ``before_save`` (the trainer flushes its TensorBoard events there, so the events on disk
    always reach the checkpoint's iteration), writes ``<name>.pth`` through a temporary file,
    then tags it in ``last_checkpoint``. ``save_dir`` must be a local folder.

    :meth:`resume_or_load` falls back past an unreadable last checkpoint (module docstring);
    ``resumed_from`` is then the file actually loaded (None when not resuming).
    """

    def __init__(self, model, save_dir="", *, allow_pretrained_partial=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_pretrained_partial = allow_pretrained_partial
        self.before_save = []
        self.resumed_from = None
        self._source = ""

    def load(self, path, *args, **kwargs):
        self._source = path
        return super().load(path, *args, **kwargs)

    def save(self, name: str, *, tag_last: bool = True, **kwargs):
        """Write ``save_dir/<name>.pth`` atomically: the model's and the checkpointables'
        state dicts plus ``kwargs`` (e.g. ``iteration``), as detectron2 / fvcore's
        ``Checkpointer.save`` does; then, if ``tag_last``, name it in ``last_checkpoint``.
        Nothing is written without ``save_dir`` or with ``save_to_disk`` False (other ranks).

        ``tag_last=False`` is for checkpoints that are no resume point (the best model).
        """
        if not self.save_dir or not self.save_to_disk:
            return
        for callback in self.before_save:
            callback()
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        if os.path.basename(path) != basename:
            raise ValueError(f"checkpoint name {name!r} must be a file name, not a path")
        self.logger.info(f"Saving checkpoint to {path}")
        # torch.save is looked up at call time, so a wrapper around it (tests) sees these writes.
        atomic_save(path, lambda f: torch.save(data, f))
        if tag_last:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str):
        """Name ``last_filename_basename`` in ``save_dir/last_checkpoint``, atomically."""
        atomic_write_text(os.path.join(self.save_dir, LAST_CHECKPOINT_FILE), last_filename_basename)

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except Exception as e:  # noqa: BLE001 - whatever torch / pickle raise for a bad file
            raise UnreadableCheckpointError(
                f"{filename}: not a readable checkpoint ({type(e).__name__}: {e})", [filename]
            ) from e

    def _resume_candidates(self, named: str):
        """The named last checkpoint, then the periodic checkpoints before it, newest first
        (all of them when the tag names no periodic checkpoint)."""
        limit = periodic_checkpoint_iteration(named) if named else None
        periodic = []
        if os.path.isdir(self.save_dir):
            for entry in os.listdir(self.save_dir):
                it = periodic_checkpoint_iteration(entry)
                if it is not None and (limit is None or it < limit):
                    periodic.append((it, os.path.join(self.save_dir, entry)))
        return [named] + [path for _, path in sorted(periodic, reverse=True)]

    def resume_or_load(self, path: str, *, resume: bool = True):
        """With ``resume`` and a ``last_checkpoint`` in ``save_dir``: load the checkpoint it
        names with every checkpointable (optimizer, scheduler, trainer state), falling back
        past unreadable files (module docstring); otherwise load only the model from
        ``path`` (``MODEL.WEIGHTS``; "" = nothing).

        Returns:
            the checkpoint's remaining data, as fvcore's ``Checkpointer.load``.

        Raises:
            UnreadableCheckpointError: resuming, and no candidate checkpoint could be read.
            CheckpointMismatchError: the checkpoint does not fit the model (no fallback: the
                config differs from the run's).
        """
        self.resumed_from = None
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        named = self.get_checkpoint_file()
        named = named if named and os.path.basename(named) else ""
        failures = []  # (file, why)
        for candidate in self._resume_candidates(named):
            if not candidate:
                failures.append((os.path.join(self.save_dir, LAST_CHECKPOINT_FILE), "names no checkpoint"))
                continue
            if not os.path.isfile(candidate):
                failures.append((candidate, "no such file"))
                continue
            try:
                data = self.load(candidate)
            except UnreadableCheckpointError as e:
                cause = e.__cause__ or e
                failures.append((candidate, f"not readable ({type(cause).__name__}: {cause})"))
                continue
            self.resumed_from = candidate
            if failures:
                self.logger.warning(
                    f"Resuming from {candidate}, the newest readable checkpoint, instead of the last one: "
                    + "; ".join(f"{f}: {why}" for f, why in failures)
                )
                if self.save_to_disk:
                    self.tag_last_checkpoint(os.path.basename(candidate))
            return data
        raise UnreadableCheckpointError(
            f"--resume: no readable checkpoint in {self.save_dir} ("
            + "; ".join(f"{f}: {why}" for f, why in failures)
            + "). Start a new run without --resume (this folder's files are then moved to previous_runs/), "
            "or set MODEL.WEIGHTS to a checkpoint to fine-tune from.",
            [f for f, _ in failures],
        )

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
