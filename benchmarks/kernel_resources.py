"""Registers, spills and shared memory of every Triton kernel config at the suite's shapes, compiled for
a GPU architecture on any machine, a CPU-only one included.

A kernel that spills registers to local memory runs several times slower than one that does not, and
ptxas reports it at compile time, so no GPU is needed to see it. The ops run on CPU tensors with the
Triton backend forced. Every launch compiles each autotune config of its kernel for the target
(Triton's compiler, then ptxas ``-v``) and launches nothing. Outputs are therefore garbage and only
their shapes matter. The shapes are the suite's: each op in its family's smallest model
(``suite.kernel_rows.capture``), forward and backward, bf16 and fp32.

    python benchmarks/kernel_resources.py [--ops OP ...] [--dtypes bf16 fp32] [--arch 90]
                                          [--first-config] [--quick] [--json FILE]

``--first-config``: only each autotuner's first config (Triton's default, and the interpreter's).
``--quick``: the suite's tiny shapes. Needs Triton's bundled ptxas (the ``triton`` wheel has one).
This patches Triton's runtime for the whole process, so run it as a script, not inside other work.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

import attnzoo.kernels.dispatch
from attnzoo.kernels.common.tuning import TUNED

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite.kernel_rows import OP_MODELS, capture, op_size, prepare, step_fn, swapped  # noqa: E402
from suite.settings import BF16, DTYPE_NAMES, FP32, FULL, QUICK  # noqa: E402

# ptxas -v: "N bytes stack frame, N bytes spill stores, N bytes spill loads" and "Used N registers".
_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


@dataclass
class Compiled:
    """One kernel config as compiled for the target, and where the suite's shapes met it."""

    op: str
    dtype: str
    kernel: str
    constexprs: dict[str, Any]
    num_warps: int
    num_stages: int
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    shared: int
    inputs: list[str] = field(default_factory=list)


def parse_ptxas_log(log: str) -> dict[str, int]:
    """Registers, stack frame and spill bytes from ``ptxas -v``'s report of one kernel."""
    spills, registers = _SPILLS.search(log), _REGISTERS.search(log)
    if spills is None or registers is None:
        raise ValueError(f"not a ptxas -v report of one kernel:\n{log}")
    stack, stores, loads = map(int, spills.groups())
    return dict(registers=int(registers.group(1)), stack=stack, spill_stores=stores, spill_loads=loads)


class _TargetOnly:
    """A Triton driver that names a target and has no device: enough to compile, nothing to launch."""

    def __init__(self, arch: int) -> None:
        self.target = GPUTarget("cuda", arch, 32)

    def get_current_target(self) -> GPUTarget:
        return self.target

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0


def _spec(value: Any) -> Any:
    """What Triton specialises a launch argument on: a tensor's dtype, an int's 1 / 16-divisibility."""
    if isinstance(value, torch.Tensor):
        return str(value.dtype)
    if isinstance(value, bool) or not isinstance(value, int):
        return type(value).__name__
    return ("int", value == 1, value % 16 == 0)


class Compiler:
    """Patches Triton's launch path so that each distinct launch compiles every config, once."""

    def __init__(self, arch: int, first_config: bool) -> None:
        self.arch, self.first_config = arch, first_config
        self.context: dict[str, str] = {}  # op, dtype, inputs of the call now running
        self.compiled: dict[tuple, Compiled] = {}
        self.every = {id(tuner): configs for tuner, configs in TUNED.values()}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        jit_run, tuner_run = JITFunction.run, Autotuner.run
        compiler = self

        def compile_run(kernel: JITFunction, *args, grid, warmup, **kwargs):
            return compiler._compile(jit_run, kernel, args, grid, kwargs)

        def compile_configs(tuner: Autotuner, *args, **kwargs):
            configs = compiler.every.get(id(tuner), tuner.configs)
            for config in configs[:1] if compiler.first_config else configs:
                tuner.fn.run(*args, **kwargs, **config.all_kwargs())

        saved = driver._active  # noqa: SLF001  (Triton keeps no public getter of the set driver)
        driver.set_active(_TargetOnly(self.arch))
        JITFunction.run, Autotuner.run = compile_run, compile_configs
        always, dump = knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log
        knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = True, True
        try:
            yield
        finally:
            JITFunction.run, Autotuner.run = jit_run, tuner_run
            knobs.compilation.always_compile, knobs.nvidia.dump_ptxas_log = always, dump
            driver._active = saved  # noqa: SLF001

    def _compile(self, jit_run: Callable, kernel: JITFunction, args: tuple, grid, kwargs: dict) -> None:
        names = [p.name for p in kernel.params]
        bound = dict(zip(names, args, strict=False)) | kwargs
        constexprs = {p.name: bound[p.name] for p in kernel.params if p.is_constexpr and p.name in bound}
        warps, stages = kwargs.get("num_warps", 4), kwargs.get("num_stages", 3)
        spec = tuple(_spec(bound[n]) for n in names if n in bound and n not in constexprs)
        key = (kernel.fn.__name__, tuple(sorted(constexprs.items())), warps, stages, spec, self.context["op"])
        if key not in self.compiled:
            log = io.StringIO()
            with contextlib.redirect_stdout(log):
                compiled = jit_run(kernel, *args, grid=grid, warmup=True, **kwargs)
            self.compiled[key] = Compiled(
                op=self.context["op"],
                dtype=self.context["dtype"],
                kernel=kernel.fn.__name__,
                constexprs=constexprs,
                num_warps=compiled.metadata.num_warps,
                num_stages=compiled.metadata.num_stages,
                shared=compiled.metadata.shared,
                **parse_ptxas_log(log.getvalue()),
            )
        seen = self.compiled[key].inputs
        if self.context["inputs"] not in seen:
            seen.append(self.context["inputs"])


