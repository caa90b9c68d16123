#!/usr/bin/env python
"""Latency, failures and memory of the inference service (tools/serve.py) against the model's own time.

    tools/benchmark_serve.py                                  # makes a small demo run, then measures
    tools/benchmark_serve.py --run output/demo_clinical       # an existing trained run
    tools/benchmark_serve.py --requests 96 --time-cap 120 --clients 1 4 16 --rss-requests 500

A benchmark, not a test. Without ``--run`` a small synthetic REFLACX set (60 images, seed 0)
is written and the demo clinical config is trained briefly (``--train-iters``; the weights
do not matter for latency, the model's size and input size do, and both are the demo's);
both are kept under ``--output`` and reused by later runs (``--retrain`` makes them anew).

The service is started as a subprocess on a free loopback port and waited for
(``GET /api/health``). ``POST /api/predict`` is then sent one real synthetic X-ray file
plus two clinical form fields (``age``, ``temperature``) by 1, 4 and 16 concurrent httpx
clients, each level bounded by a request count and a time cap; non-200 answers, answers
without ``detections`` and transport errors are counted as failures.

The model's own time (:class:`CXRPredictor` on the same decoded image and clinical record,
in this process, with torch's default thread count, as the server has) is measured
interleaved with the 1-client requests, one model call after each request (``--settle``
pauses around it), so that both see the same load on a shared machine. Overhead = p50
latency at 1 client / p50 model time (target <= 1.3). "cores busy" = CPU time / wall time:
of the model calls here, and of the server while it answers (at 1 client it is idle
otherwise), which shows whether the server's model runs as parallel as the model alone. Server RSS (the process and its children, from
``/proc``) is sampled over ``--rss-requests`` requests; growth = end / start - 1.

Prints one table and writes ``benchmark_serve.json`` (every latency, RSS sample, the
machine's load) under ``--output``. ``--profile`` records the server with py-spy during the
1-client level (``server_profile.txt``, collapsed stacks) when py-spy is installed.
"""
import argparse
import asyncio
import glob
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_CONFIG = ROOT / "configs/demo/faster_rcnn_MNv3_FPN_reflacx_synthetic_clinical.yaml"
CLINICAL_FIELDS = {"age": "67", "temperature": "100.4"}  # form text, as a browser sends it
TARGET_OVERHEAD = 1.3


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="", help="trained run (OUTPUT_DIR or .pth); default: make a small demo run")
    p.add_argument("--output", default="output/benchmark_serve", help="folder for the JSON, logs and the demo run")
    p.add_argument("--image", default="", help="the X-ray to upload (default: the first of the synthetic set)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrency levels")
    p.add_argument("--requests", type=int, default=96, help="measured requests per level")
    p.add_argument("--time-cap", type=float, default=120.0, help="seconds per level; no new request after it")
    p.add_argument("--settle", type=float, default=0.1,
                   help="1 client: seconds of pause between a request and the model call (and back), so that "
                   "neither side's idle compute threads still spin while the other runs")
    p.add_argument("--warmup", type=int, default=5, help="requests (and model calls) before measuring, not counted")
    p.add_argument("--request-timeout", type=float, default=120.0, help="seconds; a request past it is a failure")
    p.add_argument("--rss-requests", type=int, default=500, help="requests over which server RSS is sampled (0: skip)")
    p.add_argument("--rss-clients", type=int, default=4, help="concurrency of the RSS phase")
    p.add_argument("--rss-every", type=int, default=25, help="sample RSS every this many requests")
    p.add_argument("--rss-tolerance", type=float, default=5.0, help="growth %% still called flat")
    p.add_argument("--workers", type=int, default=1, help="tools/serve.py --workers")
    p.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for /api/health")
    p.add_argument("--train-iters", type=int, default=30, help="demo run: SOLVER.MAX_ITER")
    p.add_argument("--retrain", action="store_true", help="demo run: make the data and train again")
    p.add_argument("--profile", action="store_true", help="py-spy record the server during the 1-client level")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# The run and the image


