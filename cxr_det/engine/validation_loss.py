"""The validation loss: the model's training losses on a held-out set during training.

:class:`ValidationLoss` is a detectron2 hook; :func:`cxr_det.engine.hooks.add_training_control_hooks`
puts it right after EvalHook (``CXR.TRAIN.VAL_LOSS``), so its ``val_*`` scalars are logged
before PeriodicWriter writes.
"""
import contextlib
import logging
from collections import defaultdict

import torch
from fvcore.nn.precise_bn import get_bn_modules
from torch.nn.parallel import DataParallel, DistributedDataParallel

from detectron2.engine.train_loop import HookBase
from detectron2.utils import comm
from detectron2.utils.events import EventStorage

__all__ = ["ValidationLoss"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _losses_mode(model):
    """Training mode (detectron2 models return losses only then) without gradients and with
    BatchNorm in eval mode, so running statistics are neither updated nor synchronised
    across GPUs; every module's previous mode is restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.train()
    for bn in get_bn_modules(model):
        bn.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


class ValidationLoss(HookBase):
    """Log the model's training losses on a validation set every ``eval_period`` iterations.

    The losses are averaged over the images (over all processes) and put into the trainer's
    EventStorage as ``val_<name>`` plus ``val_total_loss``, next to the training losses.

    The model runs in training mode without gradients; BatchNorm layers run in eval mode,
    i.e. they normalise with their running statistics (as at inference) and leave them
    untouched. The pass gets its own EventStorage (the heads' sampling statistics stay out of
    the training curves) and a forked, seeded RNG (the same proposal sampling at every
    evaluation, and the training's random stream is unchanged by it).
    """

    def __init__(self, eval_period: int, data_loader, *, model=None, prefix: str = "val_", seed: int = 0):
        """
        Args:
            eval_period: as EvalHook's; 0 computes the losses after the last iteration only.
            data_loader: a re-iterable of batches (lists of dataset dicts with ``instances``,
                e.g. ``build_detection_test_loader`` with a mapper that keeps annotations and
                does no random augmentation), or a function without arguments returning one,
                called at the first evaluation.
            model: default the trainer's model.
        """
        self._period = eval_period
        self._data_loader = data_loader
        self._model = model
        self._prefix = prefix
        self._seed = seed

    def _loader(self):
        if callable(self._data_loader):
            self._data_loader = self._data_loader()
        return self._data_loader

    def after_step(self):
        next_iter = self.trainer.iter + 1
        if next_iter == self.trainer.max_iter or (self._period > 0 and next_iter % self._period == 0):
            self.compute()

    def compute(self):
        """Run the pass now and log the losses; returns ``{"val_<name>": mean}`` (rank 0)."""
        model = self._model if self._model is not None else self.trainer.model
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        sums, num_images = defaultdict(float), 0
        devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
        with _losses_mode(model), torch.random.fork_rng(devices=devices), EventStorage(self.trainer.iter):
            torch.manual_seed(self._seed)
            for batch in self._loader():
                losses = model(batch)
                if isinstance(losses, torch.Tensor):
                    losses = {"total_loss": losses}
                for name, value in losses.items():
                    sums[name] += float(value) * len(batch)
                num_images += len(batch)

        gathered = comm.all_gather((dict(sums), num_images))
        if not comm.is_main_process():
            return {}
        num_images = sum(n for _, n in gathered)
        if num_images == 0:
            logger.warning("ValidationLoss: the validation data loader gave no images")
            return {}
        means = {name: sum(s.get(name, 0.0) for s, _ in gathered) / num_images for name in gathered[0][0]}
        if "total_loss" not in means:
            means["total_loss"] = sum(means.values())
        logged = {self._prefix + name: value for name, value in means.items()}
        self.trainer.storage.put_scalars(**logged, smoothing_hint=False)
        logger.info(
            f"Validation losses at iteration {self.trainer.iter} on {num_images} images: "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(logged.items()))
        )
        return logged
