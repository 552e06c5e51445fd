"""The pieces of ``benchmarks/gpu_suite.py``: settings, timing, kernel and model rows, the runner and
the results file (imported with ``benchmarks/`` on ``sys.path``, as the suite and its tests run)."""
