"""Every user error of every ``attnzoo`` subcommand ends in one line on stderr and exit status 2, with
nothing written and nothing the user had touched; Ctrl-C and SIGTERM in the middle of convert, export
and a release download leave no staging file and keep what was there.

The subcommands are read from ``build_parser()``: a new one fails :func:`test_every_subcommand_has_cases`
until its user errors are listed here, and gets the generic checks (bad option, missing arguments,
unknown model, the exit statuses in ``--help``) without new code.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch

from attnzoo.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
MODEL = "az_convit_tiny"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def positionals(command: str, required_only: bool = False) -> list[str]:
    actions = subcommands()[command]._actions
    optional = ("*", "?")  # argparse marks a '*' positional required, yet takes none
    return [a.dest for a in actions if not a.option_strings and not (required_only and a.nargs in optional)]


# ----------------------------------------------------------------------------- what a case starts with
def deny(path: Path, monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    """Take permissions away from ``path``. Root ignores them, so there ``os.access`` (what attnzoo
    asks before reading or writing) answers for ``path`` as it would for any other user."""
    path.chmod(mode)
    if os.geteuid() == 0:
        access = os.access
        denied = path.absolute()
        monkeypatch.setattr(
            os, "access", lambda p, m, **kw: Path(p).absolute() != denied and access(p, m, **kw)
        )


def _file(name: str, content: bytes = b"user data") -> Callable[[Path, pytest.MonkeyPatch], None]:
    return lambda t, mp: (t / name).write_bytes(content)


def _checkpoint(name: str, obj: object) -> Callable[[Path, pytest.MonkeyPatch], None]:
    return lambda t, mp: torch.save(obj, t / name)


def _folder(name: str, *files: str) -> Callable[[Path, pytest.MonkeyPatch], None]:
    def make(t: Path, mp: pytest.MonkeyPatch) -> None:
        (t / name).mkdir()
        for file in files:
            (t / name / file).write_text("user data")

    return make


def _unwritable(t: Path, mp: pytest.MonkeyPatch) -> None:
    (t / "ro").mkdir()
    deny(t / "ro", mp, 0o555)


def _unreadable(t: Path, mp: pytest.MonkeyPatch) -> None:
    (t / "secret.pth").write_bytes(b"user data")
    deny(t / "secret.pth", mp, 0)
    (t / "locked").mkdir()
    deny(t / "locked", mp, 0)


GIVEN: dict[str, Callable[[Path, pytest.MonkeyPatch], None]] = {
    "file": _file("file"),
    "dir": _folder("dir", "keep.txt"),
    "out": _folder("out", "keep.txt"),
    "empty": _folder("empty"),
    "converted": _folder("converted", "model.safetensors", "config.json", "README.md", "provenance.json"),
    "ro": _unwritable,
    "unreadable": _unreadable,  # secret.pth and locked/
    "text.pth": _file("text.pth", b"epoch 300, top-1 81.2\n"),
    "list.pth": _checkpoint("list.pth", [torch.zeros(2)]),
    "other.pth": _checkpoint("other.pth", {"model": {"foo.weight": torch.zeros(2)}}),
}


@dataclass(frozen=True)
class Case:
    """A command line (split on spaces, paths relative to the case's folder) and what its error says."""

    argv: str
    says: str
    given: tuple[str, ...] = ()


CASES: dict[str, dict[str, Case]] = {
    "list": {"unknown family": Case("list --family no_such_family", "unknown family 'no_such_family'")},
    "info": {
        "img-size 0": Case(f"info {MODEL} --img-size 0", "argument --img-size: expected an integer >= 1"),
        "img-size word": Case(f"info {MODEL} --img-size big", "expected an integer, got 'big'"),
    },
    "bench": {
        "bad device": Case(f"bench {MODEL} --device nonsense", "bad --device 'nonsense'"),
        "iters 0": Case(f"bench {MODEL} --iters 0", "argument --iters: expected an integer >= 1"),
        "warmup -1": Case(f"bench {MODEL} --warmup -1", "argument --warmup: expected an integer >= 0"),
        "batch 0": Case(f"bench {MODEL} --batch-size 0", "argument --batch-size: expected an integer >= 1"),
        **(
            {}
            if torch.cuda.is_available()
            else {"no cuda": Case(f"bench {MODEL} --device cuda", "CUDA is not available")}
        ),
    },
    "export": {
        "output .": Case(f"export {MODEL} .", ". is a folder; give the path of the file to write"),
        "output folder": Case(f"export {MODEL} dir", "dir is a folder", ("dir",)),
        "parent is a file": Case(f"export {MODEL} file/m.onnx", "file is a file, not a folder", ("file",)),
        "unwritable": Case(f"export {MODEL} ro/m.onnx", "no permission to write in", ("ro",)),
        "opset 13": Case(
            f"export {MODEL} m.onnx --opset 13", "opset 13 is not supported: attnzoo exports opsets 18 to"
        ),
        "opset 0": Case(f"export {MODEL} m.onnx --opset 0", "argument --opset: expected an integer >= 1"),
        "no checkpoint": Case(
            f"export {MODEL} m.onnx --checkpoint none.pth", "none.pth is not a file: it does not exist"
        ),
        "checkpoint folder": Case(
            f"export {MODEL} m.onnx --checkpoint dir", "dir is not a file: it is a folder", ("dir",)
        ),
        "unreadable": Case(
            f"export {MODEL} m.onnx --checkpoint secret.pth", "no permission to read", ("unreadable",)
        ),
        "text checkpoint": Case(f"export {MODEL} m.onnx --checkpoint text.pth", "text.pth", ("text.pth",)),
        "list checkpoint": Case(
            f"export {MODEL} m.onnx --checkpoint list.pth", "list.pth holds a list", ("list.pth",)
        ),
        "wrong checkpoint": Case(
            f"export {MODEL} m.onnx --checkpoint other.pth", f"other.pth does not fit {MODEL}", ("other.pth",)
        ),
        "ema alone": Case(f"export {MODEL} m.onnx --ema", "ema picks a checkpoint's EMA weights"),
        "offline": Case(f"export {MODEL} m.onnx --pretrained", f"no pretrained weights for {MODEL}.fb_in1k"),
    },
    "convert": {
        "exists": Case(f"convert {MODEL} text.pth out", "out exists; pass overwrite", ("text.pth", "out")),
        "onto a file": Case(
            f"convert {MODEL} text.pth file --overwrite", "file is a file, not a folder", ("text.pth", "file")
        ),
        "onto .": Case(f"convert {MODEL} text.pth . --overwrite", ". is the current folder", ("text.pth",)),
        "parent is a file": Case(
            f"convert {MODEL} text.pth file/out", "file is a file, not a folder", ("text.pth", "file")
        ),
        "unwritable": Case(
            f"convert {MODEL} text.pth ro/out", "no permission to write in", ("text.pth", "ro")
        ),
        "no checkpoint": Case(f"convert {MODEL} none.pth out", "none.pth is not a file: it does not exist"),
        "unreadable": Case(f"convert {MODEL} secret.pth out", "no permission to read", ("unreadable",)),
        "text checkpoint": Case(f"convert {MODEL} text.pth out", "text.pth", ("text.pth",)),
        "no ema": Case(
            f"convert {MODEL} other.pth out --ema", "other.pth holds no EMA weights", ("other.pth",)
        ),
    },
    "push": {
        "no folder": Case("push none org/repo", "none is not a folder: it does not exist"),
        "a file": Case("push file org/repo", "file is not a folder: it is a file", ("file",)),
        "unreadable": Case("push locked org/repo", "no permission to read locked", ("unreadable",)),
        "not converted": Case("push empty org/repo", "has no model.safetensors", ("empty",)),
        "offline": Case("push converted org/repo", "could not push converted to org/repo", ("converted",)),
    },
    "release": {
        "no --from": Case("release biformer_tiny --from none", "none is not a folder: it does not exist"),
        "--from a file": Case(
            "release biformer_tiny --from file", "file is not a folder: it is a file", ("file",)
        ),
        "workdir a file": Case(
            "release biformer_tiny --workdir file", "file is a file, not a folder", ("file",)
        ),
        "workdir under a file": Case("release biformer_tiny --workdir file/w", "file is a file", ("file",)),
        "unwritable": Case("release biformer_tiny --workdir ro/w", "no permission to write in", ("ro",)),
    },
}


def _state(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for folders and unreadable files)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() and os.access(p, os.R_OK) else None
        for p in sorted(folder.rglob("*"))
    }


