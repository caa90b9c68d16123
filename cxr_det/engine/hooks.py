"""Training-control hooks: validation loss, best checkpoint, early stopping, plateau LR, curves.

:func:`add_training_control_hooks` puts them, as ``cfg.CXR.TRAIN`` selects, into the list of
``DefaultTrainer.build_hooks``. Order matters:

    IterationTimer, LRScheduler, [PreciseBN], [AverageBatchNormStatistics],
    PeriodicCheckpointer, EvalHook, ValidationLoss, BestMetricCheckpointer,
    PlateauLRScheduler, EarlyStopping, PeriodicWriter, TrainingCurves

(the Trainer then moves PeriodicCheckpointer after PeriodicWriter,
:func:`cxr_det.engine.trainer.checkpoint_after_writers`, so that a checkpoint follows every
record of its iteration and a run killed during an evaluation repeats it on resume)

With several processes BatchNorm statistics are averaged before anything saves or evaluates
the model (and after PreciseBN recomputes them), so every checkpoint and evaluation sees the
same model in every process; the metric hooks read
what EvalHook has just put into the EventStorage, so they follow it; the validation loss is
logged before PeriodicWriter writes; TrainingCurves reads ``metrics.json`` after
PeriodicWriter's last write.

The hooks live by idea: :mod:`cxr_det.engine.validation_loss` (ValidationLoss),
:mod:`cxr_det.engine.metric_hooks` (BestMetricCheckpointer, PlateauLRScheduler,
EarlyStopping and the :class:`~cxr_det.engine.metric_hooks.EarlyStop` it raises); this
module holds AverageBatchNormStatistics, TrainingCurves and the assembly.
"""
import logging
import os

import torch
import torch.distributed as dist
from fvcore.nn.precise_bn import get_bn_modules
from torch.nn.parallel import DataParallel, DistributedDataParallel

from detectron2.engine import hooks
from detectron2.engine.train_loop import HookBase
from detectron2.layers import NaiveSyncBatchNorm
from detectron2.utils import comm

from cxr_det.engine.metric_hooks import BestMetricCheckpointer, EarlyStopping, PlateauLRScheduler
from cxr_det.engine.validation_loss import ValidationLoss
from cxr_det.utils.training_curves import DEFAULT_METRIC_PATTERNS, plot_training_curves

__all__ = [
    "AverageBatchNormStatistics",
    "TrainingCurves",
    "add_training_control_hooks",
]

logger = logging.getLogger(__name__)


class AverageBatchNormStatistics(HookBase):
    """After each iteration, average the BatchNorm running statistics over the processes.

    detectron2 wraps the model in ``DistributedDataParallel(broadcast_buffers=False)``: the
    gradients are averaged, but each process updates its BatchNorm running mean and variance
    with its own batches only, so the processes would evaluate (and process 0 would save)
    different models. With this hook before PeriodicCheckpointer every process holds, from the
    end of each iteration on, the mean of the processes' running statistics: the checkpoints, the
    periodic evaluations and the validation loss all use that one model, and a one-process
    evaluation of a saved checkpoint gives the gathered evaluation's metrics. (The mean of
    the running variances leaves out the spread between the processes' means.)

    Layers that synchronise themselves (``SyncBatchNorm``, detectron2's
    ``NaiveSyncBatchNorm``), layers without running statistics, frozen ones (eval mode) and
    ``FrozenBatchNorm2d`` are left alone. One ``all_reduce`` of all the statistics per
    iteration; nothing happens in a single process.
    """

    def __init__(self):
        self._stats = []

    def before_train(self):
        model = self.trainer.model
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        self._stats = [
            t for m in get_bn_modules(model)
            if not isinstance(m, (torch.nn.SyncBatchNorm, NaiveSyncBatchNorm)) and m.running_mean is not None
            for t in (m.running_mean, m.running_var)
        ]

    @torch.no_grad()
    def after_step(self):
        if comm.get_world_size() == 1 or not self._stats:
            return
        flat = torch.cat([t.reshape(-1).float() for t in self._stats])
        dist.all_reduce(flat)
        flat /= comm.get_world_size()
        for t, mean in zip(self._stats, torch.split(flat, [t.numel() for t in self._stats])):
            t.copy_(mean.view_as(t))


