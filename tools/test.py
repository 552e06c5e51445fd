"""Evaluate a checkpoint of an mmdet / mmseg config: OpenMMLab's ``tools/test.py``, trimmed.

Adapted from the structure of mmdetection / mmsegmentation ``tools/test.py`` (OpenMMLab, Apache-2.0).

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
"""

from __future__ import annotations

import argparse

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from attnzoo.mm import allow_mmengine_checkpoints
from attnzoo.mm.runner import add_common_args, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test (and evaluate) a detector or segmentor")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file")
    add_common_args(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    allow_mmengine_checkpoints()  # load_from / resume under torch >= 2.6 (weights_only loads)
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    return runner.test()


if __name__ == "__main__":
    main()
