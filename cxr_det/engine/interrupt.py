"""Interrupt and resume: SIGINT / SIGTERM save a checkpoint and stop training cleanly.

Clusters send SIGTERM before they kill a pre-empted job; a person presses Ctrl-C (SIGINT).
Either way the iteration in progress finishes, the checkpoint ``model_<iter>.pth`` is saved
and tagged in ``last_checkpoint``, and :class:`TrainingInterrupted` leaves the training loop
(after the hooks' ``after_train``), so ``--resume`` continues exactly at the next iteration.
A second signal of the same kind acts at once (Python's default: KeyboardInterrupt, or
termination).

With several processes every rank stops at the same iteration: the request is all-gathered
after each step.

``kill -9`` (or a crash, or a lost node) cannot be caught: the run then resumes from its last
periodic checkpoint, and the writers here make its records continue without duplicates:
:meth:`OrderedJSONWriter.restart_at` drops ``metrics.json`` lines past the resume point and
:meth:`ResumableTensorboardWriter.restart_at` makes TensorBoard discard the killed run's
later events. Their files are flushed before every checkpoint (see
:class:`~cxr_det.engine.checkpoint.CXRCheckpointer`'s ``before_save``), so they hold every
iteration up to it: no gap either.
"""
import json
import logging
import os
import signal
import threading
from collections import defaultdict

from detectron2.engine.train_loop import HookBase
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter, TensorboardXWriter, get_event_storage

__all__ = [
    "GracefulInterrupt",
    "TrainingInterrupted",
    "ResumableTensorboardWriter",
    "OrderedJSONWriter",
    "EXIT_CODES",
]

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Shell convention for a process ended by a signal: 128 + signal number.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(BaseException):
    """Training stopped on a signal after saving ``checkpoint`` at ``iteration``.

    A ``BaseException`` like :class:`~cxr_det.engine.metric_hooks.EarlyStop`, so detectron2's
    training loop does not log it as a failure. ``exit_code`` is 130 (SIGINT) or 143 (SIGTERM).
    """

    def __init__(self, message: str, iteration: int, checkpoint: str, signum: int):
        super().__init__(message)
        self.iteration = iteration
        self.checkpoint = checkpoint
        self.exit_code = EXIT_CODES.get(signum, 1)


class GracefulInterrupt:
    """Signal handlers that request a stop, and the hook that honours the request.

    :meth:`install` before the data loader's worker processes start (they inherit the
    handlers, which do nothing in them), :meth:`uninstall` when training ends. Only the main
    thread can install handlers; elsewhere (e.g. a test runner thread) this is a no-op.
    """

    def __init__(self):
        self.requested = None  # the signal number, once one arrived
        self._previous = {}
        self._pid = os.getpid()

    def _handle(self, signum, frame):
        if os.getpid() != self._pid:  # a forked data-loader worker: the main process decides
            return
        if self.requested is not None:
            self.uninstall()
            signal.raise_signal(signum)
            return
        self.requested = signum
        logger.warning(
            f"{signal.Signals(signum).name} received: saving a checkpoint after this iteration and stopping "
            f"(send it again to stop at once without saving)"
        )

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return
        self._pid = os.getpid()
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self):
        while self._previous:
            signum, handler = self._previous.popitem()
            signal.signal(signum, handler)

    def hook(self, checkpointer):
        """The training hook that saves and stops once a stop was requested."""
        return _InterruptHook(self, checkpointer)


class _InterruptHook(HookBase):
    def __init__(self, interrupt: GracefulInterrupt, checkpointer):
        self._interrupt = interrupt
        self._checkpointer = checkpointer

    def after_step(self):
        requested = self._interrupt.requested
        if comm.get_world_size() > 1:
            requested = next((r for r in comm.all_gather(requested) if r is not None), None)
        if requested is None:
            return
        iteration = self.trainer.iter
        name = f"model_{iteration:07d}"
        self._checkpointer.save(name)
        comm.synchronize()
        path = os.path.join(self._checkpointer.save_dir, f"{name}.pth")
        raise TrainingInterrupted(
            f"Training interrupted by {signal.Signals(requested).name} after iteration {iteration}; "
            f"checkpoint saved to {path}",
            iteration, path, requested,
        )


class ResumableTensorboardWriter(TensorboardXWriter):
    """detectron2's TensorBoard writer that, on resume, discards the interrupted run's events
    past the resume point (TensorBoard's ``purge_step``), so the curves show one run."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs):
        super().__init__(log_dir, window_size, **kwargs)
        self._log_dir = log_dir
        self._kwargs = kwargs

    def restart_at(self, iteration: int):
        """Reopen the event file so that TensorBoard drops steps >= ``iteration``."""
        from torch.utils.tensorboard import SummaryWriter

        self._writer.close()
        self._writer = SummaryWriter(self._log_dir, purge_step=iteration, **self._kwargs)
        self._last_write = iteration - 1

    def flush(self):
        """Write the queued events to the event file (SummaryWriter otherwise flushes every
        2 minutes; a killed run would lose them)."""
        self._writer.flush()


class OrderedJSONWriter(JSONWriter):
    """detectron2's ``metrics.json`` writer, with each write's lines in iteration order.

    detectron2 0.6's ``JSONWriter`` writes one line per iteration in the order the scalars were
    first logged, not by iteration: when one write holds scalars of two iterations (as the
    last write of an interrupted run can), the later iteration may come first, and
    ``metrics.json`` is then out of order (a resumed run's file read 16, 15, 18, 19). The lines
    and their content are otherwise detectron2's: one JSON object per iteration, the latest
    (smoothed where hinted) value of every scalar not written yet, and ``iteration``. Each
    write is flushed and fsynced.
    """

    def __init__(self, json_file: str, window_size: int = 20):
        super().__init__(json_file, window_size)
        self._json_file = json_file

    def restart_at(self, iteration: int) -> int:
        """Drop the lines at or past ``iteration`` (a resumed run starts there) and a line
        torn by ``kill -9`` (:func:`~cxr_det.engine.run_folder.truncate_metrics`), then
        reopen the file to append. Returns the number of lines dropped."""
        from cxr_det.engine.run_folder import truncate_metrics

        self._file_handle.close()
        try:
            dropped = truncate_metrics(self._json_file, iteration)
        finally:  # the file was replaced: append to the new one
            self._file_handle = open(self._json_file, "a")
        self._last_write = iteration - 1
        return dropped

    def write(self):
        storage = get_event_storage()
        by_iteration = defaultdict(dict)
        for key, (value, iteration) in storage.latest_with_smoothing_hint(self._window_size).items():
            if iteration > self._last_write:
                by_iteration[iteration][key] = value
        for iteration in sorted(by_iteration):
            line = {**by_iteration[iteration], "iteration": iteration}
            self._file_handle.write(json.dumps(line, sort_keys=True) + "\n")
        if by_iteration:
            self._last_write = max(by_iteration)
        self._file_handle.flush()
        try:
            os.fsync(self._file_handle.fileno())
        except (AttributeError, OSError):  # not a real file (e.g. an in-memory stream)
            pass
