"""What tools/train.py and tools/test.py share: their common arguments and the config they build."""

from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

__all__ = ["add_common_args", "load_config"]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--work-dir``, ``--cfg-options``, ``--launcher``, ``--local-rank`` (as OpenMMLab's tools)."""
    parser.add_argument("--work-dir", help="where logs, checkpoints and metrics go")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, help="key=value overrides")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """The config file with the command line's overrides, launcher and work dir applied.

    The work dir defaults to ``./work_dirs/<config name>``; ``LOCAL_RANK`` is set from
    ``--local-rank`` for launchers that pass it as an argument.
    """
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    return cfg
