#!/usr/bin/env bash
# The GPU check in one call, for a machine with a GPU and torch / triton / timm / pytest installed:
# the kernel tests on CUDA, then the benchmark suite. Every log and the results JSON go to $1
# (default benchmarks/results), so a run cut short still leaves what it did.
#
#   bash benchmarks/device_check.sh OUT_DIR [TEST_SECONDS] [SUITE_SECONDS] [gpu_suite.py args ...]
#
# The tests run with ATTNZOO_AUTOTUNE=0 (one config: they meet hundreds of shapes once each) and
# print each test's verdict as it ends, so a time limit still says which tests failed. The suite needs
# benchmarks/.anchors (benchmarks/fetch_anchors.sh) for its official-code rows.
set -u
out=${1:-benchmarks/results}
test_s=${2:-180}
suite_s=${3:-300}
shift $(($# < 3 ? $# : 3))
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

python3 - >"$out/env.txt" 2>&1 <<'PY'
import torch, triton, timm
print(torch.__version__, triton.__version__, timm.__version__, torch.cuda.get_device_name())
PY
cat "$out/env.txt"

workers=$(python3 -c "import os; print(min(16, os.cpu_count() or 1))")
ATTNZOO_AUTOTUNE=0 timeout "$test_s" python3 -m pytest -n "$workers" -v -rf --tb=short --timeout 120 \
    -p no:cacheprovider tests/kernels >"$out/kernel_tests.log" 2>&1
echo "kernel tests: exit $? (124 = time limit)"
grep -E "FAILED|ERROR" "$out/kernel_tests.log" | grep -v "^E " | sort -u | head -40
echo "passed: $(grep -c ' PASSED ' "$out/kernel_tests.log"), failed: $(grep -c ' FAILED ' "$out/kernel_tests.log")"

timeout $((suite_s + 20)) python3 benchmarks/gpu_suite.py --out "$out" --budget-s "$suite_s" "$@" \
    >"$out/suite.log" 2>&1
echo "suite: exit $?"
tail -60 "$out/suite.log"