class TrainingCurves(HookBase):
    """At the end of training draw ``metrics.json`` as PNGs (see :func:`plot_training_curves`);
    a failure is logged, never raised. Register it in the main process, after PeriodicWriter."""

    def __init__(self, metrics_file: str, output_dir: str, metric_patterns=DEFAULT_METRIC_PATTERNS):
        self._metrics_file = metrics_file
        self._output_dir = output_dir
        self._patterns = tuple(metric_patterns)

    def after_train(self):
        try:
            plot_training_curves(self._metrics_file, self._output_dir, self._patterns)
        except Exception as e:
            logger.warning(f"Training curves not drawn: {e}")


def add_training_control_hooks(hook_list, cfg, checkpointer, val_data_loader=None):
    """Put the hooks ``cfg.CXR.TRAIN`` asks for into ``DefaultTrainer.build_hooks``' list.

    ValidationLoss, BestMetricCheckpointer, PlateauLRScheduler and EarlyStopping go right
    after EvalHook, TrainingCurves at the end (see the module's docstring); with several
    processes AverageBatchNormStatistics goes before PeriodicCheckpointer.

    Args:
        hook_list: the list from ``DefaultTrainer.build_hooks``; it must hold an EvalHook.
        checkpointer: the trainer's checkpointer (model_best.pth, model_final.pth on early stop).
        val_data_loader: a validation loader or a function returning one (see
            :class:`ValidationLoss`); needed for ``CXR.TRAIN.VAL_LOSS``.

    Returns:
        the new list.
    """
    tc = cfg.CXR.TRAIN
    period = cfg.TEST.EVAL_PERIOD
    after_eval = []
    if len(cfg.DATASETS.TEST):
        if tc.VAL_LOSS:
            if val_data_loader is None:
                logger.warning("CXR.TRAIN.VAL_LOSS is on but no validation data loader was given; no validation loss")
            else:
                after_eval.append(ValidationLoss(period, val_data_loader))
        if tc.BEST_METRIC:
            if comm.is_main_process():
                after_eval.append(BestMetricCheckpointer(period, checkpointer, tc.BEST_METRIC, tc.BEST_MODE))
            if (tc.PLATEAU.ENABLED or tc.PATIENCE > 0) and period <= 0:
                logger.warning("The plateau schedule and early stopping need TEST.EVAL_PERIOD > 0; both are off")
            elif tc.PLATEAU.ENABLED:
                after_eval.append(
                    PlateauLRScheduler(
                        period, tc.BEST_METRIC, tc.BEST_MODE, factor=tc.PLATEAU.FACTOR,
                        patience=tc.PLATEAU.PATIENCE, min_lr=tc.PLATEAU.MIN_LR, min_delta=tc.MIN_DELTA,
                    )
                )
            if tc.PATIENCE > 0 and period > 0:
                after_eval.append(
                    EarlyStopping(
                        period, tc.BEST_METRIC, tc.BEST_MODE, patience=tc.PATIENCE, min_delta=tc.MIN_DELTA,
                        checkpointer=checkpointer,
                    )
                )
    evals = [i for i, h in enumerate(hook_list) if isinstance(h, hooks.EvalHook)]
    if after_eval and not evals:
        raise ValueError("add_training_control_hooks: the hook list has no EvalHook to follow")
    hook_list = list(hook_list)
    if after_eval:
        hook_list[evals[-1] + 1:evals[-1] + 1] = after_eval
    if comm.get_world_size() > 1:
        readers = (hooks.PeriodicCheckpointer, hooks.EvalHook)
        first = next((i for i, h in enumerate(hook_list) if isinstance(h, readers)), 0)
        hook_list.insert(first, AverageBatchNormStatistics())
    if tc.PLOT_CURVES and comm.is_main_process():
        hook_list.append(TrainingCurves(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), cfg.OUTPUT_DIR))
    return hook_list
