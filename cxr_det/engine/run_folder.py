"""One training run per ``OUTPUT_DIR``: its checkpoint, an earlier run set aside, an
interrupted run's metrics cut back.

- :func:`find_checkpoint`: the checkpoint a ``--run`` argument names (a ``.pth`` or a run
  folder: the best, else the final, else the last checkpoint).
- :func:`set_aside_previous_run` moves an earlier run's files aside when a new run starts
  without ``--resume``.
- :func:`truncate_metrics` drops the lines an interrupted run wrote past the checkpoint it is
  resumed from (and a line torn by ``kill -9``).
- :func:`set_aside_past_resume_point` moves aside the checkpoints (the best model, an early
  stop's final model) that a killed run wrote past the checkpoint it is resumed from, and
  :func:`remove_stale_temporary_files` the temporary files of writes it did not finish.
"""
import fnmatch
import json
import logging
import os
import shutil
import time
from typing import List, Optional

import torch

from cxr_det.engine.checkpoint import periodic_checkpoint_iteration
from cxr_det.engine.run import RUN_FILE, RunConfigError
from cxr_det.utils.atomic import atomic_open

__all__ = [
    "CHECKPOINT_PREFERENCE",
    "RUN_FILE_PATTERNS",
    "TEMPORARY_FILE_PATTERN",
    "find_checkpoint",
    "set_aside_previous_run",
    "truncate_metrics",
    "checkpoint_iteration",
    "set_aside_past_resume_point",
    "remove_stale_temporary_files",
]

logger = logging.getLogger(__name__)

# A run folder's checkpoint, in order of preference: the best by CXR.TRAIN.BEST_METRIC, the
# final one, then whatever ``last_checkpoint`` names (an interrupted run).
CHECKPOINT_PREFERENCE = ("model_best.pth", "model_final.pth")
# The temporary file of an unfinished atomic write (cxr_det.utils.atomic): ``.<name>.<random>.tmp``.
TEMPORARY_FILE_PATTERN = ".*.tmp"
# Files of a training run in OUTPUT_DIR (set aside together when a new run starts there).
RUN_FILE_PATTERNS = (
    "model_*.pth", "model_*.json", "last_checkpoint", "metrics.json", "events.out.tfevents.*",
    "clinical_stats.json", RUN_FILE, "config.yaml", "training_*.png", "inference", "log.txt", "log.txt.rank*",
    TEMPORARY_FILE_PATTERN,
)


def find_checkpoint(path: str) -> str:
    """The checkpoint a ``--run`` argument names.

    Args:
        path: a ``.pth`` file, or a training ``OUTPUT_DIR``; in a folder, ``model_best.pth``,
            else ``model_final.pth``, else the file ``last_checkpoint`` names.

    Raises:
        RunConfigError: the path does not exist or the folder holds no checkpoint.
    """
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise RunConfigError(f"--run {path}: no such checkpoint file or run folder")
    for name in CHECKPOINT_PREFERENCE:
        candidate = os.path.join(path, name)
        if os.path.isfile(candidate):
            return candidate
    tag = os.path.join(path, "last_checkpoint")
    if os.path.isfile(tag):
        with open(tag) as f:
            candidate = os.path.join(path, f.read().strip())
        if os.path.isfile(candidate):
            return candidate
    raise RunConfigError(
        f"--run {path}: no checkpoint in this folder (looked for {', '.join(CHECKPOINT_PREFERENCE)} and "
        "last_checkpoint); is it a training OUTPUT_DIR?"
    )


def _run_files(output_dir: str) -> List[str]:
    if not os.path.isdir(output_dir):
        return []
    return sorted(
        name for name in os.listdir(output_dir) if any(fnmatch.fnmatch(name, p) for p in RUN_FILE_PATTERNS)
    )


def set_aside_previous_run(output_dir: str) -> Optional[str]:
    """Move an earlier run's files out of the way before a new run (not ``--resume``) starts.

    Checkpoints, ``last_checkpoint``, ``metrics.json``, TensorBoard events, inference
    outputs, records, curves and ``log.txt`` move to ``output_dir/previous_runs/<YYYYmmdd-HHMMSS>/``
    (call it before the logger opens ``log.txt``), so the new run's log, metrics,
    ``model_final.pth`` and ``--resume`` never mix with the old one's.

    Returns:
        the folder the files went to, or None when there was nothing to move.
    """
    names = _run_files(output_dir)
    if not names:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = os.path.join(output_dir, "previous_runs", stamp)
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(output_dir, "previous_runs", f"{stamp}-{suffix}")
    os.makedirs(target)
    for name in names:
        shutil.move(os.path.join(output_dir, name), os.path.join(target, name))
    return target


