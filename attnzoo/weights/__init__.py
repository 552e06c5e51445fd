"""Pretrained weights: the release manifest, fetching them (Hub first) and reading checkpoint files.

Below the backbones in the layering: a family declares its :class:`Weights` records, and
``Family.build`` fetches and reads them through this package.
"""

from attnzoo.weights.checkpoint import CheckpointError, read_checkpoint, read_state_dict, unwrap_checkpoint
from attnzoo.weights.fetch import PretrainedUnavailableError, fetch_weights
from attnzoo.weights.manifest import Source, Weights, hub_org, hub_repo_id

__all__ = [
    "CheckpointError",
    "PretrainedUnavailableError",
    "Source",
    "Weights",
    "fetch_weights",
    "hub_org",
    "hub_repo_id",
    "read_checkpoint",
    "read_state_dict",
    "unwrap_checkpoint",
]
