"""Benchmarks: measurements, not tests (speed, memory, metric figures on synthetic or real
data). Each is run by a ``tools/benchmark_*.py`` command, which parses the arguments and
calls the module here; ``tools/`` puts the repository root on ``sys.path`` for that.

- :mod:`benchmarks.serve_benchmark` (``tools/benchmark_serve.py``): latency, failures and
  memory of the inference service against the model's own time; with
  :mod:`benchmarks.serve_processes` and :mod:`benchmarks.serve_load`.
"""
