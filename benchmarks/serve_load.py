"""Load on the service: one upload sent by concurrent httpx clients, latencies and failures
counted, the model's own time measured in between, server memory sampled.
"""
import asyncio
import statistics
import time
from collections import Counter
from pathlib import Path

import httpx
from tqdm import tqdm

from benchmarks.serve_processes import start_profiler, stop_profiler, tree_cpu, tree_rss

__all__ = ["CLINICAL_FIELDS", "pct", "summary", "Requester", "measure"]

CLINICAL_FIELDS = {"age": "67", "temperature": "100.4"}  # form text, as a browser sends it



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
    """``{"n", "p50_ms", "p95_ms", "mean_ms", "max_ms"}`` of a list of seconds (None where empty)."""
    return {"n": len(seconds), "p50_ms": _ms(pct(seconds, 50)), "p95_ms": _ms(pct(seconds, 95)),
            "mean_ms": _ms(statistics.fmean(seconds) if seconds else None), "max_ms": _ms(max(seconds, default=None))}


def _ms(s):
    return None if s is None else round(s * 1000.0, 2)


async def measure(args, server, image: Path, image_bytes: bytes, model_once, output: Path):
    """Warm-up, the HTTP floor (``GET /api/health``), each concurrency level of ``args.clients``
    (the 1-client level interleaved with ``model_once()``), then the RSS phase; returns the raw
    results (seconds, bytes). Exits when a warm-up request fails."""
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
