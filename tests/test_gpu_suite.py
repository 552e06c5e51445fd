"""benchmarks/gpu_suite.py: a --quick CPU run without the official anchors writes a well-formed JSON
and table, and the budget stops the run cleanly, recording what it skipped or interrupted."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"
# a model pair whose anchor is official code (missing here; "infer" also selects its compile task, skipped
# under --quick), two kernel tasks and the long-sequence one (q, k, v redrawn at 65 tokens under --quick)
ONLY = (
    "infvit_linear_4l infer",
    "infsa_linear @32 fp32",
    "bilevel_routing_attention @32 fp32",
    "infsa_linear @65 tokens",
)


def _suite_module(name: str):
    sys.path.insert(0, str(SUITE.parent))
    try:
        return importlib.import_module(f"suite.{name}")
    finally:
        sys.path.remove(str(SUITE.parent))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("results")
    env = dict(os.environ, ATTNZOO_ANCHORS=str(out / "no-anchors"), CUDA_VISIBLE_DEVICES="")
    env.pop("ATTNZOO_KERNELS", None)
    proc = subprocess.run(
        [sys.executable, str(SUITE), "--quick", "--out", str(out), "--budget-s", "300", "--warm-workers", "2"]
        + ["--only", *ONLY],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("cpu-*.json")
    assert path.name == f"cpu-{time.strftime('%Y-%m-%d', time.gmtime())}.json"
    return json.loads(path.read_text()), proc.stdout, path


def test_json_holds_run_facts_and_rows(quick_run):
    data, _, _ = quick_run
    meta = data["meta"]
    for key in ("device", "date", "torch", "triton", "timm", "peaks", "method"):
        assert key in meta
    assert meta["device"] == "cpu" and meta["peaks"] is None and meta["quick"] is True
    assert meta["warm_workers"] == 2 and meta["warm_up_s"] > 0 and meta["warm_up_failed"] == []
    # every task that ran has its seconds (the compile task is skipped under --quick: none)
    ran = {r["task"] for r in data["rows"] if r["kind"] != "skipped"}
    assert set(meta["task_s"]) == ran and all(s >= 0 for s in meta["task_s"].values())
    rows = data["rows"]
    (model,) = [r for r in rows if r["kind"] == "model"]
    assert model["status"] == "anchor missing" and model["anchor_img_s"] is None
    assert model["ours_img_s"] > 0 and model["model"] == "infvit_linear_4l" and model["backend"] == "torch"
    assert model["ours_first_step"]["first_step_s"] > 0 and model["ours_first_step"]["compile_cache"] == {}
    kernels = [r for r in rows if r["kind"] == "kernel"]
    assert {r["op"] for r in kernels} == {"infsa_linear", "bilevel_routing_attention"}
    assert {r["pass"] for r in kernels} == {"fwd", "fwd+bwd"}
    long = [r for r in kernels if r["input"] == "65 tokens"]
    assert len(long) == 2 and long[0]["shape"].startswith("1x2x65x64, 1x2x65x64, 1x2x65x64")
    for r in kernels:
        assert r["backend"] == "torch (reference)" and r["ours_ms"] > 0
        assert r["dtype"] == ("bf16" if r in long else "fp32")
        assert r["flops"] and r["bytes"] > 0 and r["pct_peak_tflops"] is None
        assert r["status"] == "ok" and r["anchor_ms"] > 0 and r["speedup"] > 0
        assert r["ours_gpu_ms"] is None and r["gpu_speedup"] is None  # no device events on the CPU
    (skipped,) = [r for r in rows if r["kind"] == "skipped"]
    assert skipped["task"] == "infvit_linear_4l infer compiled" and skipped["status"].startswith("skipped")


def test_table_is_well_formed(quick_run):
    data, stdout, _ = quick_run
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    model_lines = [line for line in lines if line.count("|") == 11]
    kernel_lines = [line for line in lines if line.count("|") == 16]
    assert len(model_lines) + len(kernel_lines) == len(lines)
    assert len(model_lines) == 2 + 1  # header, rule, one model row
    assert len(kernel_lines) == 2 + sum(r["kind"] == "kernel" for r in data["rows"])
    assert "Not run: infvit_linear_4l infer compiled (skipped: --quick" in stdout


def test_table_of_a_saved_run(quick_run):
    """``--table JSON`` prints the tables the run printed, from its file alone."""
    _, stdout, path = quick_run
    proc = subprocess.run(
        [sys.executable, str(SUITE), "--table", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout.startswith(f"{path.name}:\n")
    tables = [line for line in stdout.splitlines() if line.startswith("|")]
    assert tables and [line for line in proc.stdout.splitlines() if line.startswith("|")] == tables


def test_resume_keeps_finished_tasks_and_runs_the_rest(quick_run, tmp_path):
    """--resume: a second sitting writes into the first one's file, keeps the finished tasks' rows (not
    re-run), runs what the first left out or did not finish (killed mid-task: rows, but no end in
    meta.task_s), and refuses a file from other versions."""
    data, _, path = quick_run
    killed = "infsa_linear @32 fp32"
    first = json.loads(path.read_text())
    del first["meta"]["task_s"][killed]  # as a run killed while measuring it leaves the file
    saved = tmp_path / path.name
    saved.write_text(json.dumps(first))
    env = dict(os.environ, ATTNZOO_ANCHORS=str(tmp_path / "no-anchors"), CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, str(SUITE), "--quick", "--budget-s", "200", "--out", str(tmp_path)]
    cmd += ["--resume", str(saved)]
    proc = subprocess.run(
        cmd + ["--only", *ONLY, "infsa_pure @32 fp32"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads(saved.read_text())
    kept = [r for r in data["rows"] if r["kind"] != "skipped" and r["task"] != killed]
    assert resumed["rows"][: len(kept)] == kept  # kept as they were, not measured again
    new = resumed["rows"][len(kept) :]
    assert [r["task"] for r in new] == ["infsa_pure @32 fp32"] * 2 + [killed] * 2 + [  # plan order
        "infvit_linear_4l infer compiled"  # skipped under --quick, so never finished
    ]
    assert [s["date"] for s in resumed["meta"]["earlier_sittings"]] == [data["meta"]["date"]]
    assert set(resumed["meta"]["task_s"]) == set(data["meta"]["task_s"]) | {"infsa_pure @32 fp32"}

    other = json.loads(saved.read_text())
    other["meta"]["torch"] = "0.0"
    saved.write_text(json.dumps(other))
    proc = subprocess.run(
        cmd + ["--only", "infsa_pure @32 fp32", "--warm-workers", "1"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0 and "not the same run (torch '0.0' != " in proc.stderr
    assert "warm-up" not in proc.stdout  # refused before any worker started
    assert json.loads(saved.read_text()) == other  # the refused file is left as it was


def test_warm_up_starts_the_compile_tasks_first(runner):
    phases = ["models eager", "kernels 224", "compile", "kernels 224", "compile"]
    tasks = [runner.Task(phase, str(i), None) for i, phase in enumerate(phases)]
    assert [t.name for t in runner.longest_first(tasks)] == ["2", "4", "0", "1", "3"]


def test_pending_matches_a_warm_up_workers_split_tasks(runner):
    """A finished task leaves out its warm-up split ("... case i") too, and nothing else."""
    names = ["a @224 bf16", "a @224 bf16 case 0", "a @224 bf16 case 1", "a @224 fp32 case 0", "b"]
    tasks = [runner.Task("p", name, None) for name in names]
    left = runner.pending(tasks, {"a @224 bf16", "b"})
    assert [t.name for t in left] == ["a @224 fp32 case 0"]


def test_first_call_reports_compile_cache_events(monkeypatch, tmp_path):
    """A compiled function's first call misses an empty Inductor cache; the same graph compiled again
    (a new process would do the same) hits it, and the row says which happened."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    timing = _suite_module("timing")
    x = torch.randn(8)
    cpu = torch.device("cpu")
    try:
        cold = timing.first_call(lambda: torch.compile(lambda t: (t * 2 + 1).sin().sum())(x), cpu)
        warm = timing.first_call(lambda: torch.compile(lambda t: (t * 2 + 1).sin().sum())(x), cpu)
    finally:
        torch._dynamo.reset()
    assert cold["first_step_s"] > 0 and cold["compile_cache"]["inductor.fxgraph_cache_miss"] == 1
    assert warm["compile_cache"]["inductor.fxgraph_cache_hit"] == 1
    assert not any(key.endswith("_miss") for key in warm["compile_cache"])


