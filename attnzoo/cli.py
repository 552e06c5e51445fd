"""The ``attnzoo`` command: list models, show their facts and sources, benchmark, export to ONNX,
convert official checkpoints into Hub folders and push them, release every variant's weights."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import timm
import torch
from timm.models import get_arch_name
from tqdm import tqdm

from attnzoo.backbones import family_of as family_record
from attnzoo.weights import PretrainedUnavailableError
from attnzoo.weights.fetch import candidate_sources
from attnzoo.zoo.bench import benchmark_model, format_table
from attnzoo.zoo.export import export_onnx
from attnzoo.zoo.facts import (
    count_gflops,
    count_params,
    create_for_size,
    resolve_input_size,
    smallest_variant_per_family,
)
from attnzoo.zoo.publish import convert_checkpoint, push_folder
from attnzoo.zoo.registry import family_of, list_models, require_model
from attnzoo.zoo.release import format_plan, plan_release, run_release
from attnzoo.zoo.targets import check_target

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and failed: a release step, the ONNX check, anything unexpected
EXIT_USAGE = 2  # the command could not run as asked: the user's to fix
# Stopped by signal N (Ctrl-C, SIGTERM): 128 + N, as shells report it.

EXIT_STATUSES = """exit status:
  0    done
  1    the command ran and failed (a release step, the onnxruntime check of an export, an
       unexpected error: ATTNZOO_DEBUG=1 shows its traceback)
  2    a user error, nothing done: bad arguments, unknown model, a missing / unreadable input,
       an output that cannot be written (a folder where a file goes, a parent that is a file, no
       permission), a bad checkpoint, weights or the Hub out of reach (offline)
  130  interrupted by Ctrl-C (SIGINT); 143: by SIGTERM. Partial files are removed and an existing
       output is kept as it was.
