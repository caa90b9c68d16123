"""Hooks that act on an evaluation metric: best checkpoint, plateau learning rate, early stop.

Each reads the value EvalHook has just put into the EventStorage (``CXR.TRAIN.BEST_METRIC``,
e.g. ``bbox/AP50``), so :func:`cxr_det.engine.hooks.add_training_control_hooks` places them
right after EvalHook. Early stopping raises :class:`EarlyStop` out of ``TrainerBase.train``;
the trainer's ``train`` catches it.
"""
import logging
import math
import os

import torch

from detectron2.engine import hooks
from detectron2.engine.train_loop import HookBase
from detectron2.utils import comm

from cxr_det.engine.checkpoint import CXRCheckpointer
from cxr_det.utils.atomic import atomic_write_json

__all__ = [
    "EarlyStop",
    "BestMetricCheckpointer",
    "EarlyStopping",
    "PlateauLRScheduler",
]

logger = logging.getLogger(__name__)


class EarlyStop(BaseException):
    """Raised by :class:`EarlyStopping` to leave detectron2's training loop.

    A ``BaseException`` (like ``asyncio.CancelledError``) so that ``TrainerBase.train``'s
    ``except Exception`` does not log it as a failure; its ``finally`` still runs every
    hook's ``after_train`` (final evaluation, writers, curves). The trainer's ``train``
    catches it; ``iteration`` is the last iteration trained.
    """

    def __init__(self, message: str, iteration: int):
        super().__init__(message)
        self.iteration = iteration


class _SaveOnly:
    """The one Checkpointer method that BestCheckpointer calls."""

    def __init__(self, save):
        self.save = save


class BestMetricCheckpointer(hooks.BestCheckpointer):
    """detectron2's BestCheckpointer that records the metric and leaves ``last_checkpoint`` alone.

    ``<file_prefix>.pth`` gets the extra fields ``iteration`` (detectron2's) and
    ``best_metric`` (``{"metric", "value", "iteration", "mode", "checkpoint"}``), and the same
    record is written to ``<file_prefix>.json``. In detectron2 v0.6 this save re-points
    ``last_checkpoint`` at model_best.pth, so ``--resume`` would restart from the best model
    instead of the latest; here the tag is put back. The best value is part of the trainer's
    state, so a resumed run keeps comparing with it. Register it in the main process only.
    """

    def __init__(self, eval_period: int, checkpointer, val_metric: str, mode: str = "max",
                 file_prefix: str = "model_best"):
        super().__init__(eval_period, _SaveOnly(self._save_best), val_metric, mode, file_prefix)
        self._target = checkpointer
        self._metric = val_metric
        self._mode = mode

    def _save_best(self, name: str, **extra):
        value, iteration = self.trainer.storage.latest()[self._metric]
        record = {
            "metric": self._metric,
            "value": float(value),
            "iteration": int(iteration),
            "mode": self._mode,
            "checkpoint": f"{name}.pth",
        }
        ckpt = self._target
        if isinstance(ckpt, CXRCheckpointer):
            # the best model is no resume point: last_checkpoint is left as it is (a kill at
            # any moment leaves it naming the last periodic checkpoint)
            ckpt.save(name, tag_last=False, best_metric=record, **extra)
        else:  # another checkpointer (detectron2's) tags every save: restore the tag after
            previous = os.path.basename(ckpt.get_checkpoint_file()) if ckpt.has_checkpoint() else None
            ckpt.save(name, best_metric=record, **extra)
            if ckpt.save_dir and ckpt.save_to_disk:
                if previous:
                    ckpt.tag_last_checkpoint(previous)
                else:
                    ckpt.path_manager.rm(os.path.join(ckpt.save_dir, "last_checkpoint"))
        if ckpt.save_dir and ckpt.save_to_disk:
            atomic_write_json(os.path.join(ckpt.save_dir, f"{name}.json"), record, indent=2)

    def state_dict(self):
        """The best value and its iteration (checkpointed with the trainer's state)."""
        return {} if self.best_metric is None else {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state):
        """Resume comparing with a saved best value."""
        self.best_metric, self.best_iter = state["best_metric"], state["best_iter"]


