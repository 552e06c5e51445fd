"""ContMix's public entry point (checks, dispatch) and its Triton op, forward + backward."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from attnzoo.kernels.common.chunks import cdiv, next_pow2
from attnzoo.kernels.common.host import run_op
from attnzoo.kernels.contmix.reference import check_shapes, contmix_reference
from attnzoo.kernels.dispatch import triton_available, triton_interpreter, use_triton

__all__ = ["contmix", "diagonal_sums"]

MAX_WIDTH = 128  # C and Cv per group
MAX_KERNEL = 31  # window side

# Tile budgets: ``window`` bounds the window slots per step (BM), ``elements`` the gathered
# [pixels, slots, channels] tiles. On a GPU they are registers (not tuned yet); under the interpreter
# every loop step costs Python overhead while numpy does not mind large arrays, so whole windows go
# in one step.
GPU_TILES = {"window": 32, "elements": 8192}
INTERPRETER_TILES = {"window": 4096, "elements": 1 << 20}  # Triton's largest tensor


def _supported(q: torch.Tensor, v: torch.Tensor, k: int) -> bool:
    return (
        q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.shape[-1] <= MAX_WIDTH
        and v.shape[-1] <= MAX_WIDTH
        and k <= MAX_KERNEL
    )


def diagonal_sums(x: torch.Tensor) -> torch.Tensor:
    """``out[..., r] = sum_{u + w = r} x[..., u, w]`` for ``x`` ``[..., K, K]``: ``[..., 2K - 1]``.

    Deterministic (a pad, a shear by reshaping, one sum): row ``u`` of the padded ``[K, 2K]`` matrix,
    read ``2K - 1`` wide, starts ``u`` places later, so column ``r`` of the sheared rows holds
    ``x[u, r - u]`` (zero padding elsewhere)."""
    k = x.shape[-1]
    flat = F.pad(x, (0, k)).flatten(-2)[..., : k * (2 * k - 1)]
    return flat.unflatten(-1, (k, 2 * k - 1)).sum(-2)


def contmix(
    q: torch.Tensor, proj: torch.Tensor, proj_bias: torch.Tensor, rpb: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """ContMix aggregation through the dispatch rule (Triton kernel or :func:`contmix_reference`):
    ``[B, G, H, W, Cv]`` in q's dtype. The map must be at least ``K x K``."""
    k = check_shapes(q, proj, proj_bias, rpb, v)
    if use_triton(q, proj, proj_bias, rpb, v, supported=_supported(q, v, k), op="contmix"):
        out, _ = run_op("contmix", *(t.contiguous() for t in (q, proj, proj_bias, rpb, v)))
        return out
    return contmix_reference(q, proj, proj_bias, rpb, v)


def tile_budget() -> dict[str, int]:
    """The tile budget in force (:data:`INTERPRETER_TILES` under ``TRITON_INTERPRET=1``)."""
    return INTERPRETER_TILES if triton_interpreter() else GPU_TILES


def rows_per_step(k: int, lanes: int, window: int) -> tuple[int, int]:
    """``(rows, slots)``: how many of ``k`` window rows of ``lanes`` slots each one step takes, and the
    power-of-two slot count (at least 16, the smallest ``tl.dot`` operand) that holds them. As many
    rows as fit in ``window`` slots (at least one), then spread evenly over the steps that needs."""
    rows = 1
    while rows < k and max(16, next_pow2((rows + 1) * lanes)) <= window:
        rows += 1
    rows = cdiv(k, cdiv(k, rows))
    return rows, max(16, next_pow2(rows * lanes))


