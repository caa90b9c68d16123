"""Grid searches over config overrides: expand a sweep file, run every point as its own
``tools/train_net.py`` process (here, or as a submitit job array on SLURM), resume what did
not finish, and collect the metrics into one table and plot (``tools/sweep.py``).

A sweep file is YAML with these keys (:data:`SWEEP_KEYS`; example
``configs/sweeps/demo_clinical_lr_fusion.yaml``)::

    config: configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml  # required
    output_dir: output/sweeps/demo_lr_fusion   # default output/sweeps/<file stem>
    overrides: {SOLVER.MAX_ITER: 300}          # KEY: value, for every run
    grid:                                      # KEY: [values]; the runs are the cartesian product
      SOLVER.BASE_LR: [0.01, 0.02]
      CXR.FUSION.SPATIAL: [none, film]
      SEED: [0, 1]
    metrics: [bbox/AP50, froc/CPM]             # default: the config's CXR.TRAIN.BEST_METRIC
    num_gpus: 1                                # train_net --num-gpus (default slurm gpus_per_node, else 1)
    slurm: {partition: gpu, gpus_per_node: 1, cpus_per_task: 8, mem_gb: 32, timeout_min: 240}

Relative paths are relative to the working directory (as ``train_net --config-file``).
Each run's name is made from its grid values (``BASE_LR=0.01,SPATIAL=none,SEED=0``: the
shortest unique tail of each key), so it does not depend on the order of the runs or on
values added to the grid later; its ``OUTPUT_DIR`` is ``<output_dir>/<name>``. Every key
is checked against the config (detectron2's and cxr_det's keys) by merging each run's
overrides into the base config before any run starts (:func:`load_sweep`).

A run is finished when its folder holds ``model_final.pth`` and the evaluation of every
``DATASETS.TEST`` (``inference/<dataset>/metrics.json``); finished runs are skipped, runs
with a checkpoint (``last_checkpoint``) are continued with ``--resume``, the others start
afresh. Each run's folder also gets ``sweep_run.json`` (its overrides, command, attempts,
status, exit code) and ``sweep_job.log`` (the process's output). On SLURM,
:class:`TrainJob` is requeued by submitit when the job reaches its time limit or is
pre-empted: it asks training to save a checkpoint (SIGTERM, see
:mod:`cxr_det.engine.interrupt`) and the requeued job resumes from it.

:func:`collect` reads every run's final metrics (:func:`read_run_metrics`) and
:func:`write_results` writes ``results.csv`` (all scalar metrics), ``results.md`` (the
chosen metrics, and their mean per value of each grid axis) and ``results.png`` (each
chosen metric against each axis) into ``output_dir``.
"""
import difflib
import hashlib
import io
import itertools
import json
import logging
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd
import submitit
import yaml
from detectron2.config import CfgNode

from cxr_det.config import get_cxr_cfg
from cxr_det.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "SWEEP_KEYS",
    "Sweep",
    "SweepRun",
    "SweepConfigError",
    "TrainJob",
    "load_sweep",
    "parse_sweep",
    "expand_grid",
    "run_names",
    "command_value",
    "check_runs",
    "check_records",
    "submitit_parameters",
    "run_state",
    "run_status",
    "train_command",
    "run_training",
    "run_local",
    "write_plan",
    "submit",
    "read_run_metrics",
    "collect",
    "write_results",
]

logger = logging.getLogger(__name__)

SWEEP_KEYS = ("config", "output_dir", "overrides", "grid", "metrics", "num_gpus", "slurm")
RUN_RECORD_FILE = "sweep_run.json"
RUN_LOG_FILE = "sweep_job.log"
SWEEP_FILE = "sweep.json"
RESULTS_CSV, RESULTS_MD, RESULTS_PNG = "results.csv", "results.md", "results.png"
# The one run of a sweep without a grid (a single job submitted through the sweep tool).
SINGLE_RUN_NAME = "run"
# Longer names are cut and given a hash of the whole (file names are limited to 255 bytes).
MAX_NAME_LENGTH = 150
# train_net's exit codes after a SIGINT / SIGTERM that saved a checkpoint (interrupt.EXIT_CODES).
INTERRUPTED_EXIT_CODES = (130, 143)
# submitit's local executor stops a job after timeout_min (2 minutes unless given).
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
# Seconds a training process gets to save its checkpoint after SIGTERM before a requeue
# (submitit signals 90 s before the SLURM time limit by default).
STOP_TIMEOUT_S = 80


class SweepConfigError(ValueError):
    """A sweep file that cannot be run: unknown or mistyped keys, config keys the config
    lacks, values that do not fit, or a sweep folder holding runs made with other settings."""


