"""Plain-torch top-k attention (the math of the package docstring) and the input checks both paths use."""

from __future__ import annotations

import torch

from attnzoo.kernels.dispatch import graph_capture

__all__ = ["check_index_range", "check_shapes", "index_checks_enabled", "topk_attention_reference"]

_INDEX_DTYPES = (torch.int32, torch.int64)


def check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor) -> None:
    """A ValueError naming the first inconsistent input (ranks, shapes, dtypes, devices); no sync."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            "topk_attention expects q [B, H, M, D], k [B, H, N, D], v [B, H, N, Dv], got ranks "
            f"{q.dim()}, {k.dim()}, {v.dim()}"
        )
    if not (q.is_floating_point() and k.dtype == q.dtype and v.dtype == q.dtype):
        raise ValueError(f"q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if k.shape[:2] != q.shape[:2] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"k {tuple(k.shape)} does not match q {tuple(q.shape)} on [B, H, ., D]")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v {tuple(v.shape)} does not match k {tuple(k.shape)} on [B, H, N]")
    if idx.dim() != 4 or idx.shape[:3] != q.shape[:3] or idx.shape[3] < 1:
        raise ValueError(
            f"key index must have shape [B, H, M, K] = [{', '.join(map(str, q.shape[:3]))}, K] with "
            f"K >= 1, got {tuple(idx.shape)}"
        )
    if idx.dtype not in _INDEX_DTYPES:
        raise ValueError(f"key index must be int32 or int64, got {idx.dtype}")
    if len({t.device for t in (q, k, v, idx)}) != 1:
        raise ValueError(
            f"q, k, v and idx must be on one device, got {q.device}, {k.device}, {v.device}, {idx.device}"
        )


def index_checks_enabled() -> bool:
    """False while a graph is being compiled, traced or exported: the range check reads idx's values
    (a device sync, a data-dependent branch), which ``torch.compile(fullgraph=True)`` / export cannot
    hold. The Triton kernels mask out-of-range indices, so they never read outside ``k`` / ``v``."""
    return not (graph_capture() or torch.compiler.is_compiling())


def check_index_range(idx: torch.Tensor, n: int) -> None:
    """A ValueError unless every index lies in ``[0, n)``: one ``aminmax`` and one sync (skipped for
    an empty index and while a graph is captured, see :func:`index_checks_enabled`)."""
    if idx.numel() == 0 or not index_checks_enabled():
        return
    lo, hi = (int(x) for x in torch.stack(torch.aminmax(idx)).tolist())
    if lo < 0 or hi >= n:
        raise ValueError(f"key index out of range: values span [{lo}, {hi}], keys are [0, {n})")


def topk_attention_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, idx: torch.Tensor, scale: float
) -> torch.Tensor:
    """Top-k attention with explicit ``[B, H, M, K, D]`` gathered copies of the selected keys / values
    (exact in float64, differentiable by autograd); 16-bit inputs compute in fp32."""
    check_shapes(q, k, v, idx)
    check_index_range(idx, k.shape[2])
    b, h, m, topk = idx.shape
    dt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    d, dv = k.shape[-1], v.shape[-1]
    flat = idx.long().reshape(b, h, m * topk, 1)
    k_sel = k.to(dt).gather(2, flat.expand(-1, -1, -1, d)).reshape(b, h, m, topk, d)
    v_sel = v.to(dt).gather(2, flat.expand(-1, -1, -1, dv)).reshape(b, h, m, topk, dv)
    scores = torch.einsum("bhmd,bhmkd->bhmk", q.to(dt), k_sel) * scale
    out = torch.einsum("bhmk,bhmkd->bhmd", scores.softmax(dim=-1), v_sel)
    return out.to(q.dtype)
