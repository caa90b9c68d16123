"""``tools/benchmark_serve.py``'s measurement: latency, failures and memory of the inference
service against the model's own time (the method is in the tool's docstring).

:func:`run_benchmark` takes the tool's parsed arguments, prints one table and writes
``benchmark_serve.json`` under ``--output``. The pieces: :mod:`benchmarks.serve_processes`
(the server process, /proc), :mod:`benchmarks.serve_load` (clients, the model's time).
"""
import asyncio
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from tabulate import tabulate

import cxr_det  # noqa: F401
import cxr_det.modeling  # noqa: F401
from cxr_det.data.image_io import read_image, read_options_from_config
from cxr_det.engine import RunConfigError, inference_config
from cxr_det.engine.predictor import CXRPredictor

from benchmarks.serve_load import CLINICAL_FIELDS, measure, summary
from benchmarks.serve_processes import ROOT, Server, free_port, tool_command

__all__ = ["DEMO_CONFIG", "TARGET_OVERHEAD", "make_demo_run", "find_image", "run_benchmark"]

DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"
TARGET_OVERHEAD = 1.3


def make_demo_run(output: Path, iters: int, retrain: bool) -> Path:
    """Synthetic REFLACX (60 images, seed 0) and the demo clinical config trained ``iters``
    iterations, under ``output``; reused when already there (``retrain``: made anew).
    Exits naming the log when training fails."""
    data, run = output / "synthetic", output / "demo_run"
    if retrain:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
    if not (data / "reflacx").is_dir():
        print(f"making synthetic REFLACX (60 images) in {data}", flush=True)
        subprocess.run(tool_command("make_synthetic.py") + ["--format", "reflacx", "--out", str(data), "--images", "60",
                                                     "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
    if (run / "model_final.pth").is_file():
        print(f"reusing the demo run {run} (--retrain makes it anew)", flush=True)
        return run
    log = output / "train.log"
    print(f"training {DEMO_CONFIG.relative_to(ROOT)} for {iters} iterations into {run} (log: {log})", flush=True)
    opts = ["OUTPUT_DIR", str(run), "SOLVER.MAX_ITER", str(iters), "SOLVER.CHECKPOINT_PERIOD", str(iters),
            "SOLVER.WARMUP_ITERS", str(min(10, iters)), "SOLVER.IMS_PER_BATCH", "2",
            "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()",
            "TEST.CXR_EVAL.PLOTS", "False", "CXR.TRAIN.PLOT_CURVES", "False"]
    env = dict(os.environ, CXR_DATASETS=str(data))
    with open(log, "w") as f:
        done = subprocess.run(tool_command("train_net.py") + ["--config-file", str(DEMO_CONFIG)] + opts,
                              env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not (run / "model_final.pth").is_file():
        sys.exit(f"benchmark_serve.py: training the demo run failed (exit {done.returncode}); see {log}")
    return run


def find_image(cfg, output: Path) -> Path:
    """The first JPEG of the synthetic MIMIC-CXR-JPG files under the run's dataset root,
    ``$CXR_DATASETS``, ``./datasets`` or ``output/synthetic``; else a 4-image set is made."""
    roots = [cfg.CXR.DATASET_ROOT, os.environ.get("CXR_DATASETS", ""), str(ROOT / "datasets"),
             str(output / "synthetic")]
    for root in filter(None, roots):
        found = sorted(glob.glob(os.path.join(root, "mimic-cxr-jpg", "files", "**", "*.jpg"), recursive=True))
        if found:
            return Path(found[0])
    data = output / "synthetic_images"
    subprocess.run(tool_command("make_synthetic.py") + ["--format", "reflacx", "--out", str(data), "--images", "4",
                                                 "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
    return Path(sorted(glob.glob(str(data / "mimic-cxr-jpg" / "files" / "**" / "*.jpg"), recursive=True))[0])


def run_benchmark(args, argv=None):
    """Measure as ``args`` (``tools/benchmark_serve.py``'s namespace) says; print the table and
    the verdicts, write ``<args.output>/benchmark_serve.json``. ``argv`` (None: ``sys.argv``) is
    recorded as the command. Exits (``SystemExit`` with a message) when the run cannot be
    loaded, the demo training fails, the server does not come up or a warm-up request fails."""
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    run = Path(args.run) if args.run else make_demo_run(output.resolve(), args.train_iters, args.retrain)
    try:
        cfg = inference_config(str(run))
    except RunConfigError as e:
        sys.exit(f"benchmark_serve.py: {e}")
    cfg.freeze()
    image = Path(args.image) if args.image else find_image(cfg, output.resolve())
    image_bytes = image.read_bytes()

    # The model in this process, on the decoded image, with the record the service builds.
    predictor = CXRPredictor(cfg)
    read_options = read_options_from_config(cfg)
    decode_times = []

    def decode():
        t0 = time.perf_counter()
        pixels = read_image(image_bytes, cfg.INPUT.FORMAT, name=image.name, **read_options)
        decode_times.append(time.perf_counter() - t0)
        return pixels

    pixels = decode()
    record = dict(CLINICAL_FIELDS) if predictor.clinical_featurizer is not None else None

    model_cpu = []  # (process CPU, wall) seconds per model call: cores busy = CPU / wall

    def model_once():
        decode()
        c0, t0 = time.process_time(), time.perf_counter()
        predictor(pixels, record)
        seconds = time.perf_counter() - t0
        model_cpu.append((time.process_time() - c0, seconds))
        return seconds

    port = free_port()
    server = Server(run, port, args.workers, output / "server.log")
    print(f"server: {' '.join(server.command)} (log: {output / 'server.log'})", flush=True)
    try:
        server.wait_healthy(args.start_timeout)
        results = asyncio.run(measure(args, server, image, image_bytes, model_once, output))
    finally:
        server.stop()
    load_end = os.getloadavg()

    model = summary(results["model_latencies_s"])
    # Cores busy during a model call here (its CPU / its wall time, over the measured calls).
    measured = model_cpu[-len(results["model_latencies_s"]):] if results["model_latencies_s"] else []
    model_cores = round(sum(c for c, _ in measured) / sum(w for _, w in measured), 2) if measured else None
    rows, levels = [], []
    for level in results["levels"]:
        s = summary(level["latencies_s"])
        ratio = s["p50_ms"] / model["p50_ms"] if s["p50_ms"] and model["p50_ms"] else None
        rows.append([f"service, {level['clients']} client(s)", level["requests"], level["failed"], s["p50_ms"],
                     s["p95_ms"], s["max_ms"], round(level["throughput_rps"], 2), ratio and round(ratio, 2),
                     level["server_cores_busy"]])
        levels.append({**{k: v for k, v in level.items() if k != "latencies_s"}, **s, "p50_over_model": ratio,
                       "latencies_ms": [round(x * 1000, 3) for x in level["latencies_s"]]})
    rows.append(["model alone (CXRPredictor, in-process)", model["n"], 0, model["p50_ms"],
                 model["p95_ms"], model["max_ms"], None, 1.0, model_cores])
    decode_s = summary(decode_times)
    rows.append(["image decode alone (read_image, in-process)", decode_s["n"], 0, decode_s["p50_ms"],
                 decode_s["p95_ms"], decode_s["max_ms"], None, None, None])
    h = results["health"]
    rows.append(["GET /api/health (HTTP floor)", h["n"], 0, h["p50_ms"], h["p95_ms"], h["max_ms"], None, None, None])

    one = next((lv for lv in levels if lv["clients"] == 1), None)
    overhead = one["p50_over_model"] if one else None
    rss = results["rss_samples"]
    rss_report = None
    if len(rss) >= 2:
        start, end = rss[0][1], rss[-1][1]
        rss_report = {"clients": args.rss_clients, "requests": results["rss_phase"]["requests"],
                      "failed": results["rss_phase"]["failed"], "failures": results["rss_phase"]["failures"],
                      "start_mib": round(start / 2**20, 1), "end_mib": round(end / 2**20, 1),
                      "max_mib": round(max(b for _, b in rss) / 2**20, 1),
                      "growth_pct": round(100.0 * (end - start) / start, 2) if start else None,
                      "samples": [[n, round(b / 2**20, 2)] for n, b in rss]}
        g = rss_report["growth_pct"]
        rss_report["growing"] = g is None or g > args.rss_tolerance
        rss_report["verdict"] = ("GROWING" if rss_report["growing"] else "flat" if g >= -args.rss_tolerance
                                 else "shrinking, not growing")
    failed = sum(lv["failed"] for lv in levels) + (rss_report["failed"] if rss_report else 0)

    headers = ["what", "requests", "failed", "p50 ms", "p95 ms", "max ms", "req/s", "p50 / model p50", "cores busy"]
    print()
    print(tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f", missingval="-"))
    verdict = "n/a" if overhead is None else ("meets" if overhead <= TARGET_OVERHEAD else "ABOVE")
    print(f"\noverhead (p50 latency at 1 client / model p50): "
          f"{'n/a' if overhead is None else f'{overhead:.2f}'} - {verdict} target <= {TARGET_OVERHEAD}")
    if rss_report:
        print(f"server RSS over {rss_report['requests']} requests ({args.rss_clients} clients): "
              f"{rss_report['start_mib']} -> {rss_report['end_mib']} MiB ({rss_report['growth_pct']:+.2f} %, "
              f"max {rss_report['max_mib']} MiB; {rss_report['verdict']}, tolerance {args.rss_tolerance:g} %), "
              f"{rss_report['failed']} failed; after start-up {round(results['rss_after_start_bytes'] / 2**20, 1)} MiB, "
              f"after each level: " + ", ".join(f"{lv['clients']} client(s) {lv['rss_after_bytes'] / 2**20:.1f}"
                                               for lv in levels) + " MiB")
    if one:
        print(f"cores busy (CPU time / wall time): model alone here {model_cores}, server answering 1 client "
              f"{one['server_cores_busy']} (torch threads here {torch.get_num_threads()})")
    print(f"failed requests in all: {failed}; machine: {os.cpu_count()} CPUs, load average "
          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end; torch threads here {torch.get_num_threads()}; "
          f"server workers {args.workers}")

    report = {
        "command": " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))),
        "run": str(run), "image": str(image), "image_bytes": len(image_bytes),
        "image_shape": list(np.asarray(pixels).shape), "clinical_fields": CLINICAL_FIELDS,
        "input_size": {"min_size_test": cfg.INPUT.MIN_SIZE_TEST, "max_size_test": cfg.INPUT.MAX_SIZE_TEST},
        "server": {"command": server.command, "workers": args.workers,
                   "rss_after_start_mib": round(results["rss_after_start_bytes"] / 2**20, 1)},
        "settings": {k: v for k, v in vars(args).items()},
        "levels": levels, "model": {**model, "cores_busy": model_cores, "latencies_ms": [round(x * 1000, 3) for x in results["model_latencies_s"]]},
        "decode": decode_s, "health": h,
        "overhead": {"p50_1_client_over_model_p50": overhead, "target": TARGET_OVERHEAD,
                     "meets_target": overhead is not None and overhead <= TARGET_OVERHEAD},
        "rss": rss_report, "failed_requests": failed,
        "machine": {"cpus": os.cpu_count(), "loadavg_start": load_start, "loadavg_end": load_end,
                    "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "torch": torch.__version__, "httpx": httpx.__version__,
                    "rss_source": "/proc"},
    }
    out = output / "benchmark_serve.json"
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"written: {out}")
