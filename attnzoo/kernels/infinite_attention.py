"""Infinite Self-Attention (InfSA, Roffo et al., arXiv:2603.00175): pure and linear forms.

Both forms scale q and k *each* by ``scale`` (``head_dim ** -0.5`` by default, so the logits are
``q.k / head_dim``) and leave ``rho`` (``sigmoid(rho_logit)``) to the caller, who multiplies it on
the result as a tensor so that it trains and exports.

Pure (quadratic), per (batch, head) slice with ``R = relu((q s)(k s)^T)`` (``N x N``)::

    out = R V / (||R||_F + eps)

The Frobenius norm runs over the whole map; there is no softmax and no row normalisation. The Triton
kernel never materialises ``R``: each query tile accumulates ``R V`` and the row sums of ``R**2`` over
key tiles (fp32), and a second small kernel reduces the row sums of its slice to the norm and scales.
Backward: with ``c = n + eps`` and ``n = ||R||_F``,
``dR = (dO V^T - beta R) / c`` where ``beta = <dO V^T, R> / (c n) = <dO, O> / n``: the extra reduction
over the ``N x N`` map collapses to an ``O(N D)`` dot of ``dO`` and ``O`` (like flash attention's
``delta``), and ``dS = dR * [S > 0]``.

Linear, per slice::

    w_i = ||q_i s|| / (sum_i ||q_i s|| + eps),   q_bar = sum_i w_i q_i s
    a_j = relu(q_bar . k_j s) / (sum_j relu(q_bar . k_j s) + eps),   pooled = sum_j a_j v_j

Every token receives the same ``pooled`` vector, so the op returns ``pooled`` once per slice
(``[..., D]``) and the layer applies its output projection once per image. The Triton kernel makes
two memory-bound passes (queries, then keys and values), one program per slice.
"""

from __future__ import annotations

import torch

from attnzoo.kernels.dispatch import triton_available, use_triton

__all__ = [
    "infsa_linear",
    "infsa_linear_reference",
    "infsa_linear_scores_reference",
    "infsa_pure",
    "infsa_pure_reference",
    "infsa_pure_scores_reference",
]

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """fp16 / bf16 references run in fp32: the sum of squares of an N x N map overflows fp16."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, name: str) -> None:
    if q.dim() < 2 or q.shape != k.shape or q.shape[:-1] != v.shape[:-1]:
        raise ValueError(
            f"{name} expects q, k of one shape [..., N, D] and v of shape [..., N, Dv], got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )


def _scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def _times_rho(x: torch.Tensor, rho: torch.Tensor | float | None) -> torch.Tensor:
    return x if rho is None else rho * x


# ----------------------------------------------------------------------------- references
def infsa_pure_scores_reference(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """The ``[..., N, N]`` map ``relu(q s (k s)^T) / (||.||_F + eps)`` (without rho), in fp32 for 16-bit."""
    s = _scale(q, scale)
    dt = _compute_dtype(q)
    r = torch.relu((q.to(dt) * s) @ (k.to(dt) * s).transpose(-1, -2))
    n = torch.linalg.vector_norm(r.flatten(-2), dim=-1)
    return r / (n + eps)[..., None, None]


def infsa_pure_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Pure InfSA in plain torch (materialises the ``N x N`` map): ``rho * A V``, ``[..., N, Dv]``."""
    _check(q, k, v, "infsa_pure")
    a = infsa_pure_scores_reference(q, k, scale, eps)
    return _times_rho(a @ v.to(a.dtype), rho).to(v.dtype)


