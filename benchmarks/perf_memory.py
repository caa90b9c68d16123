"""Memory section of ``tools/benchmark.py``: does the training process grow? The resident set
size (RSS) of a training run of the demo config, sampled through 1,000 iterations after a
warm-up; the issue's bound is growth under 5%.

The run is ``tools/train_net.py``'s own path (:func:`cxr_det.engine.defaults.setup`, the
Trainer with its hooks and its data loader with the config's worker process), in a child
process (``python -m benchmarks.perf_memory``) on a small synthetic REFLACX set, at a small
input size to bound the time, with an evaluation (and validation loss, best checkpoint)
every ``eval_period`` iterations so that a leak in the hooks shows too. The warm-up holds one
evaluation, so the first sample sees every cache filled; samples are taken right after an
evaluation, at the same point of the cycle: iteration ``warmup`` (start) and ``warmup +
iterations`` (end), and every 50 iterations in between for the curve. The loader's worker
processes are measured beside the main one.
"""
import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import cxr_det  # noqa: F401  (detectron2 compatibility fixes before detectron2 is imported)
from detectron2.engine import HookBase

from benchmarks.perf_common import ROOT, Section, rss_bytes

__all__ = ["DEMO_CONFIG", "RSS_GROWTH_LIMIT", "RSSRecorder", "run_memory", "main"]

DEMO_CONFIG = "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic.yaml"
RSS_GROWTH_LIMIT = 0.05  # the bound on growth over the measured iterations
SAMPLE_PERIOD = 50


def _worker_rss() -> int:
    """Summed RSS of this process's live child processes (the data loader's workers)."""
    total = 0
    for child in multiprocessing.active_children():
        try:
            total += rss_bytes(child.pid)
        except OSError:  # the worker exited meanwhile
            pass
    return total


class RSSRecorder(HookBase):
    """A detectron2 hook that records the RSS (bytes) of the training process and of its
    loader workers at the end of the iterations ``sample_at``, and writes them with the
    iteration's time to ``path`` (JSON) when training ends."""

    def __init__(self, path, sample_at):
        self.path, self.sample_at, self.samples = path, set(sample_at), []

    def after_step(self):
        if self.trainer.iter in self.sample_at:
            histories = self.trainer.storage.histories()
            self.samples.append({"iteration": self.trainer.iter, "rss": rss_bytes(), "workers_rss": _worker_rss(),
                                 "time": histories["time"].latest() if "time" in histories else None})

    def after_train(self):
        Path(self.path).write_text(json.dumps({"samples": self.samples}))


