"""Token-axis parameter tables (one entry per token of a ViT: prefix tokens, then a patch grid).

Some attention layers own parameters with a token axis sized for the training resolution
(Sparsifiner's predictor tables, Fourier-KArAt's operators). At another image size they are resampled
along that axis as timm resamples a position embedding: prefix entries kept, the patch entries
interpolated bilinearly over the patch grid. One implementation for every family that has such tables.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["resample_tokens"]


def resample_tokens(
    t: torch.Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix: int,
    keep_mass: bool = True,
) -> torch.Tensor:
    """Resample ``t`` (``[M, prefix + gh * gw, C]``) along its token axis to ``new_grid``.

    Prefix entries are kept; the patch entries are resampled bilinearly (``align_corners=False``) and,
    with ``keep_mass``, scaled by ``old patches / new patches``, so sums over the tokens keep their
    magnitude (off for a per-token multiplier such as ``edge_scale``).
    """
    if tuple(old_grid) == tuple(new_grid):
        return t
    m, _, c = t.shape
    prefix, patches = t[:, :num_prefix], t[:, num_prefix:]
    patches = patches.reshape(m, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=tuple(new_grid), mode="bilinear", align_corners=False)
    ratio = (old_grid[0] * old_grid[1]) / (new_grid[0] * new_grid[1]) if keep_mass else 1.0
    patches = patches.permute(0, 2, 3, 1).reshape(m, -1, c) * ratio
    return torch.cat((prefix, patches), dim=1)
