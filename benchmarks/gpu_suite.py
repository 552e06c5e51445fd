"""One-command GPU benchmark suite: attnzoo's kernels and models against their anchors, within a budget.

    python benchmarks/gpu_suite.py [--out benchmarks/results] [--budget-s 240] [--quick]

Order (most important first; the run stops cleanly when the budget is spent, and every task it did not
start or finish is recorded as skipped):

1. models, eager: training images/s (bf16 autocast, SGD step, batch 64 at 224, channels_last for the
   conv nets) and inference images/s (bf16 autocast), peak memory, each next to its anchor with the
   same weights (loaded through ``attnzoo.convert_official``): timm ``halonet26t`` / ``convit_tiny``,
   the official BiFormer and Infinite Self-Attention code (``benchmarks/anchors.py``);
2. kernels at 224, then 3. at 800x1333: every registered op at the inputs it really receives in the
   smallest model of its family (:data:`OP_MODELS`; captured by wrapping the public op, or for halo
   attention the whole layer, during one forward, batch 8 / 2), bf16 then fp32, forward and
   forward+backward, against an anchor where one computes the comparable op (timm ``HaloAttn`` with
   the same weights; the official BiFormer gather formulation; SDPA for InfSA / linear / top-k
   attention). HaloNet runs at the nearest multiple of 256 (224 -> 256, 800x1333 -> 768x1280), the
   sizes at which timm's HaloAttn (whole blocks only) runs;
4. the issue's other shapes: halo attention at az_halonet_h0's stages (many narrow heads) and InfSA at
   16385 tokens (ViT-B's 12 heads; q, k, v drawn at random);
5. torch.compile'd models (ours and anchor), then FlexAttention (compiled) for bi-level routing.

Numbers: kernel times are medians over CUDA events of one synchronised call after two warm-up calls
(Triton compile and autotune happen there): wall time, host work between launches included, which
dominates at small shapes; GPU ms is the summed duration of the device activities (kernels, copies,
memsets) one call runs, from the profiler, and TFLOP/s and GB/s are taken from it (from the wall time
where there is none: the CPU); kernel memory is the peak above what was allocated before the timed calls;
model memory is the peak of the timed steps (weights, optimiser state, activations), and each model's
first step is timed apart, with the compile-cache hits and misses it caused. FLOPs are
``torch.utils.flop_counter`` counts (matmul / conv / SDPA) of the same call on the torch reference
path (halo attention: the whole layer, projections included); bytes are the minimum traffic (fwd:
inputs + output; fwd+bwd adds grad-out, inputs and grad-inputs). Peaks come from :data:`PEAKS` by
device name (unknown GPU: null). fp32 rows use the non-tensor-core fp32 peak: the kernels use IEEE
fp32 dots and torch's matmul precision is 'highest'.

Warm-up (``--warm-workers N``): before the timed run, N processes run every task once (the compile
tasks first, the longest), compiling every autotune config of every kernel (``ATTNZOO_AUTOTUNE=compile``:
nothing timed or cached as a choice) and the torch.compile rows' graphs, into the on-disk caches the
timed run then reads.

This file plans the run and parses the command line; the pieces live in ``benchmarks/suite/``
(settings, timing, kernel rows, model rows, the runner and warm-up, the results file and tables).

Results: ``<out>/<gpu-name-slug>-<YYYY-MM-DD>.json``, rewritten after every row; the Markdown table
is printed at the end (``--table JSON ...`` prints it again from saved files). ``--resume JSON`` goes
on with a run that a time limit cut short (a device call of at most 10 minutes): it keeps the rows of
the tasks that run finished, runs the others, and writes ``<out>/<that file's name>`` with both and
the earlier sittings in ``meta.earlier_sittings``; a file from another GPU or other versions is refused.
``--quick``: tiny shapes and one iteration, so it runs on the CPU too (the ops then run their torch
reference: each row names its backend); compile rows are skipped there.
"""

from __future__ import annotations

import time

_T0 = time.monotonic()  # the budget counts from here (before the heavy imports)

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import timm  # noqa: E402
import torch  # noqa: E402

