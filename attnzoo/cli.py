"""The ``attnzoo`` command: list models, show their facts and sources, benchmark, export to ONNX,
convert official checkpoints into Hub folders and push them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import timm
import torch
from timm.models import get_arch_name, get_arch_pretrained_cfgs
from tqdm import tqdm

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


def _pretrained_sources(name: str) -> list[tuple[str, dict[str, str]]]:
    """Every pretrained tag of ``name`` with where its weights live (hf_hub_id / url) and licence."""
    out = []
    for tagged, cfg in get_arch_pretrained_cfgs(name).items():
        fields = {}
        for key in ("hf_hub_id", "url", "file", "license"):
            value = getattr(cfg, key, None)
            if value:
                fields[key] = str(value)
        out.append((tagged, fields))
    return out


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
    print("pretrained:")
    sources = _pretrained_sources(name)
    if not sources:
        print("  (none)")
    for tagged, fields in sources:
        desc = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "license")
        print(f"  {tagged}: {desc or 'no weights'}; license={fields.get('license', 'unknown')}")
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
        done = convert_checkpoint(name, args.checkpoint, args.output, overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as err:
        raise UsageError(str(err)) from None
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


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cmd_export(args: argparse.Namespace) -> int:
    (name,) = _known_models([args.model])
    report = export_onnx(name, args.output, img_size=args.img_size, opset=args.opset)
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
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("convert", help="convert an official checkpoint into a Hub-ready timm folder")
    p.add_argument("model")
    p.add_argument("checkpoint", help="the official .pth / .safetensors file")
    p.add_argument("output", help="folder to write (model.safetensors, config.json, README.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("push", help="upload a converted folder to the Hugging Face Hub")
    p.add_argument("folder")
    p.add_argument("repo_id", help="e.g. your-org/biformer_tiny.in1k")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_cmd_push)
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
