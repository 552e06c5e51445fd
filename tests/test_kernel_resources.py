"""benchmarks/kernel_resources.py: ptxas's report parses, and one op's kernels compile for sm_90 on this
machine (no GPU needed) with a row per kernel of its forward and backward."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "benchmarks" / "kernel_resources.py"

LOG = """ptxas info    : 35 bytes gmem
ptxas info    : Compiling entry function 'fwd_kernel' for 'sm_90a'
ptxas info    : Function properties for fwd_kernel
    1712 bytes stack frame, 2580 bytes spill stores, 4140 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 1712 bytes cumulative stack size
"""


def _tool_module():
    spec = importlib.util.spec_from_file_location("kernel_resources", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_parse_ptxas_log():
    parse = _tool_module().parse_ptxas_log
    assert parse(LOG) == {"registers": 255, "stack": 1712, "spill_stores": 2580, "spill_loads": 4140}
    with pytest.raises(ValueError, match="not a ptxas -v report"):
        parse("ptxas info    : 0 bytes gmem\n")


def test_one_op_compiles_for_sm90_without_a_gpu(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "rows.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(CUDA_VISIBLE_DEVICES="", TRITON_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [
        sys.executable,
        str(TOOL),
        "--ops",
        "fourier_karat",
        "--dtypes",
        "bf16",
        "--quick",
        "--first-config",
    ]
    proc = subprocess.run(cmd + ["--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    # KArAt's forward, dQ and dK/dC kernels, each once (the quick model's calls share one config)
    assert sorted(r["kernel"] for r in rows) == ["dk_dcoef_kernel", "dq_kernel", "fwd_kernel"]
    for r in rows:
        assert r["op"] == "fourier_karat" and r["dtype"] == "bf16"
        assert 0 < r["registers"] <= 255 and r["shared"] > 0 and r["num_stages"] == 1
        assert r["constexprs"]["BD"] == 64 and r["inputs"]
    assert "3 kernel configs compiled" in proc.stdout
    assert "| fourier_karat | bf16 | fwd_kernel |" in proc.stdout