def _assert_one_line_error(command: str, code: int, captured: pytest.CaptureResult, says: str) -> None:
    err = captured.err
    assert code == 2, err
    assert captured.out == ""
    assert err.startswith(f"attnzoo {command}: error: ") and err.count("\n") == 1, err
    assert says in err and "Traceback" not in err, err


@pytest.fixture
def case_dir(tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The case's folder, as the current folder; offline, with empty weight caches (hub_cache)."""
    folder = tmp_path / "case"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_every_subcommand_has_cases() -> None:
    assert set(CASES) == set(subcommands())


ALL_CASES = [(command, name) for command, cases in CASES.items() for name in cases]


@pytest.mark.parametrize("command, case", ALL_CASES, ids=[f"{c}: {n}" for c, n in ALL_CASES])
def test_user_error(command, case, case_dir, monkeypatch, capsys) -> None:
    spec = CASES[command][case]
    for name in spec.given:
        GIVEN[name](case_dir, monkeypatch)
    before = _state(case_dir)
    code = main(spec.argv.split())
    _assert_one_line_error(command, code, capsys.readouterr(), spec.says)
    assert _state(case_dir) == before, "the command wrote, removed or changed something"


# ------------------------------------------------------------------------- generic, every subcommand
FILLERS = {"checkpoint": "ckpt.pth", "output": "out", "folder": "converted", "repo_id": "org/repo"}


def _argv(command: str, model: str) -> list[str]:
    """A command line of ``command`` with every positional filled (the model ones with ``model``)."""
    return [
        command,
        *(model if dest in ("model", "models") else FILLERS[dest] for dest in positionals(command)),
    ]


@pytest.fixture
def filled(case_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The case's folder holding the files FILLERS name (never read: the errors come first)."""
    GIVEN["converted"](case_dir, monkeypatch)
    (case_dir / FILLERS["checkpoint"]).write_bytes(b"not read")
    return case_dir


def test_every_positional_has_a_filler() -> None:
    for command in subcommands():
        assert set(positionals(command)) <= {"model", "models", *FILLERS}, command


@pytest.mark.parametrize("command", [c for c in subcommands() if {"model", "models"} & set(positionals(c))])
def test_unknown_model(command, filled, capsys) -> None:
    before = _state(filled)
    code = main(_argv(command, "no_such_model"))
    _assert_one_line_error(command, code, capsys.readouterr(), "unknown model 'no_such_model'")
    assert _state(filled) == before


@pytest.mark.parametrize("command", list(subcommands()))
def test_bad_option_and_missing_arguments(command, filled, capsys) -> None:
    code = main([*_argv(command, MODEL), "--no-such-option"])
    _assert_one_line_error(command, code, capsys.readouterr(), "unrecognized arguments: --no-such-option")
    if positionals(command, required_only=True):
        code = main([command])
        _assert_one_line_error(command, code, capsys.readouterr(), "the following arguments are required")


@pytest.mark.parametrize("command", [None, *subcommands()])
def test_help_lists_the_exit_statuses(command, capsys) -> None:
    assert main([command, "--help"] if command else ["--help"]) == 0
    out = capsys.readouterr().out
    for status in ("0 ", "1 ", "2 ", "130", "143"):
        assert f"\n  {status}" in out or f"; {status}" in out, (status, out)


def test_no_command(capsys) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("attnzoo: error: the following arguments are required: COMMAND")
        and err.count("\n") == 1
    )


def test_a_release_whose_download_fails_is_a_failed_run(case_dir, capsys) -> None:
    """Offline, the official file cannot be fetched: the step fails (status 1), the release says so."""
    code = main(["release", "biformer_tiny", "--no-push", "--workdir", "w"])
    captured = capsys.readouterr()
    assert code == 1
    assert "biformer_tiny.in1k: failed (not cached at" in captured.out and "HF_HUB_OFFLINE" in captured.out
    last = captured.err.splitlines()[-1]
    assert (
        last == "attnzoo release: error: 1 of 1 steps failed (see above)" and "Traceback" not in captured.err
    )
    assert not list(case_dir.iterdir())


def test_a_failed_run_is_one_line_with_status_1(case_dir, monkeypatch, capsys) -> None:
    """Not the user's doing (here: onnxruntime disagreeing with torch): status 1, still one line, and
    the traceback only on request."""

    def disagree(*args, **kwargs):
        raise RuntimeError("onnxruntime differs from torch by 0.5\n(max |output| 2); m.onnx was not written")

    monkeypatch.setattr("attnzoo.cli.export_onnx", disagree)
    assert main(["export", MODEL, "m.onnx"]) == 1
    err = capsys.readouterr().err
    one_line = "onnxruntime differs from torch by 0.5 (max |output| 2); m.onnx was not written"
    assert err == f"attnzoo export: error: RuntimeError: {one_line}\n"
    monkeypatch.setenv("ATTNZOO_DEBUG", "1")
    with pytest.raises(RuntimeError, match="onnxruntime differs"):
        main(["export", MODEL, "m.onnx"])


# -------------------------------------------------------------------------------- signals mid-operation
# Each scenario patches one step of the operation to announce itself and block (the operation is then
# mid-way: its staging file exists), runs `attnzoo`'s main, and reports its status and stderr. One
# subprocess runs them all, so the imports are paid once.
RUNNER = """
import contextlib, io, json, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
from attnzoo.cli import main

def block(*args, **kwargs):
    print("READY", flush=True)
    time.sleep(300)

for name, patch, argv in json.loads(sys.argv[1]):
    exec(patch)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(argv)
    print("RESULT", json.dumps(dict(name=name, status=status, err=err.getvalue())), flush=True)
"""

CONVERT_PATCH = """
import attnzoo.zoo.publish as publish
save = publish.save_for_hf
publish.save_for_hf = lambda model, folder, **kw: (save(model, folder, **kw), block())
"""
EXPORT_PATCH = """
import onnxruntime
import attnzoo.zoo.export as export
from tests.helpers.shallow import shallow_kwargs
build = export.create_for_size
export.create_for_size = lambda name, size, **kw: build(name, size, **shallow_kwargs(name), **kw)
onnxruntime.InferenceSession = block
"""
DOWNLOAD_PATCH = """
import urllib.request

class HalfSent:
    headers = {"Content-Length": "4000"}
    chunks = [b"\\x80" * 2000]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size):
        return self.chunks.pop() if self.chunks else block()

urllib.request.urlopen = lambda *args, **kwargs: HalfSent()
"""


@dataclass(frozen=True)
class Scenario:
    patch: str
    argv: list[str]
    signal: signal.Signals
    kept: str  # what the user had before: still there, unchanged
    staging: str  # glob of the operation's temporary files under the scenario's folder


def _scenarios(root: Path) -> dict[str, Scenario]:
    return {
        "convert": Scenario(
            CONVERT_PATCH,
            ["convert", MODEL, str(root / "checkpoint.pth"), str(root / "convert/out"), "--overwrite"],
            signal.SIGTERM,
            kept="out/keep.txt",
            staging=".out.*",
        ),
        "export": Scenario(
            EXPORT_PATCH,
            ["export", MODEL, str(root / "export/m.onnx"), "--img-size", "64"],
            signal.SIGINT,
            kept="m.onnx",
            staging=".m.*",
        ),
        "release download": Scenario(
            DOWNLOAD_PATCH,
            ["release", "biformer_tiny", "--no-push", "--workdir", str(root / "release download/w")],
            signal.SIGTERM,
            kept="w/attnzoo--biformer_tiny.in1k/keep.txt",
            staging="torch_home/**/*.partial",
        ),
    }


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """Run every scenario in one subprocess, signalling each once it is mid-way; their results."""
    root = tmp_path_factory.mktemp("signals")
    torch.save({"model": timm.create_model(MODEL).state_dict()}, root / "checkpoint.pth")
    scenarios = _scenarios(root)
    for name, scenario in scenarios.items():
        kept = root / name / scenario.kept
        kept.parent.mkdir(parents=True)
        kept.write_bytes(b"user data")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="0",
        TORCH_HOME=str(root / "release download/torch_home"),
    )
    plan = json.dumps([(name, s.patch, s.argv) for name, s in scenarios.items()])
    with (root / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, plan],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        watchdog = threading.Timer(600, proc.kill)
        watchdog.start()
        results = {}
        try:
            for line in proc.stdout:
                if line.startswith("READY"):
                    proc.send_signal(scenarios[list(scenarios)[len(results)]].signal)
                elif line.startswith("RESULT"):
                    result = json.loads(line.removeprefix("RESULT"))
                    results[result.pop("name")] = result
            assert proc.wait() == 0, (root / "stderr.txt").read_text()[-3000:]
        finally:
            watchdog.cancel()
            proc.kill()
    return root, results


@pytest.mark.parametrize("name", ["convert", "export", "release download"])
def test_a_signal_mid_operation_cleans_up_and_keeps_what_was_there(name, interrupted) -> None:
    root, results = interrupted
    scenario = _scenarios(root)[name]
    folder = root / name
    result = results[name]
    assert result["status"] == 128 + scenario.signal, result
    last = result["err"].splitlines()[-1]
    assert last.startswith(f"attnzoo {scenario.argv[0]}: error: interrupted ({scenario.signal.name})")
    assert "Traceback" not in result["err"], result["err"]
    assert (folder / scenario.kept).read_bytes() == b"user data"
    assert not list(folder.glob(scenario.staging)), "staging files were left"
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")], "hidden leftovers"
