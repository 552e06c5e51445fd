"""Plain-torch halo attention: the math the Triton kernel must reproduce (see the package docstring)."""

from __future__ import annotations

import torch

from attnzoo.kernels.checks import check_same_device, check_same_dtype

__all__ = ["check_shapes", "halo_attention_reference"]

OP = "halo_attention"


def _relative_index(block_q: int, win: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Index into the ``2 * win - 1`` relative table for every (query-in-block, window-key) pair."""
    i = torch.arange(block_q, device=device)
    p = torch.arange(win, device=device)
    rel = p[None, :] - i[:, None] + win - 1  # [block_q, win]
    idx_h = rel[:, None, :, None].expand(block_q, block_q, win, win).reshape(block_q * block_q, win * win)
    idx_w = rel[None, :, None, :].expand(block_q, block_q, win, win).reshape(block_q * block_q, win * win)
    return idx_h, idx_w


def _to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """[BH, H, W, C] -> [BH, nblocks, block * block, C], blocks in row-major order."""
    bh, h, w, c = x.shape
    x = x.reshape(bh, h // block, block, w // block, block, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(bh, (h // block) * (w // block), block * block, c)


def _from_blocks(x: torch.Tensor, nbh: int, nbw: int, block: int) -> torch.Tensor:
    """Inverse of :func:`_to_blocks`."""
    bh, _, _, c = x.shape
    x = x.reshape(bh, nbh, nbw, block, block, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(bh, nbh * block, nbw * block, c)


def _windows(x: torch.Tensor, win: int, step: int) -> torch.Tensor:
    """[BH, Hk, Wk, C] -> [BH, nblocks, win * win, C], overlapping windows with the given step."""
    bh, _, _, c = x.shape
    x = x.unfold(1, win, step).unfold(2, win, step)  # [BH, nbh, nbw, C, win, win]
    nb = x.shape[1] * x.shape[2]
    return x.permute(0, 1, 2, 4, 5, 3).reshape(bh, nb, win * win, c)


def check_shapes(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    qrh: torch.Tensor,
    qrw: torch.Tensor,
    block_q: int,
    block_kv: int,
    win: int,
) -> tuple[int, int]:
    """The query block grid ``(nbh, nbw)``; a ValueError naming the first inconsistent input (shapes,
    then dtypes and devices)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"{OP} expects q, k, v of shape [BH, H, W, D], got ranks {q.dim()}, {k.dim()}, {v.dim()}"
        )
    bh, hq, wq, _ = q.shape
    if hq % block_q or wq % block_q:
        raise ValueError(f"{OP}: query grid {hq}x{wq} is not a multiple of block_q={block_q}")
    nbh, nbw = hq // block_q, wq // block_q
    halo2 = win - block_kv
    want = (bh, nbh * block_kv + halo2, nbw * block_kv + halo2)
    if tuple(k.shape[:3]) != want or tuple(v.shape[:3]) != want:
        raise ValueError(f"{OP}: k/v grid {tuple(k.shape[:3])} / {tuple(v.shape[:3])} does not match {want}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"{OP}: q and k head dims differ: {q.shape[-1]} vs {k.shape[-1]}")
    rel = (bh, hq, wq, 2 * win - 1)
    if tuple(qrh.shape) != rel or tuple(qrw.shape) != rel:
        raise ValueError(
            f"{OP}: relative logits must have shape {rel}, got {tuple(qrh.shape)} / {tuple(qrw.shape)}"
        )
    check_same_dtype(OP, q=q, k=k, v=v, qrh=qrh, qrw=qrw)
    check_same_device(OP, q=q, k=k, v=v, qrh=qrh, qrw=qrw)
    return nbh, nbw


def halo_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    qrh: torch.Tensor,
    qrw: torch.Tensor,
    block_q: int,
    block_kv: int,
    win: int,
    scale: float,
) -> torch.Tensor:
    """Plain-torch halo attention (the math the Triton kernel must reproduce)."""
    nbh, nbw = check_shapes(q, k, v, qrh, qrw, block_q, block_kv, win)
    qb = _to_blocks(q, block_q)
    kw = _windows(k, win, block_kv)
    vw = _windows(v, win, block_kv)
    idx_h, idx_w = _relative_index(block_q, win, q.device)
    shape = (*qb.shape[:3], win * win)
    bias = torch.gather(_to_blocks(qrh, block_q), -1, idx_h.expand(shape))
    bias = bias + torch.gather(_to_blocks(qrw, block_q), -1, idx_w.expand(shape))
    attn = (qb @ kw.transpose(-1, -2)) * scale + bias
    out = attn.softmax(dim=-1) @ vw
    return _from_blocks(out, nbh, nbw, block_q)