def truncate_metrics(metrics_file: str, start_iter: int) -> int:
    """Drop the lines of ``metrics.json`` at or past ``start_iter`` (an interrupted run's tail).

    Lines without an ``iteration`` and unparseable lines are kept, except an unparseable last
    line without its newline: a write that ``kill -9`` cut short, which the resumed run's first
    line would otherwise be glued to. The file is rewritten atomically (a kill during the
    rewrite leaves the old file); a writer holding it open must reopen it. Returns the number
    of lines dropped.
    """
    if not os.path.isfile(metrics_file):
        return 0
    kept, dropped = [], 0
    with open(metrics_file) as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        try:
            it = json.loads(line).get("iteration")
        except (json.JSONDecodeError, AttributeError):
            if i == len(lines) - 1 and not line.endswith("\n"):
                logger.warning(f"{metrics_file}: dropped its last line, cut short by the interrupted run: "
                               f"{line[:80]!r}")
                dropped += 1
                continue
            it = None
        if it is not None and int(it) >= start_iter:
            dropped += 1
        else:
            kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        with atomic_open(metrics_file, "w") as f:
            f.writelines(kept)
    return dropped


def checkpoint_iteration(path: str) -> Optional[int]:
    """The training iteration a checkpoint was saved at, or None when it cannot be read.

    From the name of a periodic checkpoint (``model_0000029.pth``), else from its JSON
    record beside it (``model_best.json``'s ``iteration``), else from the file
    (``iteration``, or the trainer state's).
    """
    it = periodic_checkpoint_iteration(path)
    if it is not None:
        return it
    record = os.path.splitext(path)[0] + ".json"
    if os.path.isfile(record):
        try:
            with open(record) as f:
                return int(json.load(f)["iteration"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any unreadable file is reported as such
        return None
    if not isinstance(data, dict):
        return None
    it = data.get("iteration", (data.get("trainer") or {}).get("iteration"))
    return int(it) if it is not None else None


def set_aside_past_resume_point(output_dir: str, start_iter: int, resumed_from: str = "") -> Optional[str]:
    """Move the checkpoints that an interrupted run wrote at or past ``start_iter`` (the
    iteration the resumed run starts at), and unreadable ones, out of the way.

    A killed run can leave a best model (``model_best.pth`` / ``.json``) or an early stop's
    ``model_final.pth`` from the iterations the resumed run trains again; left there they
    would outrank the resumed run's own (``--run`` prefers ``model_best.pth``). They move
    with their ``.json`` records to ``output_dir/previous_runs/<YYYYmmdd-HHMMSS>-past-<N>/``
    (N = ``start_iter - 1``, the resume point); ``resumed_from`` stays.

    Returns:
        the folder they went to, or None when there was nothing to move.
    """
    if not os.path.isdir(output_dir):
        return None
    keep = os.path.abspath(resumed_from) if resumed_from else ""
    moving = []
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if not (fnmatch.fnmatch(name, "model_*.pth") and os.path.isfile(path)) or os.path.abspath(path) == keep:
            continue
        it = checkpoint_iteration(path)
        if it is None or it >= start_iter:
            moving.append(name)
            record = os.path.splitext(name)[0] + ".json"
            if os.path.isfile(os.path.join(output_dir, record)):
                moving.append(record)
    if not moving:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = os.path.join(output_dir, "previous_runs", f"{stamp}-past-{start_iter - 1}")
    suffix = 1
    while os.path.exists(target):
        suffix += 1
        target = os.path.join(output_dir, "previous_runs", f"{stamp}-past-{start_iter - 1}-{suffix}")
    os.makedirs(target)
    for name in moving:
        shutil.move(os.path.join(output_dir, name), os.path.join(target, name))
    return target


def remove_stale_temporary_files(output_dir: str) -> List[str]:
    """Delete the temporary files of atomic writes that a killed process left in
    ``output_dir`` and its ``inference/`` folder (``.<name>.<random>.tmp``: never a file a
    reader takes for the output). Call it only where no other process writes there (one
    run per ``OUTPUT_DIR``). Returns the paths removed."""
    removed = []
    folders = [output_dir]
    inference = os.path.join(output_dir, "inference")
    if os.path.isdir(inference):
        folders += [root for root, _, _ in os.walk(inference)]
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = os.path.join(folder, name)
            if fnmatch.fnmatch(name, TEMPORARY_FILE_PATTERN) and os.path.isfile(path):
                os.unlink(path)
                removed.append(path)
    return removed
