#!/usr/bin/env bash
# The GPU check in one call, for a machine with a GPU and torch / triton / timm / pytest (xdist,
# timeout) installed: the benchmark suite, then the kernel tests. Every log and the results JSON go to
# $1 (default benchmarks/results), so a run cut short still leaves what it did.
#
#   bash benchmarks/device_check.sh OUT_DIR [SUITE_SECONDS] [TEST_SECONDS] [gpu_suite.py args ...]
#
# 0 seconds leaves that part out (e.g. the suite in one call, the tests in the next).
#
# The suite runs first, on an idle GPU (a test run stopped by its time limit can leave pytest workers
# behind), with warm-up workers on three quarters of the cores compiling kernels before the timed
# run; it needs benchmarks/.anchors (benchmarks/fetch_anchors.sh) for its official-code rows. The tests run with
# ATTNZOO_AUTOTUNE=0 (one config: they meet hundreds of shapes once each; test_tuned_configs.py runs
# the others) and print each test's verdict as it ends, so a time limit still says which failed.
set -u
out=${1:-benchmarks/results}
suite_s=${2:-360}
test_s=${3:-240}
shift $(($# < 3 ? $# : 3))
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
cpus=$(python3 -c "import os; print(os.cpu_count() or 1)")

python3 - >"$out/env.txt" 2>&1 <<'PY'
import torch, triton, timm
print(torch.__version__, triton.__version__, timm.__version__, torch.cuda.get_device_name())
PY
cat "$out/env.txt"

if [ "$suite_s" -gt 0 ]; then
    timeout $((suite_s + 30)) python3 benchmarks/gpu_suite.py --out "$out" --budget-s "$suite_s" \
        --warm-workers $((cpus * 3 / 4 > 0 ? cpus * 3 / 4 : 1)) "$@" >"$out/suite.log" 2>&1
    echo "suite: exit $?"
    grep -E "^\[|warm-up" "$out/suite.log" | tail -60
fi

if [ "$test_s" -gt 0 ]; then
    ATTNZOO_AUTOTUNE=0 timeout "$test_s" python3 -m pytest -n "$((cpus < 16 ? cpus : 16))" -v -rf \
        --tb=short --timeout 120 -p no:cacheprovider tests/kernels >"$out/kernel_tests.log" 2>&1
    status=$?
    echo "kernel tests: exit $status (124 = time limit)"
    grep -E " (FAILED|ERROR) " "$out/kernel_tests.log" | grep -v "^E " | sort -u | head -40
    echo "passed: $(grep -c ' PASSED ' "$out/kernel_tests.log"), failed: $(grep -c ' FAILED ' "$out/kernel_tests.log")"
fi