def _tool(name):
    return [sys.executable, str(ROOT / "tools" / name)]


def make_demo_run(output: Path, iters: int, retrain: bool) -> Path:
    """Synthetic REFLACX (60 images, seed 0) and the demo clinical config trained ``iters``
    iterations, under ``output``; reused when already there."""
    data, run = output / "synthetic", output / "demo_run"
    if retrain:
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
    if not (data / "reflacx").is_dir():
        print(f"making synthetic REFLACX (60 images) in {data}", flush=True)
        subprocess.run(_tool("make_synthetic.py") + ["--format", "reflacx", "--out", str(data), "--images", "60",
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
        done = subprocess.run(_tool("train_net.py") + ["--config-file", str(DEMO_CONFIG)] + opts,
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
    subprocess.run(_tool("make_synthetic.py") + ["--format", "reflacx", "--out", str(data), "--images", "4",
                                                 "--seed", "0"], check=True, stdout=subprocess.DEVNULL)
    return Path(sorted(glob.glob(str(data / "mimic-cxr-jpg" / "files" / "**" / "*.jpg"), recursive=True))[0])


# ---------------------------------------------------------------------------------------------
# The server process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (uvicorn workers), from /proc (VmRSS)."""
    total = 0
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def _descendants(pid: int):
    """``pid`` and every process below it, from /proc."""
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.split("/")[2]))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


class Server:
    def __init__(self, run: Path, port: int, workers: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        cmd = _tool("serve.py") + ["--run", str(run), "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", str(workers)]
        self.command = cmd
        self._log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float, httpx):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                r = httpx.get(self.url + "/api/health", timeout=2.0)
                if r.status_code == 200 and r.json().get("status") == "ok":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        tail = "".join(self.log.read_text().splitlines(keepends=True)[-20:])
        why = f"exited with {self.proc.returncode}" if self.proc.returncode is not None else f"not healthy in {timeout:g} s"
        sys.exit(f"benchmark_serve.py: the server {why}: {' '.join(self.command)}\n{tail}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


# ---------------------------------------------------------------------------------------------
# Measuring


def pct(values, q):
    """The ``q``-th percentile (linear interpolation), None when empty."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Requester:
    """Sends the same upload with httpx's AsyncClient; records latencies and failures."""

    def __init__(self, client, url, image_name, image_bytes):
        self.client, self.url = client, url + "/api/predict"
        self.files = {"file": (image_name, image_bytes, "image/jpeg")}

    async def one(self):
        """``(seconds, failure or None)``."""
        t0 = time.perf_counter()
        try:
            r = await self.client.post(self.url, files=self.files, data=CLINICAL_FIELDS)
            seconds = time.perf_counter() - t0
            if r.status_code != 200:
                return seconds, f"HTTP {r.status_code}: {r.text[:200]}"
            if "detections" not in r.json():
                return seconds, "200 without 'detections'"
            return seconds, None
        except Exception as e:  # noqa: BLE001 - transport errors, timeouts, bad JSON: all failures
            return time.perf_counter() - t0, f"{type(e).__name__}: {e}"[:200]

    async def level(self, clients, count, time_cap, pbar, after_each=None, on_done=None):
        """``count`` requests by ``clients`` concurrent loops, none started after ``time_cap`` s.
        ``await after_each()`` after each request; ``on_done(n)`` with the count done."""
        latencies, failures, done = [], Counter(), 0
        issued = 0
        start = time.perf_counter()
        deadline = start + time_cap

        async def loop():
            nonlocal issued, done
            while issued < count and time.perf_counter() < deadline:
                issued += 1
                seconds, failure = await self.one()
                done += 1
                if failure:
                    failures[failure] += 1
                else:
                    latencies.append(seconds)
                pbar.update(1)
                if after_each is not None:
                    await after_each()
                if on_done is not None:
                    on_done(done)

        await asyncio.gather(*(loop() for _ in range(clients)))
        wall = time.perf_counter() - start
        return {"clients": clients, "requests": done, "ok": len(latencies), "failed": sum(failures.values()),
                "failures": dict(failures), "capped": done < count, "wall_s": wall,
                "throughput_rps": done / wall if wall > 0 else None, "latencies_s": latencies}


def summary(seconds):
    return {"n": len(seconds), "p50_ms": _ms(pct(seconds, 50)), "p95_ms": _ms(pct(seconds, 95)),
            "mean_ms": _ms(statistics.fmean(seconds) if seconds else None), "max_ms": _ms(max(seconds, default=None))}


def _ms(s):
    return None if s is None else round(s * 1000.0, 2)


def start_profiler(pid: int, out: Path):
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not spy:
        print("--profile: py-spy not installed (pip install py-spy); no profile", flush=True)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--subprocesses", "--nonblocking",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def stop_profiler(proc):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


async def measure(args, server, image: Path, image_bytes: bytes, model_once, httpx, tqdm, output: Path):
    limits = httpx.Limits(max_connections=max(args.clients + [args.rss_clients]) + 4, max_keepalive_connections=64)
    results = {}
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as client:
        req = Requester(client, server.url, image.name, image_bytes)
        pid = server.proc.pid
        results["rss_after_start_bytes"] = tree_rss(pid)

        # Warm-up: first requests pay for lazy initialisation on both sides.
        for _ in range(args.warmup):
            seconds, failure = await req.one()
            if failure:
                raise SystemExit(f"benchmark_serve.py: warm-up request failed: {failure}")
            model_once()

        # The HTTP floor: GET /api/health round trips (no upload, no model).
        health = []
        for _ in range(30):
            t0 = time.perf_counter()
            await client.get(server.url + "/api/health")
            health.append(time.perf_counter() - t0)
        results["health"] = summary(health)

        model_times, levels = [], []

        async def interleaved_model_call():  # after each 1-client request, with the server idle
            time.sleep(args.settle)
            model_times.append(model_once())
            time.sleep(args.settle)

        for clients in args.clients:
            profiler = None
            after_each = interleaved_model_call if clients == 1 else None
            cpu_before = tree_cpu(pid)
            if clients == 1 and args.profile:
                profiler = start_profiler(pid, output / "server_profile.txt")
                time.sleep(1.0)
            with tqdm(total=args.requests, desc=f"{clients:>2} client(s)", unit="req", leave=False) as pbar:
                level = await req.level(clients, args.requests, args.time_cap, pbar, after_each=after_each)
            stop_profiler(profiler)
            # Cores the server kept busy while answering: its CPU over the level / the time spent in requests
            # (exact at 1 client, where it is idle between requests).
            busy = sum(level["latencies_s"]) if clients == 1 else level["wall_s"]
            level["server_cores_busy"] = round((tree_cpu(pid) - cpu_before) / busy, 2) if busy else None
            level["rss_after_bytes"] = tree_rss(pid)
            levels.append(level)
        results["levels"] = levels
        results["model_latencies_s"] = model_times

        rss = []
        if args.rss_requests > 0:
            rss.append((0, tree_rss(pid)))

            def sample(done):
                if done % args.rss_every == 0 or done == args.rss_requests:
                    rss.append((done, tree_rss(pid)))

            with tqdm(total=args.rss_requests, desc=f"RSS, {args.rss_clients} clients", unit="req", leave=False) as pbar:
                phase = await req.level(args.rss_clients, args.rss_requests, float("inf"), pbar, on_done=sample)
            phase.pop("latencies_s")
            results["rss_phase"] = phase
        results["rss_samples"] = rss
    return results


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    import httpx
    import numpy as np
    import torch
    from tabulate import tabulate
    from tqdm import tqdm

    import cxr_det  # noqa: F401
    import cxr_det.modeling  # noqa: F401
    from cxr_det.data.image_io import read_image, read_options_from_config
    from cxr_det.engine import RunConfigError, inference_config
    from cxr_det.engine.predictor import CXRPredictor

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
        server.wait_healthy(args.start_timeout, httpx)
        results = asyncio.run(measure(args, server, image, image_bytes, model_once, httpx, tqdm, output))
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


if __name__ == "__main__":
    main()