def main(argv=None):
    """The child process: train the demo config with :class:`RSSRecorder`; writes ``--json``."""
    parser = argparse.ArgumentParser(description="training RSS over iterations (tools/benchmark.py, memory section)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--iters", type=int, required=True)
    parser.add_argument("--eval-period", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    args = parser.parse_args(argv)

    import cxr_det.modeling  # noqa: F401  (registers the MobileNetV3 backbone)
    from cxr_det.engine import Trainer, argument_parser, setup

    warmup, iters, period = args.warmup, args.iters, args.eval_period
    max_iter = warmup + iters + 1  # the last sample follows an evaluation, as the first does
    opts = ["OUTPUT_DIR", args.output, "SOLVER.MAX_ITER", max_iter, "SOLVER.CHECKPOINT_PERIOD", 10 * max_iter,
            "SOLVER.IMS_PER_BATCH", args.batch, "SOLVER.WARMUP_ITERS", min(50, warmup),
            "INPUT.MIN_SIZE_TRAIN", f"({args.size},)", "INPUT.MAX_SIZE_TRAIN", int(args.size * 1.5),
            "INPUT.MIN_SIZE_TEST", args.size, "INPUT.MAX_SIZE_TEST", int(args.size * 1.5),
            "TEST.EVAL_PERIOD", period, "TEST.CXR_EVAL.PLOTS", False, "CXR.TRAIN.PLOT_CURVES", False]
    cli = ["--config-file", str(ROOT / DEMO_CONFIG)] + [str(v) for v in opts]
    cfg = setup(argument_parser().parse_args(cli))
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    sample_at = {warmup - 1, warmup + iters - 1} | set(range(warmup - 1, warmup + iters, SAMPLE_PERIOD))
    trainer.register_hooks([RSSRecorder(args.json, sorted(sample_at))])
    trainer.train()


def run_memory(settings, work: Path) -> Section:
    """The memory section; ``settings``: the mode's ``memory`` settings of
    :mod:`benchmarks.performance` (warmup, iters, eval_period, size, batch, images)."""
    from cxr_det.synthetic import make_reflacx

    s = settings
    data = work / f"memory_reflacx_{s['images']}"
    if not (data / "reflacx").is_dir():
        make_reflacx(data, s["images"], 0, size=192)
    out = work / "memory_run"
    shutil.rmtree(out, ignore_errors=True)
    result = work / "memory.json"
    result.unlink(missing_ok=True)
    log = work / "memory_train.log"
    print(f"  training {DEMO_CONFIG} for {s['warmup']} + {s['iters']} iterations ({s['size']} px, batch "
          f"{s['batch']}); log {log} ...", flush=True)
    command = [sys.executable, "-m", "benchmarks.perf_memory", "--output", str(out), "--json", str(result),
               "--warmup", str(s["warmup"]), "--iters", str(s["iters"]), "--eval-period", str(s["eval_period"]),
               "--size", str(s["size"]), "--batch", str(s["batch"])]
    env = dict(os.environ, CXR_DATASETS=str(data))
    with open(log, "w") as f:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not result.is_file():
        raise RuntimeError(f"the memory run failed (exit {done.returncode}); see {log}")
    samples = json.loads(result.read_text())["samples"]
    first = samples[0]
    last = max(samples, key=lambda x: x["iteration"])
    mib = 1 / 2**20
    peak = max(x["rss"] for x in samples)
    growth = (last["rss"] - first["rss"]) / first["rss"]
    total = lambda x: x["rss"] + x["workers_rss"]  # noqa: E731
    total_growth = (total(last) - total(first)) / total(first)
    iterations = np.array([x["iteration"] for x in samples], dtype=np.float64)

    def trend(values):  # least-squares slope, % of the first value per 1,000 iterations
        if len(samples) < 3:
            return float("nan")
        return float(np.polyfit(iterations, np.asarray(values, dtype=np.float64), 1)[0]) * 1000 / values[0] * 100

    rows = [
        ["training process", first["rss"] * mib, last["rss"] * mib, peak * mib, 100 * growth,
         trend([x["rss"] for x in samples]), "yes" if growth < RSS_GROWTH_LIMIT else "NO"],
        ["+ loader workers", total(first) * mib, total(last) * mib, max(total(x) for x in samples) * mib,
         100 * total_growth, trend([total(x) for x in samples]), "yes" if total_growth < RSS_GROWTH_LIMIT else "NO"],
    ]
    headers = ["process", f"RSS MiB at iter {first['iteration'] + 1}", f"RSS MiB at iter {last['iteration'] + 1}",
               "peak MiB", "growth %", "trend % / 1,000 iter", f"growth < {100 * RSS_GROWTH_LIMIT:g}%"]
    times = [x["time"] for x in samples if x["time"] is not None]
    notes = [f"{DEMO_CONFIG}: {s['warmup']} warm-up + {s['iters']} measured iterations, input {s['size']} px "
             f"(MIN_SIZE_TRAIN/TEST), batch {s['batch']}, the config's loader worker, evaluation + validation loss "
             f"every {s['eval_period']} iterations, on synthetic REFLACX ({s['images']} images)",
             f"RSS {'from psutil' if _has_psutil() else 'from /proc/<pid>/statm'}, sampled every {SAMPLE_PERIOD} "
             f"iterations (trend: least-squares slope over the samples); about {sorted(times)[len(times) // 2]:.3f} s per iteration" if times else ""]
    return Section("memory", "Memory: RSS of a training run", headers, rows, [n for n in notes if n],
                   {"samples": samples, "growth": growth, "growth_with_workers": total_growth, "settings": s})


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
