"""Where a kernel call's time goes when the GPU is idle most of it. In the suite's rows at 224, KArAt's
forward took 1.1 ms of wall time per call for 0.04 ms of GPU time; halo attention's forward took 0.59
ms at 224 and 0.65 ms at 800x1333 (3.75x the positions), InfSA's 0.23 and 0.42 ms (5.3x the tokens).
Per op, at the first case the suite measures (its family's smallest model, 224 input, batch 8),
forward and forward+backward:

- wall ms: one synchronised call, as the suite's rows (median over ``--calls``);
- issue ms: ``--calls`` calls back to back, one synchronise at the end, divided by the calls (the
  host's cost per call while the GPU keeps up);
- GPU ms: the device activities of one call (profiler);
- the functions with the most own time over ``--calls`` calls (cProfile), which say whose host code
  it is (Triton's launcher, the autotuner, the op's checks, torch's dispatch).

    python benchmarks/host_overhead.py [--ops OP ...] [--dtype bf16|fp32] [--calls 100] [--top 12]

``--quick``: the suite's tiny sizes, so the script runs on the CPU (the ops then run their torch
reference, which is profiled instead).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite.kernel_rows import OP_MODELS, capture, op_size, prepare, step_fn  # noqa: E402
from suite.settings import BF16, FP32, FULL, QUICK  # noqa: E402
from suite.timing import gpu_time, measure, sync  # noqa: E402

from attnzoo.kernels import use_kernels, use_triton  # noqa: E402


def issue_ms(step, device: torch.device, calls: int) -> float:
    """Host milliseconds per call with one synchronise for ``calls`` calls."""
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    sync(device)
    return (time.perf_counter() - start) * 1e3 / calls


def top_functions(step, calls: int, top: int) -> str:
    """cProfile's report of ``calls`` calls: the ``top`` functions by own time."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        step()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    report = out.getvalue()
    return report[report.find("ncalls") :].rstrip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="+", default=sorted(OP_MODELS), choices=sorted(OP_MODELS))
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (runs on the CPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device, dtype = torch.device(args.device), BF16 if args.dtype == "bf16" else FP32
    settings = QUICK if args.quick else FULL
    _, size, batch = settings.sizes[0]
    print(f"{torch.__version__} on {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}")
    for op in args.ops:
        case = capture(op, op_size(op, size, settings.halo_multiple), batch, device)[0]
        for backward in (False, True):
            prep = prepare(case, dtype, backward)
            with use_kernels("auto"):
                backend = "triton" if use_triton(*prep.inputs) else "torch (reference)"
                step = step_fn(prep.ours, backward, prep.inputs)
                wall, _ = measure(step, device, args.calls, 3)
                issue = issue_ms(step, device, args.calls)
                gpu, launches, note = gpu_time(step, device, min(args.calls, 10))
                report = top_functions(step, args.calls, args.top)
            passes = "fwd+bwd" if backward else "fwd"
            name = f"{op} @{case.size} {args.dtype} {passes} ({case.shape}; {backend})"
            gpu_text = "-" if gpu is None else f"{gpu:.3f} ms ({launches:g} activities)"
            if note:
                gpu_text += f" ({note})"
            print(f"\n## {name}\nwall {wall:.3f} ms, issue {issue:.3f} ms, GPU {gpu_text}")
            print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
