"""What the sections of ``tools/benchmark.py`` share: the section result, timing, memory
readings, the machine's matrix-multiply peak, and the description of the machine and commit.

Timings are wall-clock seconds from :func:`time.perf_counter`; on a CUDA device the
device is synchronised before each reading. Memory is the resident set size (RSS) from
psutil when it is installed, else from ``/proc/<pid>/statm`` (Linux).
"""
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

__all__ = [
    "ROOT",
    "Section",
    "synchronize",
    "time_calls",
    "median",
    "rss_bytes",
    "matmul_peak",
    "git_commit",
    "machine_info",
    "default_device",
]

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Section:
    """One section's result: a table (``headers``, ``rows``) printed with tabulate, lines of
    ``notes`` printed under it, and ``data`` (JSON-able) written to the benchmark's JSON."""

    name: str
    title: str
    headers: List[str]
    rows: List[list]
    notes: List[str] = field(default_factory=list)
    data: Dict = field(default_factory=dict)
    floatfmt: str = ".3g"


def default_device() -> str:
    """``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU), so that a clock reading
    after it includes that work."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_calls(fn: Callable[[], object], repeat: int, warmup: int = 1, device: str = "cpu") -> List[float]:
    """Seconds of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - start)
    return out


def median(values) -> float:
    """Median of ``values``; NaN when empty."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


def rss_bytes(pid: Optional[int] = None) -> int:
    """Resident set size of process ``pid`` (default: this one) in bytes: psutil's when it
    is installed, else field 2 of ``/proc/<pid>/statm`` times the page size. Raises
    OSError where neither is available (no psutil, no /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return int(psutil.Process(pid or os.getpid()).memory_info().rss)
    with open(f"/proc/{pid or 'self'}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def matmul_peak(device: str = "cpu", n: int = 2048, repeat: int = 5) -> float:
    """Multiply-adds per second of a float32 ``n`` x ``n`` matrix product (``n**3`` per
    product), the best of ``repeat`` after one warm-up: this machine's practical compute
    peak with torch's current thread count, in fvcore's unit (one fused multiply-add = one
    "FLOP"; double it for FLOP/s as vendors count)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    seconds = time_calls(lambda: torch.matmul(a, b), repeat, warmup=1, device=device)
    return n ** 3 / min(seconds)


def git_commit() -> str:
    """Short hash of the checkout's HEAD, with ``+changes`` when tracked files differ from
    it; ``"unknown"`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info(device: str) -> Dict[str, object]:
    """The machine a run measured: CPU model and cores, torch threads and version, the
    device (GPU name when CUDA), Python, the date and the git commit."""
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