@dataclass(frozen=True)
class SweepRun:
    """One point of the grid.

    ``values``: {grid key: value as written in the sweep file}, in grid order; ``opts``: the
    ``KEY VALUE`` overrides passed to ``train_net`` (fixed overrides, then the grid values;
    ``OUTPUT_DIR`` is added by :func:`train_command`); ``test_datasets``: the run's
    ``DATASETS.TEST`` (whose evaluations make it finished); ``best_metric``: its
    ``CXR.TRAIN.BEST_METRIC``.
    """

    name: str
    values: Dict[str, Any]
    opts: Tuple[str, ...]
    output_dir: str
    test_datasets: Tuple[str, ...] = ()
    best_metric: str = ""


@dataclass
class Sweep:
    """A parsed, checked sweep file (:func:`load_sweep`); paths are absolute."""

    source: str
    config: str
    output_dir: str
    overrides: Dict[str, Any]
    grid: Dict[str, List[Any]]
    metrics: List[str]
    num_gpus: int
    slurm: Dict[str, Any]
    runs: List[SweepRun] = field(default_factory=list)


# ----------------------------------------------------------------------------- the sweep file


def load_sweep(path, output_dir: Optional[str] = None, check: bool = True) -> Sweep:
    """Read, expand and check a sweep file (module docstring).

    Args:
        path: the YAML file.
        output_dir: replaces the file's ``output_dir``.
        check: merge every run's overrides into the base config (default); False skips it
            (collection of a finished sweep needs no config check).

    Raises:
        SweepConfigError: naming the file and the key at fault (see :func:`parse_sweep`).
    """
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"{path}: sweep file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepConfigError(f"{path}: not valid YAML: {e}") from e
    return parse_sweep(data, str(path), output_dir=output_dir, check=check)


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _mapping(data, key: str, source: str) -> Dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise SweepConfigError(f"{source}: {key} must be a mapping of config KEY: value, got {type(value).__name__}")
    for k in value:
        if not isinstance(k, str) or not k:
            raise SweepConfigError(f"{source}: {key}: config keys are dotted names like SOLVER.BASE_LR, got {k!r}")
        if k == "OUTPUT_DIR":
            raise SweepConfigError(f"{source}: {key}: OUTPUT_DIR is set by the sweep (<output_dir>/<run name>); "
                                   "set the sweep's output_dir instead")
    return value


def parse_sweep(data, source: str = "<sweep>", output_dir: Optional[str] = None, check: bool = True) -> Sweep:
    """A :class:`Sweep` from the sweep file's content (a dict), with its runs.

    Raises:
        SweepConfigError: not a mapping; an unknown key (named, with the closest known one);
            no ``config`` or a config file not found; a grid entry that is not a non-empty
            list of distinct values; a key both fixed and in the grid; ``OUTPUT_DIR`` set;
            a value that cannot be passed on a command line (a mapping); ``num_gpus`` not a
            positive integer; an invalid ``slurm`` parameter (:func:`submitit_parameters`);
            two runs with the same name; with ``check``, a config key the config lacks or a
            value of the wrong type (:func:`check_runs`), or runs in ``output_dir`` made
            with other overrides.
    """
    if not isinstance(data, dict):
        raise SweepConfigError(f"{source}: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        raise SweepConfigError(
            f"{source}: unknown key {unknown[0]!r}{_suggest(str(unknown[0]), SWEEP_KEYS)}; "
            f"a sweep file has {', '.join(SWEEP_KEYS)}")
    if not data.get("config"):
        raise SweepConfigError(f"{source}: config (the base config file of every run) is required")
    config = Path(str(data["config"])).expanduser()
    if not config.is_file():
        raise SweepConfigError(f"{source}: config {config}: file not found (relative paths are relative to the "
                               f"working directory, {os.getcwd()})")
    overrides = _mapping(data, "overrides", source)
    grid = _mapping(data, "grid", source)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"{source}: grid {key}: give a non-empty list of values, e.g. [0.01, 0.02] "
                                   f"(got {values!r}; a value for every run goes under overrides)")
        if len({command_value(v) for v in values}) < len(values):
            raise SweepConfigError(f"{source}: grid {key}: the values {values!r} repeat one")
    both = sorted(set(overrides) & set(grid))
    if both:
        raise SweepConfigError(f"{source}: {', '.join(both)} both in overrides and in grid; keep it in one")
    for key, value in overrides.items():
        command_value(value, f"{source}: overrides {key}")
    for key, values in grid.items():
        for value in values:
            command_value(value, f"{source}: grid {key}")
    metrics = data.get("metrics") or []
    metrics = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m for m in metrics):
        raise SweepConfigError(f"{source}: metrics must be a list of metric names like bbox/AP50, got {metrics!r}")
    slurm = data.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise SweepConfigError(f"{source}: slurm must be a mapping of submitit parameters, got {slurm!r}")
    submitit_parameters(slurm, "slurm", source)
    num_gpus = data.get("num_gpus", slurm.get("gpus_per_node", 1) or 1)
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise SweepConfigError(f"{source}: num_gpus must be a positive integer, got {num_gpus!r}")
    if slurm.get("gpus_per_node") and slurm["gpus_per_node"] != num_gpus:
        raise SweepConfigError(f"{source}: num_gpus {num_gpus} differs from slurm gpus_per_node "
                               f"{slurm['gpus_per_node']}: each run uses the GPUs of its node")
    out = Path(output_dir or data.get("output_dir") or Path("output/sweeps") / Path(source).stem).expanduser()

    points = expand_grid(grid)
    names = run_names(points)
    fixed = [w for key, value in overrides.items() for w in (key, command_value(value))]
    runs = [
        SweepRun(name=name, values=dict(point),
                 opts=tuple(fixed + [w for key, value in point.items() for w in (key, command_value(value))]),
                 output_dir=str((out / name).absolute()))
        for name, point in zip(names, points)
    ]
    sweep = Sweep(source=str(source), config=str(config.absolute()), output_dir=str(out.absolute()),
                  overrides=dict(overrides), grid={k: list(v) for k, v in grid.items()}, metrics=list(metrics),
                  num_gpus=num_gpus, slurm=dict(slurm), runs=runs)
    if check:
        sweep.runs = check_runs(sweep)
        check_records(sweep)
    if not sweep.metrics:
        sweep.metrics = list(dict.fromkeys(r.best_metric for r in sweep.runs if r.best_metric))
    return sweep


