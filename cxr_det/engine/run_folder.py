"""One training run per ``OUTPUT_DIR``: its checkpoint, an earlier run set aside, an
interrupted run's metrics cut back.

- :func:`find_checkpoint`: the checkpoint a ``--run`` argument names (a ``.pth`` or a run
  folder: the best, else the final, else the last checkpoint).
- :func:`set_aside_previous_run` moves an earlier run's files aside when a new run starts
  without ``--resume``.
- :func:`truncate_metrics` drops the lines an interrupted run wrote past the checkpoint it is
  resumed from.
"""
import fnmatch
import json
import os
import shutil
import time
from typing import List, Optional

from cxr_det.engine.run import RUN_FILE, RunConfigError

__all__ = [
    "CHECKPOINT_PREFERENCE",
    "RUN_FILE_PATTERNS",
    "find_checkpoint",
    "set_aside_previous_run",
    "truncate_metrics",
]

# A run folder's checkpoint, in order of preference: the best by CXR.TRAIN.BEST_METRIC, the
# final one, then whatever ``last_checkpoint`` names (an interrupted run).
CHECKPOINT_PREFERENCE = ("model_best.pth", "model_final.pth")
# Files of a training run in OUTPUT_DIR (set aside together when a new run starts there).
RUN_FILE_PATTERNS = (
    "model_*.pth", "model_*.json", "last_checkpoint", "metrics.json", "events.out.tfevents.*",
    "clinical_stats.json", RUN_FILE, "config.yaml", "training_*.png", "inference", "log.txt",
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

    Lines without an ``iteration`` and unparseable lines are kept. Returns the number dropped.
    """
    if not os.path.isfile(metrics_file):
        return 0
    kept, dropped = [], 0
    with open(metrics_file) as f:
        for line in f:
            try:
                it = json.loads(line).get("iteration")
            except (json.JSONDecodeError, AttributeError):
                it = None
            if it is not None and int(it) >= start_iter:
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        with open(metrics_file, "w") as f:
            f.writelines(kept)
    return dropped
