"""Plain-torch top-k attention (the math of the package docstring) and the input checks both paths use."""

from __future__ import annotations

import torch

from attnzoo.kernels.checks import check_index_range, check_same_device, check_same_dtype

__all__ = ["check_inputs", "gathered_attention", "topk_attention_reference"]

OP = "topk_attention"
_INDEX_DTYPES = (torch.int32, torch.int64)


def check_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, check_range: bool = True
) -> None:
    """A ValueError naming the first bad input: ranks, shapes, dtypes, devices (no sync), then, with
    ``check_range``, the index range (one min / max, see
    :func:`~attnzoo.kernels.checks.check_index_range`). Both paths run it once, before dispatch."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"{OP} expects q [B, H, M, D], k [B, H, N, D], v [B, H, N, Dv], got ranks "
            f"{q.dim()}, {k.dim()}, {v.dim()}"
        )
    if k.shape[:2] != q.shape[:2] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"{OP}: k {tuple(k.shape)} does not match q {tuple(q.shape)} on [B, H, ., D]")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"{OP}: v {tuple(v.shape)} does not match k {tuple(k.shape)} on [B, H, N]")
    if idx.dim() != 4 or idx.shape[:3] != q.shape[:3] or idx.shape[3] < 1:
        raise ValueError(
            f"{OP}: key index must have shape [B, H, M, K] = [{', '.join(map(str, q.shape[:3]))}, K] "
            f"with K >= 1, got {tuple(idx.shape)}"
        )
    if idx.dtype not in _INDEX_DTYPES:
        raise ValueError(f"{OP}: key index must be int32 or int64, got {idx.dtype}")
    check_same_dtype(OP, q=q, k=k, v=v)
    check_same_device(OP, q=q, k=k, v=v, idx=idx)
    if check_range:
        check_index_range(OP, "key index", idx, k.shape[2])


def gathered_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float
) -> torch.Tensor:
    """The reference's math on inputs :func:`check_inputs` accepted (the public op checks once)."""
    b, h, m, topk = idx.shape
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    d, dv = k.shape[-1], v.shape[-1]
    flat = idx.long().reshape(b, h, m * topk, 1)
    k_sel = k.to(dt).gather(2, flat.expand(-1, -1, -1, d)).reshape(b, h, m, topk, d)
    v_sel = v.to(dt).gather(2, flat.expand(-1, -1, -1, dv)).reshape(b, h, m, topk, dv)
    scores = torch.einsum("bhmd,bhmkd->bhmk", q.to(dt), k_sel) * scale
    out = torch.einsum("bhmk,bhmkd->bhmd", scores.softmax(dim=-1), v_sel)
    return out.to(q.dtype)


def topk_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float
) -> torch.Tensor:
    """Top-k attention with explicit ``[B, H, M, K, D]`` gathered copies of the selected keys / values
    (exact in float64, differentiable by autograd); 16-bit inputs compute in fp32."""
    check_inputs(q, k, v, idx)
    return gathered_attention(q, k, v, idx, scale)