def expand_grid(grid: Dict[str, Sequence[Any]]) -> List[Dict[str, Any]]:
    """The cartesian product of ``grid`` ({key: [values]}) as a list of {key: value}, the first
    key varying slowest (:func:`itertools.product` order); an empty grid gives one empty point."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _short_keys(keys: Sequence[str]) -> Dict[str, str]:
    """{dotted key: its shortest tail of components that no other key ends with}."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != key and (other == tail or other.endswith("." + tail)) for other in keys):
                break
        short[key] = tail
    return short


def _name_value(value) -> str:
    if isinstance(value, (list, tuple)):
        text = "-".join(_name_value(v) for v in value)
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "empty"


def run_names(points: Sequence[Dict[str, Any]]) -> List[str]:
    """Folder names for grid points: ``KEY=value`` for each grid key joined by ``,``, the
    key shortened to its shortest unique tail (``SOLVER.BASE_LR`` -> ``BASE_LR``) and the
    value to letters, digits and ``._+-``; names over :data:`MAX_NAME_LENGTH` characters
    are cut and end in a hash of the whole. One point without keys is :data:`SINGLE_RUN_NAME`.

    Raises:
        SweepConfigError: two points give the same name (values that differ only in
            characters a folder name drops).
    """
    keys = list(points[0]) if points else []
    short = _short_keys(keys)
    names = []
    for point in points:
        name = ",".join(f"{short[k]}={_name_value(point[k])}" for k in keys) or SINGLE_RUN_NAME
        if len(name) > MAX_NAME_LENGTH:
            name = name[: MAX_NAME_LENGTH - 11] + "-" + hashlib.md5(name.encode()).hexdigest()[:10]
        names.append(name)
    seen = {}
    for name, point in zip(names, points):
        if name in seen:
            raise SweepConfigError(f"grid points {seen[name]} and {point} get the same run name {name!r}; "
                                   "make their values differ in letters or digits")
        seen[name] = point
    return names


def command_value(value, where: str = "value") -> str:
    """``value`` (from YAML) as the ``VALUE`` word of a ``KEY VALUE`` override, which yacs
    reads back with :func:`ast.literal_eval` (a string that is no Python literal stays a
    string): booleans ``True``/``False``, numbers by ``repr``, lists and tuples as Python
    literals (``[640, 800]``, ``['p3', 'p4']``), ``None``; strings unchanged.

    Raises:
        SweepConfigError: a mapping or another type no config value has (``where`` names it).
    """
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        for v in value:
            if not (v is None or isinstance(v, (bool, int, float, str, list, tuple))):
                raise SweepConfigError(f"{where}: {value!r} holds {v!r}, which no config value can")
        return repr(list(value))
    raise SweepConfigError(f"{where}: {value!r} ({type(value).__name__}) cannot be a config value")


def _missing_key(cfg: CfgNode, key: str) -> Optional[str]:
    """None when ``key`` exists in ``cfg``; else the message naming the first missing part."""
    node, done = cfg, []
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            here = ".".join(done) or "the config's top level"
            choices = list(node.keys()) if isinstance(node, CfgNode) else []
            return f"{key}: {here} has no key {part!r}{_suggest(part, choices)}"
        node, done = node[part], done + [part]
    return None


