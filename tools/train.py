"""Train an mmdet / mmseg model from a config: OpenMMLab's ``tools/train.py``, trimmed.

Adapted from the structure of mmdetection / mmsegmentation ``tools/train.py`` (OpenMMLab, Apache-2.0).

    python tools/train.py configs/det/retinanet_biformer_tiny_fpn_1x_coco.py [--work-dir DIR] [--amp]
    bash tools/dist_train.sh CONFIG GPUS [args]      # torchrun, --launcher pytorch

The config's ``default_scope`` (``mmdet`` or ``mmseg``, from its ``mmdet::`` / ``mmseg::`` base) picks
the registries; ``custom_imports=dict(imports=['attnzoo.mm'])`` registers the backbone adapter.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from attnzoo.mm import allow_mmengine_checkpoints
from attnzoo.mm.runner import add_common_args, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a detector or segmentor")
    parser.add_argument("config", help="config file")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision (AmpOptimWrapper)")
    parser.add_argument("--auto-scale-lr", action="store_true", help="scale lr by the actual batch size")
    parser.add_argument(
        "--resume", nargs="?", const="auto", help="resume from this checkpoint, or the latest in work-dir"
    )
    add_common_args(parser)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.auto_scale_lr:
        if "auto_scale_lr" not in cfg or "base_batch_size" not in cfg.auto_scale_lr:
            raise ValueError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config")
        cfg.auto_scale_lr.enable = True
    if args.launcher != "none" and not torch.cuda.is_available():  # CPU-only distributed run: gloo
        cfg.setdefault("env_cfg", {}).setdefault("dist_cfg", {})["backend"] = "gloo"
        wrapper = dict(type="CpuDistributedDataParallel", broadcast_buffers=False)
        wrapper["find_unused_parameters"] = cfg.get("find_unused_parameters", False)
        cfg.model_wrapper_cfg = cfg.get("model_wrapper_cfg") or wrapper
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv: list[str] | None = None) -> Runner:
    cfg = build_config(parse_args(argv))
    allow_mmengine_checkpoints()  # load_from / resume under torch >= 2.6 (weights_only loads)
    if cfg.launcher == "pytorch" and not torch.cuda.is_available() and not dist.is_initialized():
        # mmengine's init_dist calls torch.cuda.set_device; on CPU start gloo here, the runner then skips it
        dist.init_process_group(backend="gloo")
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    runner.train()
    return runner


if __name__ == "__main__":
    main()
    if dist.is_initialized():
        # Shut gloo down before the interpreter exits: a CPU run once aborted at exit with "terminate
        # called without an active exception" (tests/mm/test_tools.py, 1 run in 6 on 2026-11-27).
        dist.destroy_process_group()