def test_host_overhead_profiles_each_pass():
    """benchmarks/host_overhead.py (a GPU probe) runs on the CPU with --quick: a heading and timings per
    op and pass, each followed by cProfile's table."""
    proc = subprocess.run(
        [sys.executable, str(SUITE.parent / "host_overhead.py"), "--quick", "--ops", "infsa_pure"]
        + ["--calls", "2", "--top", "4"],
        capture_output=True,
        text=True,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=""),
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    blocks = proc.stdout.split("\n## ")[1:]
    assert [b.split(" (")[0] for b in blocks] == ["infsa_pure @32 bf16 fwd", "infsa_pure @32 bf16 fwd+bwd"]
    for block in blocks:
        assert "torch (reference)" in block and "wall " in block and "issue " in block
        assert "ncalls  tottime" in block and "reference.py" in block


@pytest.mark.parametrize("compiled", [False, True])
def test_model_first_step_is_where_compiling_happens(compiled, monkeypatch, tmp_path):
    """A model row's first step is timed apart; compiled, it is the step that compiles (an empty cache
    misses), not an eager step under the kernel recorder's dispatch mode, which torch.compile skips."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    model_rows, settings = _suite_module("model_rows"), _suite_module("settings")
    pair = model_rows.Pair("tiny", "none", lambda size: None)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 1000))
    try:
        rate, _, kernels, first = model_rows.images_per_s(
            model, pair, 8, True, compiled, torch.device("cpu"), settings.QUICK
        )
    finally:
        torch._dynamo.reset()
    assert rate > 0 and first["first_step_s"] >= 0  # an eager step of this model may round to 0.0 s
    misses = {key for key, n in first["compile_cache"].items() if key.endswith("_miss") and n}
    if compiled:
        assert kernels == "torch.compile" and "inductor.fxgraph_cache_miss" in misses
        assert first["first_step_s"] > 0.1  # it compiled
    else:
        assert kernels == "torch" and first["compile_cache"] == {}


@pytest.mark.parametrize("op", sorted(_suite_module("kernel_rows").OP_MODELS))
def test_flops_are_counted_on_fake_tensors(op):
    """The kernel rows count FLOPs on fake tensors (InfSA's reference at 16385 tokens would need ~75 GiB):
    the same count as a real run of the reference, forward and forward+backward."""
    from torch.utils.flop_counter import FlopCounterMode

    from attnzoo.kernels import use_kernels

    kernel_rows, settings = _suite_module("kernel_rows"), _suite_module("settings")
    label, size, batch = settings.QUICK.sizes[0]
    size = kernel_rows.op_size(op, size, settings.QUICK.halo_multiple)
    case = kernel_rows.capture(op, size, batch, torch.device("cpu"))[0]
    for backward in (False, True):
        prep = kernel_rows.prepare(case, torch.float32, backward)
        with use_kernels("torch"), FlopCounterMode(display=False) as counter:
            kernel_rows.step_fn(prep.ours, backward, prep.inputs)()
        real = counter.get_total_flops()
        assert real > 0 and kernel_rows.count_flops(prep, backward) == real
        assert all(t.grad is None for t in prep.inputs)  # the fake run leaves no fake gradient behind


@pytest.fixture(scope="module")
def runner():
    sys.path.insert(0, str(SUITE.parent))
    try:
        return importlib.import_module("suite.runner")
    finally:
        sys.path.remove(str(SUITE.parent))


def test_budget_interrupts_and_skips(runner, tmp_path):
    def slow():
        yield {"kind": "model", "status": "ok"}
        time.sleep(30)
        yield {"kind": "model", "status": "never"}

    def never():
        raise AssertionError("a task past the budget must not start")

    start = time.monotonic()
    results = runner.Results(tmp_path / "r.json", {"device": "cpu"}, start)
    budget = runner.Budget(0.5, 0.0, start)
    tasks = [runner.Task("models eager", "slow", slow), runner.Task("kernels 224", "late", never)]
    runner.execute(tasks, results, budget, min_task_s=0.1)
    assert time.monotonic() - start < 5
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r.get("task"), r["status"]) for r in rows] == [
        ("slow", "ok"),
        ("slow", "interrupted: budget"),
        ("late", "skipped: budget"),
    ]


def test_lost_cuda_context_skips_the_rest(runner, tmp_path, monkeypatch):
    """After a sticky CUDA fault the later tasks are recorded as skipped, naming the task that lost it,
    instead of each failing with the same error."""

    def fault():
        yield {"kind": "kernel", "status": "ok"}
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def never():
        raise AssertionError("a task after a lost context must not start")

    monkeypatch.setattr(runner, "cuda_lost", lambda: True)
    start = time.monotonic()
    results = runner.Results(tmp_path / "r.json", {"device": "cpu"}, start)
    tasks = [runner.Task("kernels 224", "karat", fault), runner.Task("kernels 224", "later", never)]
    runner.execute(tasks, results, runner.Budget(600.0, 0.0, start), min_task_s=0.1)
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r.get("task"), r["status"].split(":")[0]) for r in rows] == [
        ("karat", "ok"),
        ("karat", "error"),
        ("later", "skipped"),
    ]
    assert rows[-1]["status"] == "skipped: CUDA context lost after karat"