import attnzoo  # noqa: E402, F401  (registers the models)
from attnzoo.kernels.registry import KERNELS  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anchors  # noqa: E402
from suite.kernel_rows import OP_MODELS, OP_ORDER, Case, capture, kernel_rows, op_size, redrawn  # noqa: E402
from suite.model_rows import PAIRS, model_row  # noqa: E402
from suite.records import Results, markdown, resumed, rnd, slug  # noqa: E402
from suite.runner import Budget, Task, claimed, execute, longest_first, pending, warm_up  # noqa: E402
from suite.settings import BF16, DTYPE_NAMES, FP32, FULL, QUICK, WARM, Settings, device_peaks  # noqa: E402


def run_meta(device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    commits = {
        repo: (anchors.ANCHORS / repo / "COMMIT").read_text().strip()
        for repo in (anchors.BIFORMER, anchors.INFSA)
        if (anchors.ANCHORS / repo / "COMMIT").is_file()
    }
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": triton_version,
        "timm": timm.__version__,
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "budget_s": args.budget_s,
        "quick": args.quick,
        "peaks": device_peaks(device),
        "anchor_commits": commits,
        "method": __doc__.split("Numbers: ")[1].split("\n\nResults")[0].replace("\n", " "),
    }


def plan(device: torch.device, s: Settings, peaks) -> list[Task]:
    """Every task, most important first: eager models, kernels at 224, at 800x1333, compiled."""
    tasks = []
    for pair in PAIRS:
        for train in (True, False):
            mode = "train" if train else "infer"
            tasks.append(
                Task("models eager", f"{pair.ours} {mode}", _bind(model_row, pair, train, False, device, s))
            )
    cache: dict[tuple[str, str, str | None], list[Case]] = {}

    def cases(op: str, label: str, size: tuple[int, int], batch: int, model: str | None = None) -> list[Case]:
        """The op's captured calls, once per (op, input, model) for every task that times them."""
        if (op, label, model) not in cache:
            cache[op, label, model] = capture(op, op_size(op, size, s.halo_multiple), batch, device, model)
        return cache[op, label, model]

    ops = sorted(KERNELS, key=lambda op: (OP_ORDER.index(op) if op in OP_ORDER else len(OP_ORDER), op))
    for label, size, batch in s.sizes:
        for dtype in (BF16, FP32):
            for op in ops:
                name = f"{op} @{label} {DTYPE_NAMES[dtype]}"
                if op not in OP_MODELS:
                    tasks.append(Task(f"kernels {label}", name, _unsupported(op)))
                    continue

                def run(op=op, label=label, size=size, batch=batch, dtype=dtype, only=None) -> Iterator[dict]:
                    for i, case in enumerate(cases(op, label, size, batch)):
                        if only in (None, i):
                            yield from kernel_rows(case, dtype, device, s, peaks)

                if s.split_cases:
                    for i in range(s.split_cases):
                        tasks.append(
                            Task(f"kernels {label}", f"{name} case {i}", functools.partial(run, only=i))
                        )
                else:
                    tasks.append(Task(f"kernels {label}", name, run))
    tasks += extra_kernel_tasks(cases, device, s, peaks)
    for pair in PAIRS:
        for train in (False, True):
            mode = "train" if train else "infer"
            name = f"{pair.ours} {mode} compiled"
            tasks.append(
                Task("compile", name, _bind(model_row, pair, train, True, device, s) if s.compile else None)
            )
    label, size, batch = s.sizes[0]
    op = "bilevel_routing_attention"

    def flex() -> Iterator[dict]:
        for case in cases(op, label, size, batch):
            yield from kernel_rows(case, BF16, device, s, peaks, flex=True)

    tasks.append(Task("compile", f"{op} @{label} bf16 vs flex_attention", flex if s.compile else None))
    return tasks


def extra_kernel_tasks(
    cases: Callable[..., list[Case]], device: torch.device, s: Settings, peaks
) -> list[Task]:
    """The shapes the issue names beyond each family's smallest model: halo attention at
    az_halonet_h0's stages (many narrow heads), and InfSA at 16385 tokens (:attr:`Settings.long_tokens`,
    ViT-B's heads at a 2048 input), bf16 then fp32 for halo, bf16 for InfSA (as the H100 baseline).
    ``cases``: the plan's capture cache."""
    label, size, batch = s.sizes[0]

    def halo_h0(dtype: torch.dtype) -> Iterator[dict]:
        for case in cases("halo_attention", label, size, batch, "az_halonet_h0"):
            yield from kernel_rows(case, dtype, device, s, peaks)

    def long_infsa(op: str) -> Iterator[dict]:
        first = cases(op, label, size, batch)[0]  # the 224 call, its q, k, v drawn again at length
        yield from kernel_rows(redrawn(first, *s.long_tokens), BF16, device, s, peaks)

    tasks = [
        Task(
            "kernels extra",
            f"halo_attention (az_halonet_h0) @{label} {DTYPE_NAMES[dtype]}",  # apart from "halo_attention @"
            _bind(halo_h0, dtype),
        )
        for dtype in (BF16, FP32)
    ]
    tokens = s.long_tokens[-1]
    return tasks + [
        Task("kernels extra", f"{op} @{tokens} tokens bf16", _bind(long_infsa, op))
        for op in ("infsa_pure", "infsa_linear")
    ]


