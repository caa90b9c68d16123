"""The detectron2 trainer for chest X-ray datasets: strict, self-describing, interruptible runs."""
import logging
import os
import shlex
import sys

import torch
from fvcore.nn import parameter_count_table

from detectron2.data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.engine import DefaultTrainer, hooks
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter

from cxr_det.data.clinical.pipeline import CHECKPOINT_KEY, load_featurizer
from cxr_det.data.datasets.common import DATASET_ROOT_ENV
from cxr_det.data.mapper import CXRDatasetMapper
from cxr_det.data.classification_loader import (
    build_classification_test_loader,
    build_classification_train_loader,
)
from cxr_det.data.classification_mapper import ClassificationDatasetMapper
from cxr_det.engine.checkpoint import CXRCheckpointer
from cxr_det.engine.classification_setup import is_classifier
from cxr_det.engine.evaluators import build_evaluator
from cxr_det.engine.hooks import add_training_control_hooks
from cxr_det.engine.metric_hooks import EarlyStop
from cxr_det.engine.interrupt import (
    GracefulInterrupt,
    OrderedJSONWriter,
    ResumableTensorboardWriter,
    TrainingInterrupted,
)
from cxr_det.engine.run import RUN_RECORD_KEY, RunRecord
from cxr_det.engine.run_folder import remove_stale_temporary_files, set_aside_past_resume_point
from cxr_det.modeling.pretrained import explain_download_error, is_remote

logger = logging.getLogger(__name__)

# CXR.SOLVER.OPTIMIZER values besides detectron2's "SGD".
OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}


