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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


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


def main(argv=None):
    args = parse_args(argv)
    # Imported after parsing, so that --help answers without loading torch.
    from benchmarks.serve_benchmark import run_benchmark

    run_benchmark(args, argv)


if __name__ == "__main__":
    main()