Every error ends in one line on stderr: `attnzoo COMMAND: error: ...`."""

# What the user can fix; everything else is a failed run (EXIT_FAILED). ValueError covers unknown
# models and bad checkpoints; OSError paths, permissions and the Hub client's offline / HTTP errors.
_USER_ERRORS = (ValueError, OSError, PretrainedUnavailableError, ModuleNotFoundError)


class UsageError(Exception):
    """A user mistake the command found itself (a bad --device...): one line, exit status 2."""


class RunFailed(Exception):
    """The command ran and failed in a way it already reported (release steps): one line, status 1."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (plus where to read more), status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so the same clean-ups run as for Ctrl-C."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signum)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`_Terminated` while the command runs (main thread only: where Python
    delivers signals), so every ``finally`` clean-up of a staging file runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_line(err: BaseException) -> str:
    """An exception's message on one line; an ``OSError`` from the system as ``path: reason``."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err)
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(err).__name__


def _readable(folder: bool):
    """An argparse type: the path of a file (or folder) that exists and can be read."""
    kind, other = ("folder", "file") if folder else ("file", "folder")
    mode = os.R_OK | os.X_OK if folder else os.R_OK

    def parse(text: str) -> Path:
        path = Path(text)
        if not path.exists():
            raise argparse.ArgumentTypeError(f"{text} is not a {kind}: it does not exist")
        if path.is_dir() != folder:
            raise argparse.ArgumentTypeError(f"{text} is not a {kind}: it is a {other}")
        if not os.access(path, mode):
            raise argparse.ArgumentTypeError(f"no permission to read {text}")
        return path

    return parse


def _known_models(names: Sequence[str]) -> list[str]:
    for name in names:
        require_model(name)
    return list(names)


def _cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.family)
    if args.pretrained:
        with_weights = {get_arch_name(n) for n in timm.list_pretrained()}
        names = [n for n in names if n in with_weights]
    width = max((len(n) for n in names), default=0)
    for name in names:
        print(f"{name.ljust(width)}  {family_of(name)}")
    return 0


def _pretrained_lines(name: str) -> list[str]:
    """Per pretrained tag of ``name`` (release manifest): the sources in the order loading tries them."""
    family = family_record(name)
    lines = []
    for weights in (w for w in family.weights if w.model == name):
        if not weights.released:
            lines.append(
                f"{weights.name}: none released ({weights.notes[0] if weights.notes else 'no weights'})"
            )
            continue
        tried = [
            f"{c.source.describe()} ({'attnzoo copy' if c.converted else 'official'})"
            for c in candidate_sources(weights, family.rehosts(weights))
        ]
        lines.append(f"{weights.name}: {', then '.join(tried)}; license={family.license}")
    return lines


def _cmd_info(args: argparse.Namespace) -> int:
    (name,) = _known_models([args.model])
    model = create_for_size(name, args.img_size)
    input_size = resolve_input_size(model, args.img_size)
    print(f"model:       {name}")
    print(f"family:      {family_of(name)}")
    print(f"params:      {count_params(model)} ({count_params(model) / 1e6:.2f} M)")
    print(f"GFLOPs:      {count_gflops(model, input_size):.3f} (torch FlopCounter, 2 FLOPs per multiply-add)")
    print(f"input size:  {'x'.join(str(s) for s in input_size)}")
    print("features (feature_info; * = returned by features_only=True by default):")
    default_taps = set(timm.create_model(name, features_only=True).feature_info.module_name())
    for i, f in enumerate(model.feature_info):
        mark = "*" if f.get("module") in default_taps else " "
        print(f" {mark}[{i}] {f.get('module', '')}: channels={f['num_chs']} stride={f['reduction']}")
    print("pretrained (sources in the order pretrained=True tries them):")
    for line in _pretrained_lines(name):
        print(f"  {line}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise UsageError(f"bad --device {args.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but CUDA is not available")
    names = _known_models(args.models) if args.models else smallest_variant_per_family()
    rows = []
    for name in tqdm(names, desc="bench", unit="model", file=sys.stderr):
        rows.append(
            benchmark_model(
                name,
                batch_size=args.batch_size,
                img_size=args.img_size,
                warmup=args.warmup,
                iters=args.iters,
                device=device,
            )
        )
    print(format_table(rows))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    (name,) = _known_models([args.model])
    done = convert_checkpoint(name, args.checkpoint, args.output, overwrite=args.overwrite, ema=args.ema)
    for note in done.notes:
        print(f"note: {note}")
    print(
        f"wrote {done.folder} ({name}, {done.params / 1e6:.2f} M params, {done.num_classes} classes; "
        f"source sha256 {done.source_sha256[:12]}): model.safetensors, config.json, README.md"
    )
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    try:
        url = push_folder(args.folder, args.repo_id, private=args.private)
    except Exception as err:  # noqa: BLE001 - the Hub client's failures (network, login, repo) are the user's
        raise UsageError(f"could not push {args.folder} to {args.repo_id}: {_one_line(err)}") from None
    print(f"pushed {args.folder} to {url}")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    steps = plan_release(args.models or None, args.source_dir, org=args.org)
    if not args.dry_run:
        check_target(args.workdir, folder=True)
    print(format_plan(steps))
    if args.dry_run:
        return EXIT_OK
    outcomes = run_release(steps, args.workdir, push=not args.no_push, private=args.private)
    for outcome in outcomes:
        print(f"{outcome.step.weights.name}: {outcome.status} ({outcome.detail})")
    failed = sum(o.status == "failed" for o in outcomes)
    if failed:
        raise RunFailed(f"{failed} of {len(outcomes)} steps failed (see above)")
    return EXIT_OK


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_export(args: argparse.Namespace) -> int:
    (name,) = _known_models([args.model])
    report = export_onnx(
        name,
        args.output,
        img_size=args.img_size,
        opset=args.opset,
        pretrained=args.pretrained,
        checkpoint=args.checkpoint,
        ema=args.ema,
    )
    for note in report.notes:
        print(f"note: {note}")
    c, h, w = report.input_size
    print(
        f"wrote {report.path} ({name}, input Bx{c}x{h}x{w}, dynamic batch, opset {report.opset}); "
        f"onnxruntime vs torch at batch {report.check_batch}: max |diff| {report.max_abs_diff:.3g} "
        f"(max |output| {report.max_abs_output:.3g})"
    )
    return 0


def _int_from(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text}")
        return value

    return parse


_positive_int = _int_from(1)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so docs and tests can inspect it)."""
    common = dict(epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser = _Parser(prog="attnzoo", description=__doc__, **common)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help, description=help, **common)
        parser.set_defaults(parser=parser)  # main reports what it does not know as this command's error
        return parser

    p = command("list", "list attnzoo models with their family")
    p.add_argument("--family", help="only this family")
    p.add_argument("--pretrained", action="store_true", help="only models with a pretrained weight source")
    p.set_defaults(func=_cmd_list)

    p = command("info", "parameters, GFLOPs, features and pretrained sources of a model")
    p.add_argument("model")
    p.add_argument("--img-size", type=_positive_int, help="input height/width (default: the model's)")
    p.set_defaults(func=_cmd_info)

    p = command("bench", "benchmark models (default: smallest variant of every family)")
    p.add_argument("models", nargs="*", metavar="MODEL")
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--img-size", type=_positive_int, help="input height/width (default: the model's)")
    p.add_argument("--warmup", type=_int_from(0), default=1)
    p.add_argument("--iters", type=_positive_int, default=3)
    p.add_argument("--device", default=_default_device(), help="torch device (default: cuda if available)")
    p.set_defaults(func=_cmd_bench)

    p = command("export", "export a model to ONNX and check it with onnxruntime")
    p.add_argument("model")
    p.add_argument("output", help="the .onnx file to write (replaced only if the export passes)")
    p.add_argument("--img-size", type=_positive_int, help="input height/width (default: the model's)")
    p.add_argument("--opset", type=_positive_int, default=18, help="ONNX opset, 18 or newer (default: 18)")
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true", help="the model's default pretrained weights")
    weights.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=_readable(folder=False),
        help="weights from a checkpoint `convert` reads",
    )
    p.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights, not the trained ones")
    p.set_defaults(func=_cmd_export)

    p = command("convert", "convert a checkpoint into a Hub-ready timm folder")
    p.add_argument("model")
    p.add_argument(
        "checkpoint",
        type=_readable(folder=False),
        help="an official, timm train.py or mmdet / mmseg (AttnZooBackbone) file",
    )
    p.add_argument("output", help="folder to write (model.safetensors, config.json, README.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights, not the trained ones")
    p.set_defaults(func=_cmd_convert)

    p = command("push", "upload a converted folder to the Hugging Face Hub")
    p.add_argument("folder", type=_readable(folder=True))
    p.add_argument("repo_id", help="e.g. your-org/biformer_tiny.in1k")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_cmd_push)

    p = command("release", "convert and publish the official weights of every variant (or MODELs)")
    p.add_argument("models", nargs="*", metavar="MODEL", help="model or model.tag (default: all)")
    p.add_argument(
        "--from",
        dest="source_dir",
        type=_readable(folder=True),
        help="folder holding official files (else they are downloaded)",
    )
    p.add_argument("--org", help="Hub organisation (default: $ATTNZOO_HUB_ORG or attnzoo)")
    p.add_argument(
        "--workdir", default="release", help="where the Hub folders are written (default: release)"
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be published where, and what not")
    p.add_argument("--no-push", action="store_true", help="write the folders, upload nothing")
    p.add_argument("--private", action="store_true", help="create private Hub repos")
    p.set_defaults(func=_cmd_release)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``attnzoo`` / ``python -m attnzoo``; returns the exit status (see ``--help``)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit_:  # argparse exits on --help and on usage errors; return the status
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    prefix = f"attnzoo {args.command}: error:"
    try:
        with _sigterm_interrupts():
            return int(args.func(args))
    except KeyboardInterrupt as err:
        signum = err.args[0] if isinstance(err, _Terminated) else signal.SIGINT
        name = signal.Signals(signum).name
        print(f"{prefix} interrupted ({name}); partial files removed, existing outputs kept", file=sys.stderr)
        return 128 + signum
    except (UsageError, *_USER_ERRORS) as err:
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except RunFailed as err:
        print(f"{prefix} {err}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:
        if os.environ.get("ATTNZOO_DEBUG"):
            raise
        print(f"{prefix} {type(err).__name__}: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