class Trainer(DefaultTrainer):
    """DefaultTrainer with the chest X-ray mapper (PNG/JPEG/DICOM, albumentations), the chest
    X-ray evaluator (COCO, VinBigData, IoBB, FROC, image-level; ``TEST.CXR_EVAL``), and a run
    lifecycle:

    - checkpoints carry a :class:`~cxr_det.engine.run.RunRecord` (config, class names,
      clinical features, image frame) and the clinical statistics; ``OUTPUT_DIR/run.json``
      holds the same record;
    - loading is strict (:class:`~cxr_det.engine.checkpoint.CXRCheckpointer`): only
      pretrained model-zoo weights may fill part of a new model, and that is logged;
    - SIGINT / SIGTERM save a checkpoint after the current iteration and stop
      (:class:`~cxr_det.engine.interrupt.GracefulInterrupt`), raising
      :class:`~cxr_det.engine.interrupt.TrainingInterrupted` out of :meth:`train`;
    - ``kill -9`` at any moment loses at most one checkpoint period: checkpoints and
      ``last_checkpoint`` are written atomically, and the periodic checkpoint is taken after
      the iteration's evaluation, metric hooks and writers (detectron2 takes it before), with
      the TensorBoard events flushed first, so a checkpoint always has every record of its
      iteration on disk before it and a resumed run re-does an evaluation the kill cut off;
    - ``resume_or_load(resume=True)`` logs where it continues (falling back past an
      unreadable last checkpoint, see :class:`~cxr_det.engine.checkpoint.CXRCheckpointer`),
      drops the interrupted run's ``metrics.json`` lines and TensorBoard events past that
      iteration, moves aside checkpoints it wrote past it (a best model) and removes the
      temporary files of writes it did not finish.
    """

    def __init__(self, cfg):
        # Before detectron2 builds the data loader: its worker processes inherit the handlers,
        # so an interrupt from the terminal does not kill them mid-batch.
        self._interrupt = GracefulInterrupt()
        self._interrupt.install()
        super().__init__(cfg)
        if cfg.CXR.CLINICAL.ENABLED:
            # The statistics travel in every checkpoint, next to the weights they belong to.
            self.checkpointer.checkpointables[CHECKPOINT_KEY] = load_featurizer(cfg)
        class_names = MetadataCatalog.get(cfg.DATASETS.TRAIN[0]).get("thing_classes", []) if cfg.DATASETS.TRAIN else []
        self.run_record = RunRecord(cfg, class_names)
        self.checkpointer.checkpointables[RUN_RECORD_KEY] = self.run_record
        if comm.is_main_process():
            self.run_record.save(cfg.OUTPUT_DIR)

    @classmethod
    def build_model(cls, cfg):
        """detectron2's model, with its parameter counts per module logged."""
        model = super().build_model(cfg)
        logger.info("Parameters per module:\n" + parameter_count_table(model, max_depth=3))
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        """detectron2's SGD, or torch's Adam / AdamW (``CXR.SOLVER.OPTIMIZER``), over detectron2's
        parameter groups (weight decay of norms and biases, bias LR factor) and with
        ``SOLVER.CLIP_GRADIENTS``.

        Raises:
            ValueError: an unknown optimizer name.
        """
        name = cfg.CXR.SOLVER.OPTIMIZER
        if name == "SGD":
            return super().build_optimizer(cfg, model)
        if name not in OPTIMIZERS:
            raise ValueError(f"CXR.SOLVER.OPTIMIZER must be SGD, {' or '.join(OPTIMIZERS)}; got {name!r}")
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, OPTIMIZERS[name])(
            params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.CXR.SOLVER.BETAS), weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """The evaluator the dataset's metadata ``evaluator_type`` names
        (:mod:`cxr_det.engine.evaluators`: ``cxr_detection`` and ``coco`` ->
        :class:`~cxr_det.evaluation.CXRDetectionEvaluator`), writing into ``output_folder``
        (default ``OUTPUT_DIR/inference/<dataset_name>``).

        Raises:
            ValueError: an ``evaluator_type`` without a registered evaluator.
        """
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_writers(self):
        """detectron2's writers, with a TensorBoard writer that can drop events past a resume point
        and a ``metrics.json`` writer that keeps its lines in iteration order."""
        self._tensorboard = ResumableTensorboardWriter(self.cfg.OUTPUT_DIR)
        self._json_writer = OrderedJSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))
        return [CommonMetricPrinter(self.max_iter), self._json_writer, self._tensorboard]

    def _flush_event_files(self):
        """Before each checkpoint: the TensorBoard events so far onto disk (``metrics.json``
        is fsynced at each write)."""
        writer = getattr(self, "_tensorboard", None)
        if writer is not None:
            writer.flush()

    def build_hooks(self):
        """detectron2's hooks plus validation loss, best checkpoint, plateau LR, early stop,
        curves, and the interrupt hook (last, so it sees the iteration's evaluation done)."""
        cfg = self.cfg
        # DefaultTrainer.__init__ made a DetectionCheckpointer just before calling this; the
        # hooks built here must hold the strict one.
        old = self.checkpointer
        self.checkpointer = CXRCheckpointer(old.model, old.save_dir, save_to_disk=old.save_to_disk, **old.checkpointables)

        def val_loader():  # keeps annotations; test-time resize, no random augmentation
            if is_classifier(cfg):  # the test mapper keeps labels
                return build_classification_test_loader(cfg, cfg.DATASETS.TEST[0])
            mapper = CXRDatasetMapper(
                cfg, is_train=True, augmentations=utils.build_augmentation(cfg, is_train=False), albumentations=None
            )
            return build_detection_test_loader(cfg, cfg.DATASETS.TEST[0], mapper=mapper)

        hook_list = add_training_control_hooks(super().build_hooks(), cfg, self.checkpointer, val_data_loader=val_loader)
        self.checkpointer.before_save.append(self._flush_event_files)
        return checkpoint_after_writers(hook_list) + [self._interrupt.hook(self.checkpointer)]

    def resume_or_load(self, resume=True):
        """Resume from ``OUTPUT_DIR``'s last checkpoint (strictly; logged with its iteration;
        the interrupted run's later metrics, events and checkpoints dropped or moved aside) or,
        without one, load ``MODEL.WEIGHTS`` (pretrained model-zoo weights may fill part of the
        model: fine-tuning, logged).

        Raises:
            UnreadableCheckpointError: resuming, and no checkpoint of the folder can be read.
        """
        if resume and self.checkpointer.has_checkpoint():
            self.checkpointer.allow_pretrained_partial = False
            super().resume_or_load(resume=True)
            path = self.checkpointer.resumed_from
            logger.info(f"Resuming from {path}: continuing at iteration {self.start_iter} of {self.max_iter}")
            if comm.is_main_process():
                self._clean_up_after(path)
            return
        if resume:
            logger.warning(f"--resume: no checkpoint in {self.cfg.OUTPUT_DIR} (no last_checkpoint file); "
                           f"starting at iteration 0 from MODEL.WEIGHTS {self.cfg.MODEL.WEIGHTS or '(none)'}")
        self.checkpointer.allow_pretrained_partial = True
        try:
            super().resume_or_load(resume=False)
        except Exception as e:  # noqa: BLE001 - a failed download gets the fixes; others pass through
            if is_remote(self.cfg.MODEL.WEIGHTS):
                raise explain_download_error(e, self.cfg) from e
            raise

    def _clean_up_after(self, resumed_from: str):
        """What an interrupted run left past the resume point: stale temporary files, later
        checkpoints, ``metrics.json`` lines and TensorBoard events (main process)."""
        out = self.cfg.OUTPUT_DIR
        stale = remove_stale_temporary_files(out)
        if stale:
            logger.info(f"Removed {len(stale)} temporary file(s) of writes the interrupted run did not finish: "
                        + ", ".join(os.path.relpath(p, out) for p in stale))
        moved = set_aside_past_resume_point(out, self.start_iter, resumed_from)
        if moved:
            logger.warning(f"Checkpoints the interrupted run wrote past iteration {self.start_iter - 1} (or unreadable "
                           f"ones) moved to {moved}")
        dropped = self._json_writer.restart_at(self.start_iter)
        if dropped:
            logger.info(f"metrics.json: {dropped} line(s) of the interrupted run past iteration "
                        f"{self.start_iter - 1} dropped")
        self._tensorboard.restart_at(self.start_iter)

    def train(self):
        """Train; an early stop returns the last evaluation's results, an interrupt re-raises
        :class:`~cxr_det.engine.interrupt.TrainingInterrupted` after logging the resume command."""
        try:
            return super().train()
        except EarlyStop as stop:
            logger.info(f"Training stopped early: {stop}")
            if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
                verify_results(self.cfg, self._last_eval_results)
            return getattr(self, "_last_eval_results", None)
        except TrainingInterrupted as stop:
            logger.warning(f"{stop}. Resume with:\n  {resume_command(sys.argv)}")
            raise
        finally:
            self._interrupt.uninstall()

    @classmethod
    def build_train_loader(cls, cfg):
        """detectron2's training loader with :class:`~cxr_det.data.mapper.CXRDatasetMapper`; for
        image classifiers :func:`~cxr_det.data.classification_loader.build_classification_train_loader`
        (:class:`~cxr_det.data.classification_mapper.ClassificationDatasetMapper`, image-level samplers)."""
        if is_classifier(cfg):
            return build_classification_train_loader(cfg, mapper=ClassificationDatasetMapper(cfg, is_train=True))
        return build_detection_train_loader(cfg, mapper=CXRDatasetMapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """detectron2's test loader with :class:`~cxr_det.data.mapper.CXRDatasetMapper` (test mode);
        for image classifiers the classification loader and mapper."""
        if is_classifier(cfg):
            return build_classification_test_loader(cfg, dataset_name, mapper=ClassificationDatasetMapper(cfg, is_train=False))
        return build_detection_test_loader(cfg, dataset_name, mapper=CXRDatasetMapper(cfg, is_train=False))


def checkpoint_after_writers(hook_list):
    """``hook_list`` with detectron2's PeriodicCheckpointer moved after PeriodicWriter (and so
    after EvalHook and the metric hooks that follow it).

    detectron2 saves the periodic checkpoint before the iteration's evaluation: a run killed
    during that evaluation resumes after it, and the evaluation, its metrics line and its
    best-model check are never done. Saved last, a checkpoint holds the metric hooks' state
    after the evaluation and every record of its iteration is written before it.
    A list without both hooks (other processes than the main one) is returned unchanged.
    """
    hook_list = list(hook_list)
    saver = [h for h in hook_list if isinstance(h, hooks.PeriodicCheckpointer)]
    writers = [i for i, h in enumerate(hook_list) if isinstance(h, hooks.PeriodicWriter)]
    if len(saver) != 1 or not writers:
        return hook_list
    hook_list.remove(saver[0])
    writers = [i for i, h in enumerate(hook_list) if isinstance(h, hooks.PeriodicWriter)]
    hook_list.insert(writers[-1] + 1, saver[0])
    return hook_list


def resume_command(argv) -> str:
    """The shell command that resumes the run started by ``argv`` (``sys.argv``): the same
    interpreter, script, flags and overrides, ``--resume`` among the flags (before the
    ``KEY VALUE`` overrides, which detectron2's parser takes as the remainder), and the
    dataset root variable when it is set."""
    script, rest = argv[0], [a for a in argv[1:] if a != "--resume"]
    env = f"{DATASET_ROOT_ENV}={shlex.quote(os.environ[DATASET_ROOT_ENV])} " if os.environ.get(DATASET_ROOT_ENV) else ""
    words = [sys.executable, script, "--resume"] + rest
    return env + " ".join(shlex.quote(w) for w in words)