def _bind(fn: Callable[..., Iterator[dict]], *args: Any) -> Callable[[], Iterator[dict]]:
    return lambda: fn(*args)


def _unsupported(op: str) -> Callable[[], Iterator[dict]]:
    def run() -> Iterator[dict]:
        yield {"kind": "kernel", "op": op, "status": "skipped: no model in OP_MODELS runs it"}

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--budget-s", type=float, default=240.0, help="wall clock for the whole run")
    parser.add_argument("--reserve-s", type=float, default=10.0, help="kept back for printing and exit")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one iteration (runs on CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="run only tasks whose name contains one")
    parser.add_argument("--skip", nargs="+", metavar="TEXT", help="leave out tasks whose name contains one")
    parser.add_argument(
        "--warm-workers", type=int, default=0, help="processes that compile every task's kernels first"
    )
    parser.add_argument("--warm-share", type=float, default=0.4, help="the budget share the warm-up may take")
    parser.add_argument("--warm-claims", type=Path, help=argparse.SUPPRESS)  # a warm-up worker's claim folder
    parser.add_argument(
        "--table", type=Path, nargs="+", metavar="JSON", help="print saved runs' tables, run nothing"
    )
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="JSON",
        help="continue an earlier run (same GPU and versions): keep its finished tasks, run the rest; "
        "writes --out/<its name>",
    )
    args = parser.parse_args(argv)
    if args.table:
        for path in args.table:
            saved = json.loads(path.read_text())
            print(f"{path.name}:", markdown(saved["meta"], saved["rows"]), sep="\n", end="\n\n")
        return 0
    device = torch.device(args.device)
    settings = QUICK if args.quick else WARM if args.warm_claims else FULL
    if device.type == "cuda":  # one compiled graph per shape: don't fall back to eager after 8
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 1024)
    meta, rows, done = run_meta(device, args), [], set()
    if args.resume:  # checked before any warm-up; a warm-up worker only leaves out the finished tasks
        meta, rows, done = resumed(args.resume, meta)
    warm_s, warm_failed = None, []
    if args.warm_workers > 0:
        warm_s, warm_failed = warm_up(Path(__file__).resolve(), args, args.warm_share * args.budget_s)
    if args.warm_claims and hasattr(torch._inductor.config, "autotune_local_cache"):
        # Inductor's own config picks, timed while other workers share the GPU, are not to be kept.
        torch._inductor.config.autotune_local_cache = False
    meta.update(warm_up_s=rnd(warm_s, 1), warm_workers=args.warm_workers, warm_up_failed=warm_failed)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.resume and not args.warm_claims:  # --out/<its name>: in place when --out holds it
        path = args.out / args.resume.name
    else:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        path, rows = args.out / f"{slug(meta['device'])}-{stamp}.json", []
    results = Results(path, meta, _T0, rows)
    print(f"writing {results.path} (budget {args.budget_s:.0f} s)")
    budget = Budget(args.budget_s, args.reserve_s, _T0)
    tasks = pending(plan(device, settings, meta["peaks"]), done)
    if args.only:
        tasks = [t for t in tasks if any(text in t.name for text in args.only)]
    if args.skip:
        tasks = [t for t in tasks if not any(text in t.name for text in args.skip)]
    if args.warm_claims:
        args.warm_claims.mkdir(parents=True, exist_ok=True)
        tasks = [
            Task(t.phase, t.name, t.run and claimed(t.run, args.warm_claims / str(i)))
            for i, t in enumerate(longest_first(tasks))
        ]
    execute(tasks, results, budget, min_task_s=2.0)
    results.write()
    print(markdown(results.meta, results.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