def triton_on_cpu() -> contextlib.AbstractContextManager[None]:
    """Every attnzoo op takes its Triton path on CPU tensors where the kernel supports the problem."""

    def use_triton(*tensors: torch.Tensor, supported: bool = True, op: str = "") -> bool:
        return supported

    return swapped(attnzoo.kernels.dispatch.use_triton, use_triton)


def collect(ops: list[str], dtypes: list[torch.dtype], settings, compiler: Compiler) -> list[str]:
    """Run every op's forward + backward at the suite's shapes; returns the calls that failed."""
    failures = []
    cpu = torch.device("cpu")
    for op in ops:
        for label, size, batch in settings.sizes:
            for case in capture(op, op_size(op, size, settings.halo_multiple), batch, cpu):
                for dtype in dtypes:
                    inputs = f"{label}: {case.shape}"
                    compiler.context = {"op": op, "dtype": DTYPE_NAMES[dtype], "inputs": inputs}
                    prep = prepare(case, dtype, backward=True)
                    try:
                        with compiler.active(), triton_on_cpu():
                            step_fn(prep.ours, True, prep.inputs)()
                    except Exception as err:  # noqa: BLE001  (reported, the other calls go on)
                        failures.append(f"{op} {DTYPE_NAMES[dtype]} {label} {case.shape}: {err!r:.300}")
    return failures


def table(rows: list[Compiled]) -> str:
    """A Markdown table, spilling configs first."""
    lines = [
        "| op | dtype | kernel | tiles | warps / stages | registers | spill st / ld B | stack B | smem KiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (-r.spill_stores, r.op, r.dtype, r.kernel)):
        blocks = {k: v for k, v in r.constexprs.items() if k.startswith("B") and isinstance(v, int)}
        tiles = " ".join(f"{k}={v}" for k, v in blocks.items())
        lines.append(
            f"| {r.op} | {r.dtype} | {r.kernel} | {tiles} | {r.num_warps} / {r.num_stages} | {r.registers} | "
            f"{r.spill_stores} / {r.spill_loads} | {r.stack} | {r.shared / 1024:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="+", default=sorted(OP_MODELS), choices=sorted(OP_MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    parser.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100 / H200)")
    parser.add_argument("--first-config", action="store_true", help="only each autotuner's first config")
    parser.add_argument("--quick", action="store_true", help="the suite's tiny shapes")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        parser.error("unset TRITON_INTERPRET: the kernels must be jitted, not interpreted, to compile them")
    compiler = Compiler(args.arch, args.first_config)
    dtypes = [{"bf16": BF16, "fp32": FP32}[d] for d in args.dtypes]
    failures = collect(args.ops, dtypes, QUICK if args.quick else FULL, compiler)
    rows = list(compiler.compiled.values())
    spilling = sum(r.spill_stores > 0 for r in rows)
    print(
        f"sm_{args.arch}, triton {triton.__version__}: {len(rows)} kernel configs compiled, {spilling} spill."
    )
    print(table(rows))
    for failure in failures:
        print("failed:", failure)
    if args.json:
        lines = ",\n".join(json.dumps(asdict(r)) for r in rows)  # a row a line
        args.json.write_text(f"[\n{lines}\n]\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