def infsa_linear_scores_reference(
    q: torch.Tensor, k: torch.Tensor, scale: float | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """The per-key weights ``a`` (``[..., N]``, summing to ~1) of linear InfSA, without rho."""
    s = _scale(q, scale)
    dt = _compute_dtype(q)
    qs, ks = q.to(dt) * s, k.to(dt) * s
    energy = torch.linalg.vector_norm(qs, dim=-1)  # [..., N]
    w = energy / (energy.sum(-1, keepdim=True) + eps)
    q_bar = (w.unsqueeze(-2) @ qs).squeeze(-2)  # [..., D]
    a = torch.relu((ks @ q_bar.unsqueeze(-1)).squeeze(-1))  # [..., N]
    return a / (a.sum(-1, keepdim=True) + eps)


def infsa_linear_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Linear InfSA in plain torch: the pooled vector ``rho * sum_j a_j v_j``, ``[..., Dv]``.

    Every token's output is this vector (``expand`` it to ``[..., N, Dv]`` if needed).
    """
    _check(q, k, v, "infsa_linear")
    a = infsa_linear_scores_reference(q, k, scale, eps)
    pooled = (a.unsqueeze(-2) @ v.to(a.dtype)).squeeze(-2)
    return _times_rho(pooled, rho).to(v.dtype)


# ----------------------------------------------------------------------------- dispatch
def _supported(q: torch.Tensor, v: torch.Tensor, max_d: int) -> bool:
    return (
        q.dtype in _FLOATS
        and q.dtype == v.dtype
        and q.shape[-1] <= max_d
        and v.shape[-1] <= max_d
        and q.shape[-2] > 0
    )


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *t.shape[-2:]).contiguous()


def infsa_pure(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Pure InfSA through the dispatch rule (Triton kernel or :func:`infsa_pure_reference`).

    ``q``, ``k``: ``[..., N, D]``; ``v``: ``[..., N, Dv]``; returns ``[..., N, Dv]``.
    """
    _check(q, k, v, "infsa_pure")
    if use_triton(q, k, v, supported=_supported(q, v, 128)):
        lead = q.shape[:-2]
        out, _ = torch.ops.attnzoo.infsa_pure(_flat(q), _flat(k), _flat(v), _scale(q, scale), float(eps))
        return _times_rho(out.reshape(*lead, *out.shape[-2:]), rho)
    return infsa_pure_reference(q, k, v, rho, scale, eps)


def infsa_linear(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rho: torch.Tensor | float | None = None,
    scale: float | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Linear InfSA through the dispatch rule: the pooled vector ``[..., Dv]`` every token receives."""
    _check(q, k, v, "infsa_linear")
    if use_triton(q, k, v, supported=_supported(q, v, 256)):
        lead = q.shape[:-2]
        pooled = torch.ops.attnzoo.infsa_linear(_flat(q), _flat(k), _flat(v), _scale(q, scale), float(eps))[0]
        return _times_rho(pooled.reshape(*lead, pooled.shape[-1]), rho)
    return infsa_linear_reference(q, k, v, rho, scale, eps)


# ----------------------------------------------------------------------------- Triton
if triton_available():
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton

    def _pow2(n: int, floor: int = 16) -> int:
        return max(floor, triton.next_power_of_2(n))

    def _tile(n: int) -> int:
        return min(64, _pow2(n))

    def _precision(t: torch.Tensor) -> str:
        # fp32 inputs: exact fp32 products. 16-bit inputs: the relu map (and its gradient) can exceed
        # the fp16 range, so products involving it run on fp32 operands at tf32 precision.
        return "ieee" if t.dtype == torch.float32 else "tf32"

    @triton.jit
    def _mm(a, b, LOWP: tl.constexpr, PRECISION: tl.constexpr):
        """``a @ b`` for an fp32 ``a`` built from the relu map (unbounded) and an input-dtype ``b``.

        bf16 inputs (LOWP): ``a`` rounds to bf16, whose range is fp32's, and the dot runs on bf16 tensor
        cores (as flash attention rounds P). fp16 cannot hold ``a`` (it can exceed 65504), so fp16 and
        fp32 inputs multiply on fp32 operands (tf32 for fp16, exact for fp32).
        """
        if LOWP:
            return tl.dot(a.to(b.dtype), b)
        return tl.dot(a, b.to(tl.float32), input_precision=PRECISION)

    # ------------------------------------------------------------------- pure: forward
    @triton.jit
    def _pure_fwd_kernel(
        Q,
        K,
        V,
        U,
        SS,
        N,
        DQK,
        DV,
        qk_scale,
        BM: tl.constexpr,
        BN: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
        PRECISION: tl.constexpr,
        LOWP: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        rows = pid_m * BM + tl.arange(0, BM)
        r_mask = rows < N
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        q = tl.load(
            Q + (bh * N + rows[:, None]) * DQK + d[None, :], mask=r_mask[:, None] & d_mask[None, :], other=0.0
        )
        acc = tl.zeros((BM, BDV), dtype=tl.float32)
        ss = tl.zeros((BM,), dtype=tl.float32)
        for start in range(0, N, BN):
            cols = start + tl.arange(0, BN)
            c_mask = cols < N
            k = tl.load(
                K + (bh * N + cols[:, None]) * DQK + d[None, :],
                mask=c_mask[:, None] & d_mask[None, :],
                other=0.0,
            )
            v = tl.load(
                V + (bh * N + cols[:, None]) * DV + dv[None, :],
                mask=c_mask[:, None] & dv_mask[None, :],
                other=0.0,
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            r = tl.where(c_mask[None, :] & (s > 0), s, 0.0)
            ss += tl.sum(r * r, axis=1)
            acc += _mm(r, v, LOWP, PRECISION)
        tl.store(
            U + (bh * N + rows[:, None]) * DV + dv[None, :],
            acc,
            mask=r_mask[:, None] & dv_mask[None, :],
        )
        tl.store(SS + bh * N + rows, ss, mask=r_mask)

    @triton.jit
    def _pure_norm(SS, bh, N, BR: tl.constexpr):
        """||R||_F of slice ``bh`` from its per-row sums of squares (a fixed-order reduction)."""
        tot = tl.zeros((BR,), dtype=tl.float32)
        for start in range(0, N, BR):
            i = start + tl.arange(0, BR)
            tot += tl.load(SS + bh * N + i, mask=i < N, other=0.0)
        return tl.sqrt(tl.sum(tot, axis=0))

    @triton.jit
    def _pure_finish_kernel(
        U, SS, O, NORM, N, DV, eps, BM: tl.constexpr, BDV: tl.constexpr, BR: tl.constexpr
    ):
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        n = _pure_norm(SS, bh, N, BR)
        rows = pid_m * BM + tl.arange(0, BM)
        dv = tl.arange(0, BDV)
        mask = (rows[:, None] < N) & (dv[None, :] < DV)
        off = (bh * N + rows[:, None]) * DV + dv[None, :]
        u = tl.load(U + off, mask=mask, other=0.0)
        tl.store(O + off, (u / (n + eps)).to(O.dtype.element_ty), mask=mask)
        if pid_m == 0:
            tl.store(NORM + bh, n)

    # ------------------------------------------------------------------- pure: backward
    @triton.jit
    def _pure_dkdv_kernel(
        Q,
        K,
        V,
        DO,
        BETA,
        NORM,
        DK,
        DVV,
        N,
        DQK,
        DV,
        qk_scale,
        eps,
        BM: tl.constexpr,
        BN: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
        PRECISION: tl.constexpr,
        LOWP: tl.constexpr,
    ):
        pid_n = tl.program_id(0)
        bh = tl.program_id(1)
        cols = pid_n * BN + tl.arange(0, BN)
        c_mask = cols < N
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        k = tl.load(
            K + (bh * N + cols[:, None]) * DQK + d[None, :], mask=c_mask[:, None] & d_mask[None, :], other=0.0
        )
        v = tl.load(
            V + (bh * N + cols[:, None]) * DV + dv[None, :],
            mask=c_mask[:, None] & dv_mask[None, :],
            other=0.0,
        )
        beta = tl.load(BETA + bh)
        inv_c = 1.0 / (tl.load(NORM + bh) + eps)
        dk = tl.zeros((BN, BD), dtype=tl.float32)
        dvv = tl.zeros((BN, BDV), dtype=tl.float32)
        for start in range(0, N, BM):
            rows = start + tl.arange(0, BM)
            r_mask = rows < N
            q = tl.load(
                Q + (bh * N + rows[:, None]) * DQK + d[None, :],
                mask=r_mask[:, None] & d_mask[None, :],
                other=0.0,
            )
            do = tl.load(
                DO + (bh * N + rows[:, None]) * DV + dv[None, :],
                mask=r_mask[:, None] & dv_mask[None, :],
                other=0.0,
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale  # [BM, BN]
            pos = r_mask[:, None] & c_mask[None, :] & (s > 0)
            r = tl.where(pos, s, 0.0)
            dvv += _mm(tl.trans(r), do, LOWP, PRECISION)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = tl.where(pos, dp - beta * r, 0.0)
            dk += _mm(tl.trans(ds), q, LOWP, PRECISION)
        tl.store(
            DK + (bh * N + cols[:, None]) * DQK + d[None, :],
            (dk * (inv_c * qk_scale)).to(DK.dtype.element_ty),
            mask=c_mask[:, None] & d_mask[None, :],
        )
        tl.store(
            DVV + (bh * N + cols[:, None]) * DV + dv[None, :],
            (dvv * inv_c).to(DVV.dtype.element_ty),
            mask=c_mask[:, None] & dv_mask[None, :],
        )

    @triton.jit
    def _pure_dq_kernel(
        Q,
        K,
        V,
        DO,
        BETA,
        NORM,
        DQ,
        N,
        DQK,
        DV,
        qk_scale,
        eps,
        BM: tl.constexpr,
        BN: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
        PRECISION: tl.constexpr,
        LOWP: tl.constexpr,
    ):
        pid_m = tl.program_id(0)
        bh = tl.program_id(1)
        rows = pid_m * BM + tl.arange(0, BM)
        r_mask = rows < N
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        q = tl.load(
            Q + (bh * N + rows[:, None]) * DQK + d[None, :], mask=r_mask[:, None] & d_mask[None, :], other=0.0
        )
        do = tl.load(
            DO + (bh * N + rows[:, None]) * DV + dv[None, :],
            mask=r_mask[:, None] & dv_mask[None, :],
            other=0.0,
        )
        beta = tl.load(BETA + bh)
        inv_c = 1.0 / (tl.load(NORM + bh) + eps)
        dq = tl.zeros((BM, BD), dtype=tl.float32)
        for start in range(0, N, BN):
            cols = start + tl.arange(0, BN)
            c_mask = cols < N
            k = tl.load(
                K + (bh * N + cols[:, None]) * DQK + d[None, :],
                mask=c_mask[:, None] & d_mask[None, :],
                other=0.0,
            )
            v = tl.load(
                V + (bh * N + cols[:, None]) * DV + dv[None, :],
                mask=c_mask[:, None] & dv_mask[None, :],
                other=0.0,
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            pos = r_mask[:, None] & c_mask[None, :] & (s > 0)
            r = tl.where(pos, s, 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = tl.where(pos, dp - beta * r, 0.0)
            dq += _mm(ds, k, LOWP, PRECISION)
        tl.store(
            DQ + (bh * N + rows[:, None]) * DQK + d[None, :],
            (dq * (inv_c * qk_scale)).to(DQ.dtype.element_ty),
            mask=r_mask[:, None] & d_mask[None, :],
        )

    def _pure_meta(q: torch.Tensor, v: torch.Tensor) -> dict:
        n = q.shape[1]
        return dict(
            BM=_tile(n),
            BN=_tile(n),
            BD=_pow2(q.shape[-1]),
            BDV=_pow2(v.shape[-1]),
            PRECISION=_precision(q),
            LOWP=q.dtype == torch.bfloat16,
        )

    @triton_op("attnzoo::infsa_pure", mutates_args={})
    def _infsa_pure_op(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        meta = _pure_meta(q, v)
        u = torch.empty((bh, n, dv), device=q.device, dtype=torch.float32)
        ss = torch.empty((bh, n), device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(n, meta["BM"]), bh)
        wrap_triton(_pure_fwd_kernel)[grid](q, k, v, u, ss, n, dqk, dv, scale * scale, **meta)
        out = torch.empty((bh, n, dv), device=q.device, dtype=q.dtype)
        norm = torch.empty((bh,), device=q.device, dtype=torch.float32)
        wrap_triton(_pure_finish_kernel)[grid](
            u, ss, out, norm, n, dv, eps, BM=meta["BM"], BDV=meta["BDV"], BR=min(1024, _pow2(n))
        )
        return out, norm

    @triton_op("attnzoo::infsa_pure_backward", mutates_args={})
    def _infsa_pure_backward_op(
        grad_out: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        norm: torch.Tensor,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        grad_out = grad_out.contiguous()
        # <dO V^T, R> / (c n) = <dO, O> / n: the N x N reduction is an O(N D) one.
        delta = (grad_out.float() * out.float()).sum(dim=(1, 2))
        beta = torch.where(norm > 0, delta / norm.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        meta = _pure_meta(q, v)
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        wrap_triton(_pure_dkdv_kernel)[(triton.cdiv(n, meta["BN"]), bh)](
            q, k, v, grad_out, beta, norm, dk, dvv, n, dqk, dv, scale * scale, eps, **meta
        )
        wrap_triton(_pure_dq_kernel)[(triton.cdiv(n, meta["BM"]), bh)](
            q, k, v, grad_out, beta, norm, dq, n, dqk, dv, scale * scale, eps, **meta
        )
        return dq, dk, dvv

    @_infsa_pure_op.register_fake
    def _infsa_pure_fake(q, k, v, scale, eps):
        out = q.new_empty((*q.shape[:2], v.shape[-1]))
        return out, q.new_empty(q.shape[:1], dtype=torch.float32)

    @_infsa_pure_backward_op.register_fake
    def _infsa_pure_backward_fake(grad_out, q, k, v, out, norm, scale, eps):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _pure_setup_context(ctx, inputs, output) -> None:
        q, k, v, scale, eps = inputs
        out, norm = output
        ctx.save_for_backward(q, k, v, out, norm)
        ctx.meta = (scale, eps)

    def _pure_backward(ctx, grad_out: torch.Tensor, _grad_norm: torch.Tensor):
        q, k, v, out, norm = ctx.saved_tensors
        grads = torch.ops.attnzoo.infsa_pure_backward(grad_out, q, k, v, out, norm, *ctx.meta)
        return (*grads, None, None)

    _infsa_pure_op.register_autograd(_pure_backward, setup_context=_pure_setup_context)

    # ------------------------------------------------------------------- linear: forward
    @triton.jit
    def _linear_fwd_kernel(
        Q,
        K,
        V,
        P,
        P32,
        QBAR,
        STATS,
        N,
        DQK,
        DV,
        scale,
        eps,
        BN: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
    ):
        bh = tl.program_id(0)
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        # pass 1: queries -> energy-weighted pooled query
        e_sum = tl.zeros((BN,), dtype=tl.float32)
        q_acc = tl.zeros((BD,), dtype=tl.float32)
        for start in range(0, N, BN):
            rows = start + tl.arange(0, BN)
            r_mask = rows < N
            qs = (
                tl.load(
                    Q + (bh * N + rows[:, None]) * DQK + d[None, :],
                    mask=r_mask[:, None] & d_mask[None, :],
                    other=0.0,
                ).to(tl.float32)
                * scale
            )
            e = tl.sqrt(tl.sum(qs * qs, axis=1))
            e_sum += e
            q_acc += tl.sum(e[:, None] * qs, axis=0)
        e_tot = tl.sum(e_sum, axis=0)
        q_bar = q_acc / (e_tot + eps)
        # pass 2: keys and values -> relu weights and the pooled value
        z_sum = tl.zeros((BN,), dtype=tl.float32)
        v_acc = tl.zeros((BDV,), dtype=tl.float32)
        for start in range(0, N, BN):
            rows = start + tl.arange(0, BN)
            r_mask = rows < N
            ks = (
                tl.load(
                    K + (bh * N + rows[:, None]) * DQK + d[None, :],
                    mask=r_mask[:, None] & d_mask[None, :],
                    other=0.0,
                ).to(tl.float32)
                * scale
            )
            v = tl.load(
                V + (bh * N + rows[:, None]) * DV + dv[None, :],
                mask=r_mask[:, None] & dv_mask[None, :],
                other=0.0,
            ).to(tl.float32)
            r = tl.maximum(tl.sum(ks * q_bar[None, :], axis=1), 0.0)
            z_sum += r
            v_acc += tl.sum(r[:, None] * v, axis=0)
        z_tot = tl.sum(z_sum, axis=0)
        pooled = v_acc / (z_tot + eps)
        tl.store(P + bh * DV + dv, pooled.to(P.dtype.element_ty), mask=dv_mask)
        tl.store(P32 + bh * DV + dv, pooled, mask=dv_mask)
        tl.store(QBAR + bh * DQK + d, q_bar, mask=d_mask)
        tl.store(STATS + bh * 2, e_tot)
        tl.store(STATS + bh * 2 + 1, z_tot)

    # ------------------------------------------------------------------- linear: backward
    @triton.jit
    def _linear_bwd_kernel(
        Q,
        K,
        V,
        DP,
        P32,
        QBAR,
        STATS,
        DQ,
        DK,
        DVV,
        N,
        DQK,
        DV,
        scale,
        eps,
        BN: tl.constexpr,
        BD: tl.constexpr,
        BDV: tl.constexpr,
    ):
        bh = tl.program_id(0)
        d = tl.arange(0, BD)
        d_mask = d < DQK
        dv = tl.arange(0, BDV)
        dv_mask = dv < DV
        dp = tl.load(DP + bh * DV + dv, mask=dv_mask, other=0.0).to(tl.float32)
        pooled = tl.load(P32 + bh * DV + dv, mask=dv_mask, other=0.0)
        q_bar = tl.load(QBAR + bh * DQK + d, mask=d_mask, other=0.0)
        inv_e = 1.0 / (tl.load(STATS + bh * 2) + eps)
        inv_z = 1.0 / (tl.load(STATS + bh * 2 + 1) + eps)
        gamma = tl.sum(dp * pooled, axis=0)
        # pass A: keys and values -> dK, dV and the gradient of q_bar
        dqbar = tl.zeros((BD,), dtype=tl.float32)
        for start in range(0, N, BN):
            rows = start + tl.arange(0, BN)
            r_mask = rows < N
            kd_mask = r_mask[:, None] & d_mask[None, :]
            vd_mask = r_mask[:, None] & dv_mask[None, :]
            ks = (
                tl.load(K + (bh * N + rows[:, None]) * DQK + d[None, :], mask=kd_mask, other=0.0).to(
                    tl.float32
                )
                * scale
            )
            v = tl.load(V + (bh * N + rows[:, None]) * DV + dv[None, :], mask=vd_mask, other=0.0).to(
                tl.float32
            )
            t = tl.sum(ks * q_bar[None, :], axis=1)
            a = tl.maximum(t, 0.0) * inv_z
            tl.store(
                DVV + (bh * N + rows[:, None]) * DV + dv[None, :],
                (a[:, None] * dp[None, :]).to(DVV.dtype.element_ty),
                mask=vd_mask,
            )
            dt = tl.where(t > 0, (tl.sum(v * dp[None, :], axis=1) - gamma) * inv_z, 0.0)
            tl.store(
                DK + (bh * N + rows[:, None]) * DQK + d[None, :],
                (dt[:, None] * q_bar[None, :] * scale).to(DK.dtype.element_ty),
                mask=kd_mask,
            )
            dqbar += tl.sum(dt[:, None] * ks, axis=0)
        # pass B: queries (q_bar = sum_i e_i q_i s / (E + eps), e_i = ||q_i s||)
        qbar_dot = tl.sum(q_bar * dqbar, axis=0)
        for start in range(0, N, BN):
            rows = start + tl.arange(0, BN)
            r_mask = rows < N
            qd_mask = r_mask[:, None] & d_mask[None, :]
            qs = (
                tl.load(Q + (bh * N + rows[:, None]) * DQK + d[None, :], mask=qd_mask, other=0.0).to(
                    tl.float32
                )
                * scale
            )
            e = tl.sqrt(tl.sum(qs * qs, axis=1))
            de = (tl.sum(qs * dqbar[None, :], axis=1) - qbar_dot) * inv_e
            coef = tl.where(e > 0, de / tl.where(e > 0, e, 1.0), 0.0)
            dqs = (e * inv_e)[:, None] * dqbar[None, :] + coef[:, None] * qs
            tl.store(
                DQ + (bh * N + rows[:, None]) * DQK + d[None, :],
                (dqs * scale).to(DQ.dtype.element_ty),
                mask=qd_mask,
            )

    def _linear_meta(q: torch.Tensor, v: torch.Tensor) -> dict:
        bd, bdv = _pow2(q.shape[-1]), _pow2(v.shape[-1])
        return dict(BN=max(16, min(128, 8192 // max(bd, bdv))), BD=bd, BDV=bdv)

    @triton_op("attnzoo::infsa_linear", mutates_args={})
    def _infsa_linear_op(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        pooled = torch.empty((bh, dv), device=q.device, dtype=q.dtype)
        pooled32 = torch.empty((bh, dv), device=q.device, dtype=torch.float32)
        q_bar = torch.empty((bh, dqk), device=q.device, dtype=torch.float32)
        stats = torch.empty((bh, 2), device=q.device, dtype=torch.float32)
        wrap_triton(_linear_fwd_kernel)[(bh,)](
            q, k, v, pooled, pooled32, q_bar, stats, n, dqk, dv, scale, eps, **_linear_meta(q, v)
        )
        return pooled, pooled32, q_bar, stats

    @triton_op("attnzoo::infsa_linear_backward", mutates_args={})
    def _infsa_linear_backward_op(
        grad_pooled: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pooled32: torch.Tensor,
        q_bar: torch.Tensor,
        stats: torch.Tensor,
        scale: float,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bh, n, dqk = q.shape
        dv = v.shape[-1]
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dvv = torch.empty_like(v)
        wrap_triton(_linear_bwd_kernel)[(bh,)](
            q,
            k,
            v,
            grad_pooled.contiguous(),
            pooled32,
            q_bar,
            stats,
            dq,
            dk,
            dvv,
            n,
            dqk,
            dv,
            scale,
            eps,
            **_linear_meta(q, v),
        )
        return dq, dk, dvv

    @_infsa_linear_op.register_fake
    def _infsa_linear_fake(q, k, v, scale, eps):
        bh, dqk, dv = q.shape[0], q.shape[-1], v.shape[-1]
        f32 = dict(dtype=torch.float32)
        return (
            q.new_empty((bh, dv)),
            q.new_empty((bh, dv), **f32),
            q.new_empty((bh, dqk), **f32),
            q.new_empty((bh, 2), **f32),
        )

    @_infsa_linear_backward_op.register_fake
    def _infsa_linear_backward_fake(grad_pooled, q, k, v, pooled32, q_bar, stats, scale, eps):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def _linear_setup_context(ctx, inputs, output) -> None:
        q, k, v, scale, eps = inputs
        _, pooled32, q_bar, stats = output
        ctx.save_for_backward(q, k, v, pooled32, q_bar, stats)
        ctx.meta = (scale, eps)

    def _linear_backward(ctx, grad_pooled, _g32, _gq, _gs):
        q, k, v, pooled32, q_bar, stats = ctx.saved_tensors
        grads = torch.ops.attnzoo.infsa_linear_backward(
            grad_pooled, q, k, v, pooled32, q_bar, stats, *ctx.meta
        )
        return (*grads, None, None)

    _infsa_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup_context)
