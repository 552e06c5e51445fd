"""Running the tasks within the budget (recording what was skipped or cut short), and the warm-up
workers that compile every kernel first."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from suite.records import Results, why


class BudgetSpent(BaseException):
    """Raised by the timer signal when the budget runs out mid-task (a BaseException, so that no
    ``except Exception`` -- ours, or torch.compile's fallbacks -- swallows it)."""


class Budget:
    """Seconds left until ``seconds - reserve`` after ``start`` (process start, ``time.monotonic()``; the
    reserve covers the exit)."""

    def __init__(self, seconds: float, reserve: float, start: float) -> None:
        self.start = start
        self.deadline = start + seconds - reserve

    def left(self) -> float:
        return self.deadline - time.monotonic()


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`BudgetSpent` in the enclosed code after ``seconds`` (SIGALRM, main thread)."""

    def fire(signum, frame):
        raise BudgetSpent

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Task:
    phase: str
    name: str
    run: Callable[[], Iterator[dict]]


def execute(tasks: list[Task], results: Results, budget: Budget, min_task_s: float) -> None:
    """Run the tasks in order until the budget is spent; record each skipped or interrupted one."""
    lost = None  # the task after which CUDA was lost
    for task in tasks:
        base = {"kind": "skipped", "phase": task.phase, "task": task.name}
        if lost is not None:
            results.add(dict(base, status=f"skipped: CUDA context lost after {lost}"))
            continue
        if task.run is None:
            results.add(dict(base, status="skipped: --quick (no torch.compile)"))
            continue
        if budget.left() < min_task_s:
            results.add(dict(base, status="skipped: budget"))
            continue
        start = time.monotonic()
        try:
            with deadline(budget.left()):
                for row in task.run():
                    results.add(dict(row, phase=task.phase, task=task.name))
        except BudgetSpent:
            results.add(dict(base, status="interrupted: budget"))
        except Exception as err:  # noqa: BLE001  (one broken task must not end the suite)
            results.add(dict(base, status=f"error: {why(err)}"))
            if cuda_lost():
                lost = task.name
        now = time.monotonic()
        results.meta.setdefault("task_s", {})[task.name] = round(now - start, 1)  # to size later runs
        results.write()
        print(f"[{now - budget.start:6.1f}s] {task.phase}: {task.name} ({now - start:.1f}s)")
        sys.stdout.flush()


def pending(tasks: list[Task], finished: set[str]) -> list[Task]:
    """The tasks an earlier sitting did not finish (``--resume``). A warm-up worker's kernel tasks are
    split by case (``"... case 2"``); each belongs to the whole task of that name."""
    return [t for t in tasks if re.sub(r" case \d+$", "", t.name) not in finished]


def longest_first(tasks: list[Task]) -> list[Task]:
    """The warm-up's order: the compile tasks first (a model's torch.compile takes a minute or more,
    a kernel task's Triton compiles seconds), so that the warm-up's deadline cuts kernel tasks, which
    the timed run then compiles cheaply, rather than a compile the timed run would repeat in full.
    Otherwise the plan's order (every worker walks the same list, so claims stay consistent)."""
    return sorted(tasks, key=lambda t: t.phase != "compile")


def cuda_lost() -> bool:
    """Whether CUDA is unusable in this process: a fault such as an illegal address is sticky, so every
    later call would fail too, and its rows would be errors of the first task's making."""
    if not torch.cuda.is_initialized():
        return False
    try:
        torch.cuda.synchronize()
    except Exception:  # noqa: BLE001  (whatever the runtime raises, CUDA is gone)
        return True
    return False


def claimed(run: Callable[[], Iterator[dict]], claim: Path) -> Callable[[], Iterator[dict]]:
    """``run`` for the warm-up worker that first creates ``claim``; nothing for the others. The
    workers walk the same task list and each takes the next unclaimed task, so the load balances."""

    def run_if_claimed() -> Iterator[dict]:
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return iter(())
        return run()

    return run_if_claimed


def warm_up(script: Path, args: argparse.Namespace, seconds: float) -> tuple[float, list[str]]:
    """Run the tasks once, split over ``--warm-workers`` processes that compile every Triton config
    and time none (``ATTNZOO_AUTOTUNE=compile``), and torch.compile the compiled rows' models: the
    compile caches on disk are then full, so the timed run spends its budget timing, not compiling
    one kernel after another. Returns the seconds it took and the workers' failed tasks (e.g. out of
    memory: those compile in the timed run instead)."""
    start = time.monotonic()
    n = args.warm_workers
    filters = [*(["--only", *args.only] if args.only else []), *(["--skip", *args.skip] if args.skip else [])]
    filters += ["--resume", str(args.resume)] if args.resume else []
    env = dict(os.environ, ATTNZOO_AUTOTUNE="compile")
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i in range(n):
            cmd = [sys.executable, str(script), "--warm-claims", f"{tmp}/claims", "--out", f"{tmp}/{i}"]
            cmd += ["--budget-s", str(seconds), "--device", args.device, *filters]
            cmd += ["--quick"] if args.quick else []
            with open(f"{tmp}/{i}.log", "w") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        for i, proc in enumerate(procs):
            try:
                proc.wait(timeout=max(1.0, start + seconds + 15 - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode != 0:
                tail = Path(f"{tmp}/{i}.log").read_text().splitlines()[-5:]
                print(f"warm-up worker {i} exited {proc.returncode}:", *tail, sep="\n  ")
        failed = [
            f"{row.get('task')}: {row['status']}"
            for path in sorted(Path(tmp).glob("*/*.json"))
            for row in json.loads(path.read_text())["rows"]
            if "error" in row["status"] or "out of memory" in row["status"]
        ]
    for line in failed:
        print(f"warm-up: {line}")
    return time.monotonic() - start, failed
