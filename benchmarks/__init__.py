"""Benchmarks: measurements, not tests (speed, memory, metric figures on synthetic or real
data). Each is run by a ``tools/benchmark_*.py`` command, which parses the arguments and
calls the module here; ``tools/`` puts the repository root on ``sys.path`` for that.

- :mod:`benchmarks.serve_benchmark` (``tools/benchmark_serve.py``): latency, failures and
  memory of the inference service against the model's own time; with
  :mod:`benchmarks.serve_processes` and :mod:`benchmarks.serve_load`.
- :mod:`benchmarks.fusion_benchmark` (``tools/benchmark_fusion.py``): the image-only and
  clinical demo twins trained with one seed and compared on one split (AP50 per class, the
  paired-bootstrap clinical gain, time per iteration, a chart).
"""