def candidates(size: int, k: int) -> int:
    """How many positions along an axis of ``size`` can have one location in their window: ``K``
    inside, up to ``K + K // 2`` near a border (border windows pile up), and the whole axis where
    both borders' windows overlap (``size < 2K``: every position with ``s <= r``)."""
    return max(k + k // 2, min(size, 2 * k - 1))


if triton_available():
    from torch.library import wrap_triton

    from attnzoo.kernels.common.host import define_op, pow2, precision
    from attnzoo.kernels.contmix.kernels import (
        contmix_bwd_dq_kernel,
        contmix_bwd_dv_kernel,
        contmix_bwd_params_kernel,
        contmix_fwd_kernel,
    )
    from attnzoo.kernels.contmix.reference import kernel_size_of

    def _pixels(q: torch.Tensor, slots: int, widest: int, floor: int) -> tuple[int, int]:
        """``(BI, BJ)``: a pixel tile of ``BI`` rows by ``BJ`` columns (powers of two, at least
        ``floor`` pixels) as large as the map and the budget for ``[pixels, slots, widest]`` tiles
        allow; whole rows first."""
        h, w = q.shape[2], q.shape[3]
        most = max(floor, tile_budget()["elements"] // (slots * widest))
        bj = min(next_pow2(w), next_pow2(most + 1) // 2)
        bi = max(1, min(next_pow2(h), most // bj))
        while bi * bj < floor:
            bj *= 2
        return bi, bj

    def _meta(q: torch.Tensor, v: torch.Tensor, k: int) -> dict:
        """Launch constants of the pixel-tile kernels: ``RA`` window rows (``BM`` slots) per step and
        a ``BI x BJ`` pixel tile of at least 16 pixels (``tl.dot``)."""
        ra, bm = rows_per_step(k, k, tile_budget()["window"])
        bc, bcv = pow2(q.shape[-1]), pow2(v.shape[-1], floor=1)
        bi, bj = _pixels(q, bm, max(bc, bcv), 16)
        return dict(K=k, RA=ra, BI=bi, BJ=bj, BM=bm, BC=bc, BCV=bcv, PRECISION=precision(q))

    def _dv_meta(q: torch.Tensor, v: torch.Tensor, k: int) -> dict:
        """Launch constants of the dV kernel: ``LH`` / ``LW`` candidate rows / columns, ``RI`` candidate
        rows (``BM`` slots of ``LW`` each) per step, a ``BI x BJ`` tile of value locations."""
        lh, lw = candidates(q.shape[2], k), candidates(q.shape[3], k)
        ri, bm = rows_per_step(lh, lw, tile_budget()["window"])
        bc, bcv = pow2(q.shape[-1], floor=1), pow2(v.shape[-1], floor=1)
        bi, bj = _pixels(q, bm, max(bc, bcv), 1)
        return dict(K=k, LH=lh, LW=lw, RI=ri, BI=bi, BJ=bj, BM=bm, BC=bc, BCV=bcv)

    def _grid(q: torch.Tensor, meta: dict) -> tuple[int, int, int]:
        """``(programs, row blocks, column blocks)`` of a pixel-tile launch."""
        b, g, h, w, _ = q.shape
        nib, njb = cdiv(h, meta["BI"]), cdiv(w, meta["BJ"])
        return b * g * nib * njb, nib, njb

    def _dims(q: torch.Tensor, v: torch.Tensor) -> tuple[int, ...]:
        b, g, h, w, c = q.shape
        return g, h, w, c, v.shape[-1]

    def _forward(
        q: torch.Tensor, proj: torch.Tensor, proj_bias: torch.Tensor, rpb: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, g, h, w, _ = q.shape
        out = torch.empty((b, g, h, w, v.shape[-1]), device=q.device, dtype=q.dtype)
        lse = torch.empty((b, g, h, w), device=q.device, dtype=torch.float32)
        if lse.numel():
            meta = _meta(q, v, kernel_size_of(rpb))
            programs, nib, njb = _grid(q, meta)
            wrap_triton(contmix_fwd_kernel)[(programs,)](
                q, proj, proj_bias, rpb, v, out, lse, *_dims(q, v), nib, njb, **meta
            )
        return out, lse

    def _backward(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        proj: torch.Tensor,
        proj_bias: torch.Tensor,
        rpb: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        lse: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        b, g, h, w, c = q.shape
        k = kernel_size_of(rpb)
        grad_out = grad_out.contiguous()
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        dims = _dims(q, v)
        meta = _meta(q, v, k)
        programs, nib, njb = _grid(q, meta)
        dq, dproj, dv = torch.empty_like(q), torch.empty_like(proj), torch.empty_like(v)
        tensors = (q, proj, proj_bias, rpb, v, grad_out, lse, delta)
        wrap_triton(contmix_bwd_dq_kernel)[(programs,)](*tensors, dq, *dims, nib, njb, **meta)
        # Per (image, window-row step): logit gradients by offset and window position (th, tw).
        per_offset = torch.empty((b, g, k, k, k, k), device=q.device, dtype=torch.float32)
        nstep = cdiv(k, meta["RA"])
        wrap_triton(contmix_bwd_params_kernel)[(b * g * nstep,)](
            *tensors, dproj, per_offset, *dims, nstep, **meta, BT=pow2(k)
        )
        dv_meta = _dv_meta(q, v, k)
        programs, nib, njb = _grid(q, dv_meta)
        wrap_triton(contmix_bwd_dv_kernel)[(programs,)](
            q, proj, proj_bias, rpb, grad_out, lse, dv, *dims, nib, njb, **dv_meta
        )
        # per_offset [B, G, a, th, tw, c] feeds rpb[g, th + a, tw + c] and proj_bias[a * K + c].
        summed = per_offset.sum(0)
        dproj_bias = summed.sum((0, 2, 3)).reshape(k * k)
        drpb = diagonal_sums(diagonal_sums(summed).permute(0, 3, 1, 2)).transpose(1, 2)
        return dq, dproj, dproj_bias.to(proj_bias.dtype), drpb.to(rpb.dtype).contiguous(), dv

    def _forward_fake(q, proj, proj_bias, rpb, v):
        out = q.new_empty((*q.shape[:4], v.shape[-1]))
        return out, q.new_empty(q.shape[:4], dtype=torch.float32)

    def _backward_fake(grad_out, q, proj, proj_bias, rpb, v, out, lse):
        return tuple(torch.empty_like(t) for t in (q, proj, proj_bias, rpb, v))

    define_op(
        "contmix",
        forward=_forward,
        backward=_backward,
        forward_fake=_forward_fake,
        backward_fake=_backward_fake,
    )