class _MetricWatcher(HookBase):
    """Acts on each periodic evaluation of one metric (EvalHook's schedule; after the last
    iteration there is nothing left to control). Must follow EvalHook and be registered in
    every process: rank 0's value is shared so that all processes act alike."""

    def __init__(self, eval_period: int, metric: str, mode: str = "max", min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self._period = eval_period
        self._metric = metric
        self._mode = mode
        self._min_delta = min_delta

    def after_step(self):
        """After each periodic evaluation except the last iteration's: act on the metric."""
        next_iter = self.trainer.iter + 1
        if self._period > 0 and next_iter % self._period == 0 and next_iter != self.trainer.max_iter:
            value = self._latest_value()
            if value is not None:
                self._on_evaluation(value)

    def _latest_value(self):
        value = None
        if comm.is_main_process():
            entry = self.trainer.storage.latest().get(self._metric)
            if entry is None or entry[1] != self.trainer.iter:
                logger.warning(
                    f"{type(self).__name__}: the evaluation at iteration {self.trainer.iter} did not log "
                    f"{self._metric!r}; nothing done"
                )
            else:
                value = float(entry[0])
        return comm.all_gather(value)[0]

    def _improves(self, value: float, best) -> bool:
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return value > best + self._min_delta if self._mode == "max" else value < best - self._min_delta

    def _on_evaluation(self, value: float):
        raise NotImplementedError


class EarlyStopping(_MetricWatcher):
    """End training once the metric has not improved for ``patience`` evaluations in a row.

    At that evaluation (iteration ``t``) it logs why and saves ``<file_prefix>_final.pth``
    (what PeriodicCheckpointer saves after the last iteration); before iteration ``t + 1``
    it sets ``trainer.max_iter = t + 1`` and raises :class:`EarlyStop`. The run then ends as
    one with ``MAX_ITER = t + 1`` would: every ``after_train`` runs, including EvalHook's
    final evaluation (of the same weights as the evaluation at ``t``) and the writers.
    NaN counts as no improvement.
    """

    def __init__(self, eval_period, metric, mode="max", *, patience: int, min_delta=0.0, checkpointer=None,
                 file_prefix: str = "model"):
        super().__init__(eval_period, metric, mode, min_delta)
        if patience < 1:
            raise ValueError(f"patience must be at least 1, got {patience}")
        self._patience = patience
        self._checkpointer = checkpointer
        self._file_prefix = file_prefix
        self.best = self.best_iter = None
        self.num_bad = 0
        self._stop = None

    def _on_evaluation(self, value):
        it = self.trainer.iter
        if self._improves(value, self.best):
            self.best, self.best_iter, self.num_bad = value, it, 0
            return
        self.num_bad += 1
        if self.num_bad < self._patience:
            return
        best = "none finite" if self.best is None else f"{self.best:.5g} at iteration {self.best_iter}"
        message = (
            f"{self._metric} has not improved for {self.num_bad} evaluations (patience {self._patience}; "
            f"best {best}, latest {value:.5g}): training stops after iteration {it} of {self.trainer.max_iter}"
        )
        logger.info(f"Early stopping: {message}")
        if self._checkpointer is not None:
            self._checkpointer.save(f"{self._file_prefix}_final", iteration=it)
        self._stop = EarlyStop(message, it)

    def before_step(self):
        """Raise the pending :class:`EarlyStop` before the first iteration past the stop."""
        if self._stop is not None and self.trainer.iter > self._stop.iteration:
            self.trainer.max_iter = self.trainer.iter
            raise self._stop

    def state_dict(self):
        """The patience counters (checkpointed with the trainer's state)."""
        return {"best": self.best, "best_iter": self.best_iter, "num_bad": self.num_bad}

    def load_state_dict(self, state):
        """Resume the patience counters."""
        self.best, self.best_iter, self.num_bad = state["best"], state["best_iter"], state["num_bad"]


class PlateauLRScheduler(_MetricWatcher):
    """Multiply the learning rate by ``factor`` once the metric has not improved for
    ``patience`` evaluations in a row (torch's ``ReduceLROnPlateau``, stepped with the metric).

    It composes with detectron2's per-iteration scheduler (``LRMultiplier``: lr = base_lr x
    warmup/step multiplier) by scaling that scheduler's ``base_lrs`` together with the
    optimizer's current lr, so warmup and ``SOLVER.STEPS`` still apply and the reduction
    survives every later ``scheduler.step()``. The reduced ``base_lrs`` are checkpointed with
    the LRScheduler hook's state, the plateau counters with this hook's.

    ``patience`` counts the evaluations that make a plateau (as :class:`EarlyStopping`'s
    does); torch's ``patience`` counts those tolerated, so torch gets ``patience - 1``.
    """

    def __init__(self, eval_period, metric, mode="max", *, factor=0.1, patience=2, min_lr=0.0, min_delta=0.0,
                 optimizer=None, scheduler=None):
        super().__init__(eval_period, metric, mode, min_delta)
        if patience < 1 or not 0 < factor < 1:
            raise ValueError(f"need patience >= 1 and 0 < factor < 1, got {patience}, {factor}")
        self._factor, self._patience, self._min_lr = factor, patience, min_lr
        self._optimizer, self._scheduler = optimizer, scheduler
        self._plateau = None
        self._pending_state = None

    def before_train(self):
        """Build torch's ReduceLROnPlateau on the trainer's optimizer (and a resumed state)."""
        optimizer = self._optimizer or self.trainer.optimizer
        if self._scheduler is None:
            self._scheduler = getattr(self.trainer, "scheduler", None)
        self._plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=self._mode, factor=self._factor, patience=self._patience - 1,
            threshold=self._min_delta, threshold_mode="abs", min_lr=self._min_lr,
        )
        if self._pending_state is not None:
            self._plateau.load_state_dict(self._pending_state)
            self._pending_state = None

    def _on_evaluation(self, value):
        groups = self._plateau.optimizer.param_groups
        before = [g["lr"] for g in groups]
        self._plateau.step(value)
        after = [g["lr"] for g in groups]
        if after == before:
            return
        base_lrs = getattr(self._scheduler, "base_lrs", None)
        if base_lrs is not None:
            for i, (old, new) in enumerate(zip(before, after)):
                if old > 0:
                    base_lrs[i] *= new / old
        else:
            logger.warning("PlateauLRScheduler: the trainer's scheduler has no base_lrs; it may undo the reduction")
        i = hooks.LRScheduler.get_best_param_group_id(self._plateau.optimizer)
        logger.info(
            f"Plateau: {self._metric} has not improved on {self._plateau.best:.5g} for {self._patience} "
            f"evaluation(s); learning rate {before[i]:.4g} -> {after[i]:.4g}"
        )

    def state_dict(self):
        """torch's ReduceLROnPlateau state (the counters; the reduced learning rates travel
        with the LRScheduler hook's state)."""
        return self._plateau.state_dict() if self._plateau is not None else (self._pending_state or {})

    def load_state_dict(self, state):
        """Resume the plateau counters (kept until ``before_train`` builds the scheduler)."""
        if self._plateau is None:
            self._pending_state = state
        else:
            self._plateau.load_state_dict(state)