def check_runs(sweep: Sweep) -> List[SweepRun]:
    """Every override key exists in the base config, and every run's overrides merge into it.

    Returns the runs with ``test_datasets`` and ``best_metric`` read from their merged configs.

    Raises:
        SweepConfigError: the base config cannot be read; a key of ``overrides`` or ``grid``
            the config (detectron2's keys plus cxr_det's) lacks, named with the closest
            existing key; a run whose values do not merge (a type mismatch), named.
    """
    try:
        base = get_cxr_cfg(sweep.config)
    except Exception as e:  # noqa: BLE001 - any failure to read the base config is reported with its path
        raise SweepConfigError(f"{sweep.source}: config {sweep.config} cannot be read: {type(e).__name__}: {e}") from e
    for where, keys in (("overrides", sweep.overrides), ("grid", sweep.grid)):
        for key in keys:
            missing = _missing_key(base, key)
            if missing:
                raise SweepConfigError(f"{sweep.source}: {where} {missing} (config {sweep.config})")
    checked = []
    for run in sweep.runs:
        cfg = base.clone()
        try:
            cfg.merge_from_list(list(run.opts))
        except Exception as e:  # noqa: BLE001 - yacs raises KeyError/ValueError/AssertionError; named here
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise SweepConfigError(f"{sweep.source}: run {run.name}: its overrides do not fit the config "
                                   f"{sweep.config}: {message}") from e
        checked.append(SweepRun(run.name, run.values, run.opts, run.output_dir,
                                tuple(cfg.DATASETS.TEST), str(cfg.CXR.TRAIN.BEST_METRIC)))
    return checked


def check_records(sweep: Sweep):
    """Refuse a sweep folder whose runs were made with other overrides than the file now gives.

    Raises:
        SweepConfigError: listing the runs (up to 5) and the overrides recorded for them.
    """
    changed = []
    for run in sweep.runs:
        record = _read_json(Path(run.output_dir) / RUN_RECORD_FILE)
        if record is not None and list(record.get("opts", [])) != list(run.opts):
            changed.append(f"{run.name} (recorded {' '.join(record.get('opts', []))}; now {' '.join(run.opts)})")
    if changed:
        raise SweepConfigError(
            f"{sweep.source}: {len(changed)} run folder(s) in {sweep.output_dir} were made with other overrides: "
            + "; ".join(changed[:5]) + ("; ..." if len(changed) > 5 else "")
            + ". Use another output_dir (or --output-dir) for the changed sweep, or remove those folders")


def submitit_parameters(slurm: Dict[str, Any], cluster: str, source: str = "<sweep>") -> Dict[str, Any]:
    """The sweep file's ``slurm`` mapping as :meth:`submitit.AutoExecutor.update_parameters` keywords.

    submitit's generic names pass as they are (``timeout_min``, ``mem_gb``,
    ``cpus_per_task``, ``gpus_per_node``, ``name``, ...); SLURM's own parameters
    (``partition``, ``account``, ``qos``, ``constraint``, ``array_parallelism``,
    ``additional_parameters``, ... as :class:`submitit.SlurmExecutor` names them) get the
    ``slurm_`` prefix (also accepted already prefixed). On submitit's ``local`` cluster the
    SLURM-only ones are ignored by submitit, and ``timeout_min`` defaults to a week.

    Raises:
        SweepConfigError: an unknown parameter (named, with the valid ones); ``nodes`` or
            ``tasks_per_node`` other than 1 (each run is one ``train_net`` process that starts
            one process per GPU of its node).
    """
    generic = set(submitit.AutoExecutor._typed_parameters())
    specific = set(submitit.SlurmExecutor._valid_parameters())
    params = {}
    for key, value in slurm.items():
        bare = key[len("slurm_"):] if isinstance(key, str) and key.startswith("slurm_") else key
        if key in generic:
            params[key] = value
        elif bare in specific:
            params[f"slurm_{bare}"] = value
        else:
            raise SweepConfigError(
                f"{source}: slurm: unknown parameter {key!r}{_suggest(str(key), sorted(generic | specific))}; "
                f"submitit's are {', '.join(sorted(generic))} and SLURM's {', '.join(sorted(specific))}")
    for key in ("nodes", "tasks_per_node"):
        if params.get(key, 1) != 1:
            raise SweepConfigError(
                f"{source}: slurm: {key} {params[key]}: a run is one train_net process per node that starts one "
                "process per GPU (num_gpus); multi-node runs are launched with train_net --num-machines (README)")
    if cluster != "slurm":
        params.setdefault("timeout_min", LOCAL_TIMEOUT_MIN)
    return params


# ----------------------------------------------------------------------------- a run's state


def _read_json(path: Path) -> Optional[dict]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _checkpoint(output_dir: Path) -> Optional[Path]:
    """The checkpoint ``last_checkpoint`` names, if it exists (what ``--resume`` loads)."""
    try:
        name = (output_dir / "last_checkpoint").read_text().strip()
    except OSError:
        return None
    path = output_dir / name
    return path if name and path.is_file() else None


def _finished(run: SweepRun) -> bool:
    out = Path(run.output_dir)
    if not (out / "model_final.pth").is_file():
        return False
    return all(_read_json(out / "inference" / ds / "metrics.json") is not None for ds in run.test_datasets)


