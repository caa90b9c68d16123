"""The service under test as a process: started on a free loopback port, its memory and CPU
read from ``/proc`` (psutil is not a dependency), optionally profiled with py-spy.

Linux only (``/proc``), like the benchmark.
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "tool_command", "free_port", "tree_rss", "tree_cpu", "Server", "start_profiler", "stop_profiler"]


def tool_command(name: str):
    """The command line that runs ``tools/<name>`` with this interpreter."""
    return [sys.executable, str(ROOT / "tools" / name)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
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
    """``tools/serve.py --run <run>`` as a subprocess in its own session on ``127.0.0.1:port``,
    its output in ``log``."""

    def __init__(self, run: Path, port: int, workers: int, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        cmd = tool_command("serve.py") + ["--run", str(run), "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", str(workers)]
        self.command = cmd
        self._log = open(log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float):
        """Return once ``GET /api/health`` answers ``{"status": "ok"}``; else stop the server and
        exit with its log's tail (it exited, or ``timeout`` seconds passed)."""
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
        """SIGINT to the server's process group, SIGKILL after 30 s; closes the log."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def start_profiler(pid: int, out: Path):
    """``py-spy record`` of ``pid`` and its children into ``out`` (raw collapsed stacks, 250 Hz),
    or None with a note when py-spy is not installed."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if not spy:
        print("--profile: py-spy not installed (pip install py-spy); no profile", flush=True)
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--subprocesses", "--nonblocking",
                             "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def stop_profiler(proc):
    """Stop a :func:`start_profiler` process (SIGINT makes py-spy write its file); None is fine."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
