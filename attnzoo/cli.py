"""The ``attnzoo`` command: list models, show their facts and sources, benchmark, export to ONNX,
convert official checkpoints into Hub folders and push them, release every variant's weights."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
from attnzoo.zoo.registry import UnknownModelError, family_of, list_models, require_model
from attnzoo.zoo.release import format_plan, plan_release, run_release

__all__ = ["main"]


class UsageError(Exception):
    """A user mistake (unknown model, family...): printed as one line, exit status 2."""


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
    try:
        done = convert_checkpoint(name, args.checkpoint, args.output, overwrite=args.overwrite, ema=args.ema)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
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
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    print(f"pushed {args.folder} to {url}")
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    if args.source_dir is not None and not Path(args.source_dir).is_dir():
        raise UsageError(f"--from {args.source_dir}: not a folder")
    steps = plan_release(args.models or None, args.source_dir, org=args.org)
    print(format_plan(steps))
    if args.dry_run:
        return 0
    outcomes = run_release(steps, args.workdir, push=not args.no_push, private=args.private)
    for outcome in outcomes:
        print(f"{outcome.step.weights.name}: {outcome.status} ({outcome.detail})")
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_export(args: argparse.Namespace) -> int:
    (name,) = _known_models([args.model])
    try:
        report = export_onnx(
            name,
            args.output,
            img_size=args.img_size,
            opset=args.opset,
            pretrained=args.pretrained,
            checkpoint=args.checkpoint,
            ema=args.ema,
        )
    except PretrainedUnavailableError as err:  # lists every source tried: one line, not a traceback
        raise UsageError(" ".join(line.strip() for line in str(err).splitlines())) from None
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
    for note in report.notes:
        print(f"note: {note}")
    c, h, w = report.input_size
    print(
        f"wrote {report.path} ({name}, input Bx{c}x{h}x{w}, dynamic batch, opset {report.opset}); "
        f"onnxruntime vs torch at batch {report.check_batch}: max |diff| {report.max_abs_diff:.3g} "
        f"(max |output| {report.max_abs_output:.3g})"
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (kept separate so docs and tests can inspect it)."""
    parser = argparse.ArgumentParser(prog="attnzoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list attnzoo models with their family")
    p.add_argument("--family", help="only this family")
    p.add_argument("--pretrained", action="store_true", help="only models with a pretrained weight source")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="parameters, GFLOPs, features and pretrained sources of a model")
    p.add_argument("model")
    p.add_argument("--img-size", type=_positive_int, help="input height/width (default: the model's)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("bench", help="benchmark models (default: smallest variant of every family)")
    p.add_argument("models", nargs="*", metavar="MODEL")
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--img-size", type=_positive_int, help="input height/width (default: the model's)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iters", type=_positive_int, default=3)
    p.add_argument("--device", default=_default_device(), help="torch device (default: cuda if available)")
    p.set_defaults(func=_cmd_bench)
    p = sub.add_parser("export", help="export a model to ONNX and check it with onnxruntime")
    p.add_argument("model")
    p.add_argument("output", help="the .onnx file to write (replaced only if the export passes)")
    p.add_argument("--img-size", type=_positive_int, help="input height/width (default: the model's)")
    p.add_argument("--opset", type=_positive_int, default=18)
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--pretrained", action="store_true", help="the model's default pretrained weights")
    weights.add_argument("--checkpoint", metavar="FILE", help="weights from a checkpoint `convert` reads")
    p.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights, not the trained ones")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("convert", help="convert a checkpoint into a Hub-ready timm folder")
    p.add_argument("model")
    p.add_argument("checkpoint", help="an official, timm train.py or mmdet / mmseg (AttnZooBackbone) file")
    p.add_argument("output", help="folder to write (model.safetensors, config.json, README.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--ema", action="store_true", help="the checkpoint's EMA weights, not the trained ones")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("push", help="upload a converted folder to the Hugging Face Hub")
    p.add_argument("folder")
    p.add_argument("repo_id", help="e.g. your-org/biformer_tiny.in1k")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser(
        "release", help="convert and publish the official weights of every variant (or MODELs)"
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="model or model.tag (default: all)")
    p.add_argument(
        "--from", dest="source_dir", help="folder holding official files (else they are downloaded)"
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
    """Entry point of ``attnzoo`` / ``python -m attnzoo``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors; return the status
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return int(args.func(args))
    except (UsageError, UnknownModelError) as err:
        print(f"attnzoo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