def run_state(run: SweepRun) -> str:
    """What the sweep does with ``run``: ``"finished"`` (``model_final.pth`` and the evaluation
    of every test dataset present: skipped), ``"resume"`` (a checkpoint: ``--resume``) or
    ``"start"``."""
    if _finished(run):
        return "finished"
    return "resume" if _checkpoint(Path(run.output_dir)) else "start"


def run_status(run: SweepRun) -> str:
    """For the results table: ``finished``, else the last attempt's recorded status
    (``failed``, ``interrupted``, ``running`` (or killed)), else ``not started``."""
    if _finished(run):
        return "finished"
    record = _read_json(Path(run.output_dir) / RUN_RECORD_FILE)
    if record is None:
        return "not started"
    status = record.get("status", "unknown")
    return "running (or killed)" if status == "running" else status


def train_command(run: SweepRun, base_command: Sequence[str], config: str, num_gpus: int = 1,
                  resume: bool = False) -> List[str]:
    """``base_command`` (e.g. ``[python, tools/train_net.py]``) with ``--config-file``,
    ``--resume``, ``--num-gpus`` and the run's overrides, ``OUTPUT_DIR`` last."""
    flags = ["--config-file", config] + (["--resume"] if resume else [])
    if num_gpus != 1:
        flags += ["--num-gpus", str(num_gpus)]
    return [str(w) for w in base_command] + flags + list(run.opts) + ["OUTPUT_DIR", run.output_dir]


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def run_training(run: SweepRun, base_command: Sequence[str], config: str, num_gpus: int = 1,
                 on_start: Optional[Callable[[subprocess.Popen], None]] = None,
                 wait: Optional[Callable[[subprocess.Popen], int]] = None) -> Dict[str, Any]:
    """Train ``run`` in a child process unless it is finished; resume it if it has a checkpoint.

    The child (:func:`train_command`) runs in its own session, so signals reach it only when
    forwarded (:func:`run_local`, :meth:`TrainJob.checkpoint`), once; its output is appended
    to ``<OUTPUT_DIR>/sweep_job.log``. ``<OUTPUT_DIR>/sweep_run.json`` records the attempt
    (atomically) before it starts and its outcome after.

    Args:
        on_start: called with the child process once started.
        wait: waits for the child and returns its exit status (default ``Popen.wait``).

    Returns:
        {name, status: finished | failed | interrupted | skipped, returncode, resumed,
        seconds, log}; ``interrupted`` when train_net stopped on a signal after saving a
        checkpoint (exit 130/143) or was killed by one.
    """
    out = Path(run.output_dir)
    log_path = out / RUN_LOG_FILE
    state = run_state(run)
    if state == "finished":
        return {"name": run.name, "status": "skipped", "returncode": 0, "resumed": False, "seconds": 0.0,
                "log": str(log_path)}
    resume = state == "resume"
    command = train_command(run, base_command, config, num_gpus, resume)
    out.mkdir(parents=True, exist_ok=True)
    record = _read_json(out / RUN_RECORD_FILE) or {}
    for stale in ("returncode", "ended", "seconds"):
        record.pop(stale, None)
    record.update(name=run.name, values=run.values, opts=list(run.opts), config=config, command=command,
                  status="running", resumed=resume, attempts=int(record.get("attempts", 0)) + 1,
                  started=time.strftime("%Y-%m-%d %H:%M:%S"), host=socket.gethostname())
    atomic_write_json(out / RUN_RECORD_FILE, record, indent=2)
    start = time.monotonic()
    with open(log_path, "a") as log:
        log.write(f"\n===== {record['started']} attempt {record['attempts']} on {record['host']}: "
                  f"{shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if on_start is not None:
            on_start(process)
        returncode = wait(process) if wait is not None else process.wait()
    seconds = time.monotonic() - start
    if returncode == 0:
        status = "finished"
    elif returncode in INTERRUPTED_EXIT_CODES or returncode < 0:
        status = "interrupted"
    else:
        status = "failed"
    record.update(status=status, returncode=returncode, ended=time.strftime("%Y-%m-%d %H:%M:%S"),
                  seconds=round(seconds, 1))
    atomic_write_json(out / RUN_RECORD_FILE, record, indent=2)
    return {"name": run.name, "status": status, "returncode": returncode, "resumed": resume,
            "seconds": seconds, "log": str(log_path)}


# ----------------------------------------------------------------------------- running here


class _Children:
    """The training processes of a local sweep, and the signals forwarded to them.

    SIGINT / SIGTERM to the sweep are forwarded to every running child (which saves a
    checkpoint and exits 130 / 143; a second signal ends it at once, as train_net does) and
    no further run starts.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.running = set()
        self.stop_signal = None
        self._previous = {}

    def add(self, process):
        with self.lock:
            self.running.add(process)
            stop = self.stop_signal
        if stop is not None:
            process.send_signal(stop)

    def wait(self, process) -> int:
        try:
            return process.wait()
        finally:
            with self.lock:
                self.running.discard(process)

    def _forward(self, signum, frame):
        with self.lock:
            self.stop_signal = signum
            running = list(self.running)
        logger.warning(f"{signal.Signals(signum).name}: passed to {len(running)} running training process(es), "
                       "which save a checkpoint and stop; no further run starts (the next sweep resumes them)")
        for process in running:
            if process.poll() is None:
                process.send_signal(signum)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _plan_line(state: str) -> str:
    return {"finished": "finished, skipped", "resume": "continues from its checkpoint (--resume)",
            "start": "starts"}[state]


def run_local(sweep: Sweep, base_command: Sequence[str], parallel: int = 1) -> List[Dict[str, Any]]:
    """Run every unfinished run of ``sweep`` here, ``parallel`` at a time, in grid order.

    Finished runs are skipped, runs with a checkpoint resumed (:func:`run_state`); a failed
    run does not stop the others. SIGINT / SIGTERM stop the sweep after the running runs
    have saved a checkpoint (:class:`_Children`). Returns the outcome of every run
    (:func:`run_training`; never-started runs after a stop: status ``not started``).
    """
    if parallel < 1:
        raise ValueError(f"run_local: parallel must be >= 1, got {parallel}")
    write_plan(sweep)
    total = len(sweep.runs)

    def one(index_run):
        index, run = index_run
        if children.stop_signal is not None:
            return {"name": run.name, "status": "not started", "returncode": None, "resumed": False,
                    "seconds": 0.0, "log": ""}
        state = run_state(run)
        logger.info(f"[{index}/{total}] {run.name}: {_plan_line(state)}")
        outcome = run_training(run, base_command, sweep.config, sweep.num_gpus, on_start=children.add,
                               wait=children.wait)
        if outcome["status"] == "finished":
            logger.info(f"[{index}/{total}] {run.name}: finished in {outcome['seconds']:.0f} s")
        elif outcome["status"] != "skipped":
            logger.warning(f"[{index}/{total}] {run.name}: {outcome['status']} (exit {outcome['returncode']}); "
                           f"the end of {outcome['log']}:\n{_log_tail(Path(outcome['log']))}")
        return outcome

    with _Children() as children:
        if parallel == 1:
            outcomes = [one(item) for item in enumerate(sweep.runs, 1)]
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                outcomes = list(pool.map(one, enumerate(sweep.runs, 1)))
    _log_outcomes(outcomes)
    return outcomes


def _log_outcomes(outcomes):
    counts = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    logger.info("sweep: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))


def write_plan(sweep: Sweep) -> str:
    """``<output_dir>/sweep.json``: the sweep's config, overrides, grid and runs (name,
    values, overrides, folder), written atomically; returns its path."""
    plan = {
        "source": sweep.source, "config": sweep.config, "overrides": sweep.overrides, "grid": sweep.grid,
        "metrics": sweep.metrics, "num_gpus": sweep.num_gpus, "slurm": sweep.slurm,
        "runs": [{"name": r.name, "values": r.values, "opts": list(r.opts), "output_dir": r.output_dir}
                 for r in sweep.runs],
    }
    return atomic_write_json(Path(sweep.output_dir) / SWEEP_FILE, plan, indent=2)


# ----------------------------------------------------------------------------- submitit


class TrainJob(submitit.helpers.Checkpointable):
    """The function a submitit job runs for one run: :func:`run_training` in the job.

    Pickled by submitit (the training process itself is not). When SLURM's time limit
    nears or the job is pre-empted, submitit calls :meth:`checkpoint`: the training process
    gets SIGTERM, saves a checkpoint and exits (up to ``stop_timeout_s``), and the job is
    requeued with the same run, which then resumes from that checkpoint.

    Raises (in the job, so that submitit and SLURM mark it failed):
        RuntimeError: the training process failed or was interrupted, naming its log.
    """

    def __init__(self, base_command: Sequence[str], config: str, num_gpus: int = 1,
                 stop_timeout_s: float = STOP_TIMEOUT_S):
        self.base_command = [str(w) for w in base_command]
        self.config = config
        self.num_gpus = num_gpus
        self.stop_timeout_s = stop_timeout_s
        self._process = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_process"] = None
        return state

    def _started(self, process):
        self._process = process

    def __call__(self, run: SweepRun) -> Dict[str, Any]:
        outcome = run_training(run, self.base_command, self.config, self.num_gpus, on_start=self._started)
        self._process = None
        if outcome["status"] not in ("finished", "skipped"):
            raise RuntimeError(f"run {run.name} {outcome['status']} (exit {outcome['returncode']}); see {outcome['log']}:\n"
                               + _log_tail(Path(outcome["log"])))
        return outcome

    def checkpoint(self, run: SweepRun) -> submitit.helpers.DelayedSubmission:
        """Ask the running training process to save a checkpoint and stop, then requeue ``run``."""
        process = self._process
        if process is not None and process.poll() is None:
            logger.warning(f"run {run.name}: job stopping; asking training (pid {process.pid}) to save a checkpoint")
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(f"run {run.name}: no exit within {self.stop_timeout_s} s of SIGTERM")
        return submitit.helpers.DelayedSubmission(self, run)


def submit(sweep: Sweep, base_command: Sequence[str], cluster: str = "slurm", wait: bool = True,
           poll_seconds: float = 30.0) -> List[Dict[str, Any]]:
    """Submit the unfinished runs of ``sweep`` as one submitit job array (:class:`TrainJob`).

    Args:
        cluster: submitit's ``"slurm"``; ``"local"`` (submitit's LocalExecutor: the same
            jobs as processes of this machine) and ``"debug"`` (in this process) for tests.
        wait: wait for the jobs and return their outcomes; False returns after submission.
        poll_seconds: how often the jobs' states are read while waiting.

    Job files and logs go to ``<output_dir>/submitit/<job id>/``. Returns one dict per
    submitted run: {name, job_id, status (submitted | finished | skipped | failed), ...}.

    Raises:
        SweepConfigError: an invalid ``slurm`` parameter.
        RuntimeError: (submitit) ``"slurm"`` on a machine without SLURM's commands.
    """
    pending = [run for run in sweep.runs if run_state(run) != "finished"]
    if not pending:
        logger.info(f"sweep: all {len(sweep.runs)} runs finished; nothing to submit")
        return []
    executor = submitit.AutoExecutor(folder=Path(sweep.output_dir) / "submitit" / "%j", cluster=cluster)
    write_plan(sweep)
    params = submitit_parameters(sweep.slurm, cluster, sweep.source)
    params.setdefault("name", f"sweep-{Path(sweep.output_dir).name}")
    if sweep.num_gpus > 1:
        params.setdefault("gpus_per_node", sweep.num_gpus)
    executor.update_parameters(**params)
    jobs = executor.map_array(TrainJob(base_command, sweep.config, sweep.num_gpus), pending)
    by_id = {job.job_id: run for job, run in zip(jobs, pending)}
    for job, run in zip(jobs, pending):
        logger.info(f"{run.name}: job {job.job_id} ({_plan_line(run_state(run))})")
    if not wait:
        return [{"name": run.name, "job_id": job.job_id, "status": "submitted"} for job, run in zip(jobs, pending)]
    outcomes = []
    for job in submitit.helpers.as_completed(jobs, poll_frequency=poll_seconds):
        run = by_id[job.job_id]
        try:
            outcome = dict(job.result())
        except Exception as e:  # noqa: BLE001 - a failed job is reported and the others collected
            logger.debug(f"{run.name}: job {job.job_id}: {e}")
            logger.warning(f"{run.name}: job {job.job_id} failed (run {run_status(run)}); the training output is in "
                           f"{Path(run.output_dir) / RUN_LOG_FILE}, submitit's logs in {job.paths.stdout.parent}")
            record = _read_json(Path(run.output_dir) / RUN_RECORD_FILE) or {}
            outcome = {"name": run.name, "status": "failed", "returncode": record.get("returncode")}
        outcome["job_id"] = job.job_id
        outcomes.append(outcome)
    _log_outcomes(outcomes)
    return outcomes


# ----------------------------------------------------------------------------- collection


def _flatten(results, prefix: str = "") -> Dict[str, float]:
    """Nested result dicts as {"a/b/c": number}; None (JSON's NaN) -> NaN; other leaves dropped."""
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        elif value is None:
            flat[name] = math.nan
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def read_run_metrics(output_dir, test_datasets: Sequence[str], wanted: Sequence[str] = ()) -> Dict[str, float]:
    """A run's final metrics: {name: value}, named as detectron2's ``EvalHook`` logs them.

    From ``<output_dir>/inference/<dataset>/metrics.json`` (``results`` flattened with
    ``/``: ``bbox/AP50``, ``froc/CPM``; a classification evaluator's flat results (its file
    has ``task`` and ``threshold_rule``) under ``classification/``, where its ``evaluate``
    returns them: ``classification/mAUC``; prefixed ``<dataset>/`` with several test datasets);
    a name of ``wanted`` not found there is taken from the last line of
    ``<output_dir>/metrics.json`` that holds it (e.g. a classifier's ``classification/mAUC``).
    Unreadable files count as absent; ``None`` values are NaN.
    """
    out = Path(output_dir)
    metrics = {}
    for ds in test_datasets:
        data = _read_json(out / "inference" / ds / "metrics.json")
        if data is None or not isinstance(data.get("results"), dict):
            continue
        prefix = f"{ds}/" if len(test_datasets) > 1 else ""
        if "task" in data and "threshold_rule" in data:
            prefix += "classification/"
        metrics.update(_flatten(data["results"], prefix))
    missing = [name for name in wanted if name not in metrics]
    if missing and (out / "metrics.json").is_file():
        with open(out / "metrics.json", errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(entry, dict):
                    continue
                for name in missing:
                    value = entry.get(name)
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        metrics[name] = float(value)
    return metrics


def _display(value) -> Any:
    return repr(list(value)) if isinstance(value, (list, tuple)) else value


def collect(sweep: Sweep) -> pd.DataFrame:
    """One row per run: ``run``, ``status`` (:func:`run_status`), the grid values (one column
    per grid key), then every metric found (:func:`read_run_metrics`), the sweep's chosen
    ``metrics`` first. Metrics a run lacks are NaN; chosen metrics no run has are warned
    about, with the names that exist."""
    rows, found = [], {}
    for run in sweep.runs:
        row = {"run": run.name, "status": run_status(run)}
        row.update({k: _display(v) for k, v in run.values.items()})
        metrics = read_run_metrics(run.output_dir, run.test_datasets, sweep.metrics)
        found.update(dict.fromkeys(metrics))
        row.update(metrics)
        rows.append(row)
    absent = [m for m in sweep.metrics if m not in found]
    if absent and found:
        logger.warning(f"metrics {absent} are in no run's results; e.g. "
                       + ", ".join(n for m in absent for n in difflib.get_close_matches(m, list(found), n=3))
                       + f" ({len(found)} names found)")
    columns = ["run", "status", *sweep.grid, *sweep.metrics,
               *sorted(m for m in found if m not in sweep.metrics)]
    return pd.DataFrame(rows, columns=columns)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v):
        return _fmt(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(sweep: Sweep, frame: pd.DataFrame) -> str:
    metrics = [m for m in sweep.metrics if m in frame.columns]
    done = int((frame["status"] == "finished").sum())
    parts = [
        f"# Sweep {Path(sweep.output_dir).name}: {done} of {len(frame)} runs finished",
        "",
        f"Config `{sweep.config}`" + (", for every run: " + ", ".join(f"`{k} {command_value(v)}`"
                                                                   for k, v in sweep.overrides.items())
                                      if sweep.overrides else "") + ".",
        "",
        _markdown_table(["run", "status", *sweep.grid, *metrics],
                        frame[["run", "status", *sweep.grid, *metrics]].itertuples(index=False)),
    ]
    if metrics and sweep.grid:
        parts += ["", "## Mean over the other grid axes (finished runs)"]
        finished = frame[frame["status"] == "finished"]
        for key in sweep.grid:
            rows = []
            for value in sweep.grid[key]:
                chosen = finished[finished[key] == _display(value)]
                rows.append([_display(value), len(chosen)]
                            + [v for m in metrics for v in (chosen[m].mean(), chosen[m].std())])
            parts += ["", f"### {key}", "",
                      _markdown_table([key, "runs", *[f"{m} {s}" for m in metrics for s in ("mean", "std")]], rows)]
    return "\n".join(parts) + "\n"


def _plot(sweep: Sweep, frame: pd.DataFrame) -> Optional[bytes]:
    """PNG bytes: one panel per (chosen metric, grid axis), each run a dot, the mean a line;
    None when there is no axis, no chosen metric or no value to draw."""
    metrics = [m for m in sweep.metrics if m in frame.columns and frame[m].notna().any()]
    axes_keys = list(sweep.grid)
    if not metrics or not axes_keys:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(axes_keys), 2.8 * len(metrics)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), len(axes_keys), squeeze=False)
    for i, metric in enumerate(metrics):
        for j, key in enumerate(axes_keys):
            ax = axes[i][j]
            labels = [str(_display(v)) for v in sweep.grid[key]]
            means = []
            for x, value in enumerate(sweep.grid[key]):
                ys = frame.loc[frame[key] == _display(value), metric].dropna()
                ax.scatter([x] * len(ys), ys, s=18, color="tab:blue", alpha=0.7)
                means.append(ys.mean() if len(ys) else math.nan)
            ax.plot(range(len(labels)), means, color="tab:orange", marker="_", markersize=14, label="mean")
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=20 if max(len(s) for s in labels) > 6 else 0)
            ax.set_xlim(-0.5, len(labels) - 0.5)
            ax.set_xlabel(key)
            if j == 0:
                ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    fig.suptitle(f"Sweep {Path(sweep.output_dir).name}: each run (dots) and the mean over the other axes")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_results(sweep: Sweep, frame: pd.DataFrame) -> Dict[str, str]:
    """Write ``results.csv`` (``frame``), ``results.md`` (the runs with the chosen metrics, and
    each metric's mean and standard deviation per value of each grid axis) and
    ``results.png`` (:func:`_plot`; skipped, and absent from the returned dict, when there
    is nothing to draw) into ``output_dir``, each atomically; returns {kind: path}."""
    out = Path(sweep.output_dir)
    paths = {
        "csv": atomic_write_text(out / RESULTS_CSV, frame.to_csv(index=False)),
        "markdown": atomic_write_text(out / RESULTS_MD, _markdown(sweep, frame)),
    }
    png = _plot(sweep, frame)
    if png is not None:
        paths["png"] = atomic_write_bytes(out / RESULTS_PNG, png)
    else:
        logger.info("results.png not drawn: it needs a grid and a chosen metric with values")
    return paths
