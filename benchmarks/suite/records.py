"""The results file (JSON, rewritten after every row) and the tables printed from it."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class Results:
    """The JSON file: run facts plus every row, rewritten (atomically) after each row."""

    def __init__(self, path: Path, meta: dict[str, Any], start: float, rows: Sequence[dict] = ()) -> None:
        """``start``: ``time.monotonic()`` at process start, whence ``meta["elapsed_s"]`` counts;
        ``rows``: an earlier sitting's finished rows (``--resume``)."""
        self.path, self.meta, self.rows, self.start = path, meta, list(rows), start
        self.write()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        self.meta["elapsed_s"] = round(time.monotonic() - self.start, 1)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"meta": self.meta, "rows": self.rows}, indent=1))
        os.replace(tmp, self.path)


# What must match for a run to go on in the file of an earlier one (--resume).
SAME_RUN_KEYS = ("device", "torch", "triton", "timm", "cuda", "quick", "anchor_commits")


def resumed(path: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]], set[str]]:
    """An earlier run's file continued by a run with ``meta``: (the meta to write: ``meta`` with the
    earlier sittings and task seconds, the rows to keep, the tasks they finish). A task is finished
    when the runner recorded its end (``meta.task_s``, written after each task) and no row says it
    was skipped, interrupted or failed; the others run again, so a run killed in the middle of a task
    (a device call's time limit) keeps none of that task's rows. A run on another device or other
    versions may not go on in the same file."""
    saved = json.loads(path.read_text())
    old = saved["meta"]
    differ = [key for key in SAME_RUN_KEYS if old.get(key) != meta.get(key)]
    if differ:
        pairs = ", ".join(f"{key} {old.get(key)!r} != {meta.get(key)!r}" for key in differ)
        raise SystemExit(f"--resume {path}: not the same run ({pairs})")
    unfinished = {row.get("task") for row in saved["rows"] if row["kind"] == "skipped"}
    finished = set(old.get("task_s", {})) - unfinished
    rows = [row for row in saved["rows"] if row.get("task") in finished]
    sitting = {key: old.get(key) for key in ("date", "budget_s", "elapsed_s", "warm_up_s", "warm_workers")}
    merged = dict(meta, earlier_sittings=[*old.get("earlier_sittings", []), sitting])
    merged["task_s"] = {name: s for name, s in old.get("task_s", {}).items() if name in finished}
    return merged, rows, finished


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def rnd(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def why(err: BaseException) -> str:
    """An exception in one short line (bare asserts have no message: their source line is named)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if not text and err.__traceback__ is not None:
        frame = err.__traceback__
        while frame.tb_next is not None:
            frame = frame.tb_next
        text = f"at {Path(frame.tb_frame.f_code.co_filename).name}:{frame.tb_lineno}"
    return f"{type(err).__name__}: {text}"[:200]


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _pct(value: float | None, pct: float | None, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}" + (f" ({pct:.1f}%)" if pct is not None else "")


def _first_step(row: dict[str, Any], side: str) -> str:
    """A side's first-step seconds, with the compile-cache misses it caused (runs before the first-step
    column have none: '-')."""
    first = row.get(f"{side}_first_step")
    if not first:
        return "-"
    misses = sum(n for key, n in first["compile_cache"].items() if key.endswith(("_miss", "_bypass")))
    return f"{first['first_step_s']:.1f}" + (f" ({misses} cache misses)" if misses else "")


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The README tables: model rows, kernel rows, then what was skipped."""
    m = meta
    lines = [
        f"{m['device']}, torch {m['torch']}, triton {m['triton']}, timm {m['timm']}, {m['date']}",
        "",
        "| model | anchor | mode | ours kernels | ours img/s | anchor img/s | ratio | peak MiB ours / anchor "
        "| first step s ours / anchor | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["kind"] == "model"):
        lines.append(
            f"| {r['model']} | {r['anchor']} | {r['mode']} | {r['backend']} | {_fmt(r['ours_img_s'], '.1f')} "
            f"| {_fmt(r['anchor_img_s'], '.1f')} | {_fmt(r['ratio'])} "
            f"| {_fmt(r['ours_mib'], '.0f')} / {_fmt(r['anchor_mib'], '.0f')} "
            f"| {_first_step(r, 'ours')} / {_first_step(r, 'anchor')} | {r['status']} |"
        )
    lines += [
        "",
        "| op | model @input: shapes | dtype | pass | backend | ours ms | anchor | anchor ms | speed-up "
        "| GPU ms ours / anchor (speed-up) | launches ours / anchor "
        "| MiB ours / anchor | TFLOP/s (% peak) | GB/s (% peak) | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["kind"] == "kernel" and "ours_ms" in r):
        lines.append(
            f"| {r['op']} | {r['model']} @{r['input']}: {r['shape']} | {r['dtype']} | {r['pass']} "
            f"| {r['backend']} | {_fmt(r['ours_ms'], '.3f')} | {r['anchor'] or '-'} "
            f"| {_fmt(r['anchor_ms'], '.3f')} | {_fmt(r['speedup'])} "
            f"| {_fmt(r.get('ours_gpu_ms'), '.3f')} / {_fmt(r.get('anchor_gpu_ms'), '.3f')} "
            f"({_fmt(r.get('gpu_speedup'))}) | {_fmt(r.get('ours_launches'), '.0f')} / "
            f"{_fmt(r.get('anchor_launches'), '.0f')} "
            f"| {_fmt(r['ours_mib'], '.0f')} / {_fmt(r['anchor_mib'], '.0f')} "
            f"| {_pct(r.get('tflops'), r.get('pct_peak_tflops'), '.2f')} "
            f"| {_pct(r.get('gbps'), r.get('pct_peak_gbps'), '.1f')} | {r['status']} |"
        )
    skipped = [r for r in rows if r["kind"] == "skipped" or "ours_ms" not in r and r["kind"] == "kernel"]
    if skipped:
        lines += [
            "",
            "Not run: " + "; ".join(f"{r.get('task', r.get('op'))} ({r['status']})" for r in skipped),
        ]
    return "\n".join(lines)
