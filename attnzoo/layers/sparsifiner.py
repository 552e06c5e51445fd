"""Sparsifiner attention: a low-rank connectivity predictor picks, per query, the keys it attends to.

Sparsifiner (Wei et al., CVPR 2023) keeps a ViT's attention but lets each query row attend only to a
fixed budget of keys (``ceil(keep_rate * N)``, 50 of 197 at the official 0.25) chosen per image by a
cheap predictor: q and k are projected to half the head width, the keys are compressed along the
token axis to ``K = N // 6`` basis slots, each query's softmax over the slots keeps its top 8
coefficients (eval), and the coefficients recombine a thresholded non-negative basis (``|proj_back_n|``,
entries <= 0.02 zeroed) into an approximate attention row whose top keys are the row's key set. The
class-token row stays dense. The official code then computes the full ``N x N`` attention and masks
it; here the selected keys go to :func:`attnzoo.kernels.topk_attention`, which touches only them.

Token pruning (EViT-style, the official ``token_pruning_loc``): a pruning block ranks the live patch
tokens by the head-mean class attention and keeps ``ceil(token_keep_rate * (N - 1))`` of them; as in
the official code a pruned token is not removed but zero-filled after the block, and its q / k / v
are zeroed in every later block (so it still counts in the class row's softmax, with logit 0). Zero
filling is also how the mask travels between blocks: a block reads "pruned" as "an all-zero patch
token" (an active token whose whole embedding is exactly 0 after a residual block would be read as
pruned; this does not happen with real weights). The predictor's mask is not differentiable
(detached, as in the official code).

Other token counts than the one the predictor was built for (another image size): its two token-axis
tensors are resampled linearly along the patch-token sequence (class token kept). The official model
only runs at its training size; this keeps attnzoo's any-size contract, with a predictor that is an
approximation away from 224 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module, trunc_normal_
from torch import nn

from attnzoo.kernels import topk_attention
from attnzoo.kernels.dispatch import graph_capture
from attnzoo.layers.checks import check_no_mask
from attnzoo.layers.projections import HeadProjections
from attnzoo.layers.token_tables import resample_tokens

__all__ = ["ConnectivityPredictor", "SparsifinerAttention", "fit_token_table", "token_mask_from_zeros"]


def token_mask_from_zeros(x: torch.Tensor) -> torch.Tensor:
    """``[B, N - 1]`` bool: the patch tokens of ``x`` (``[B, N, C]``, class token first) that are live,
    i.e. not zero-filled by an earlier pruning block."""
    return x[:, 1:].ne(0).any(dim=-1)


def live_tokens(token_mask: torch.Tensor) -> torch.Tensor:
    """``[B, N - 1]`` live patch tokens -> ``[B, 1, N, 1]`` multiplier over all tokens (class token
    live), which zeroes pruned tokens' per-head rows as the official ``masked_fill`` does."""
    return torch.cat([token_mask.new_ones(token_mask.shape[0], 1), token_mask], dim=1)[:, None, :, None]


def fit_token_table(table: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``[N0, K]`` -> ``[num_tokens, K]``: the class row kept, the patch rows resampled linearly along
    the token sequence (the predictor does not know the patch grid)."""
    if table.shape[0] == num_tokens:
        return table
    if num_tokens < 2:
        raise ValueError(f"Sparsifiner needs a class token and at least one patch token, got {num_tokens}")
    old, new = (1, table.shape[0] - 1), (1, num_tokens - 1)
    return resample_tokens(table[None], old, new, num_prefix=1, keep_mass=False)[0]


def top_keys(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest scores of each row, ties going to the lower index.

    Thresholded bases leave exact ties (often at 0) in a row, which ``torch.topk`` breaks however the
    backend likes. Eager code takes a stable sort; an exported graph (which has no stable sort) takes
    ONNX's TopK, whose ties go to the lower index too, so both pick the same keys. The official choice
    is the same wherever a row's k-th and (k+1)-th scores differ.
    """
    if graph_capture():
        return scores.topk(k, dim=-1).indices
    return scores.sort(dim=-1, descending=True, stable=True).indices[..., :k]


class ConnectivityPredictor(nn.Module):
    """The official ``MaskPredictor`` at eval settings: which keys each non-class query row keeps.

    Parameters keep the official names (``proj_c_q``, ``proj_c_k``, ``proj_n``, ``proj_back_n``), so
    official checkpoints load unchanged. The token tables have ``num_tokens`` rows and
    ``basis_tokens // reduce_n_factor`` basis slots (``basis_tokens`` defaults to ``num_tokens``; a
    model built for another image size keeps the 224 px count, so the official tables resample onto
    it). The logits are scaled by ``num_heads ** -0.5`` (not the head
    width), as the official module does.
    """

    def __init__(
        self,
        head_dim: int,
        num_heads: int,
        num_tokens: int = 197,
        attn_keep_rate: float = 0.25,
        reduce_n_factor: int = 6,
        reduce_c_factor: int = 2,
        basis_threshold: float = 0.02,
        basis_topk: int = 8,
        basis_tokens: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if not 0.0 < attn_keep_rate <= 1.0:
            raise ValueError(f"attn_keep_rate must lie in (0, 1], got {attn_keep_rate}")
        dd = {"device": device, "dtype": dtype}
        reduced_c = head_dim // reduce_c_factor
        reduced_n = (basis_tokens or num_tokens) // reduce_n_factor
        if reduced_c < 1 or reduced_n < 1:
            raise ValueError(f"reduction factors leave no width ({reduced_c}) or basis slots ({reduced_n})")
        self.num_tokens = num_tokens
        self.attn_keep_rate = attn_keep_rate
        self.basis_threshold = basis_threshold
        self.basis_topk = min(basis_topk, reduced_n)
        self.scale = num_heads**-0.5
        self.proj_c_q = nn.Linear(head_dim, reduced_c, **dd)
        self.proj_c_k = nn.Linear(head_dim, reduced_c, **dd)
        self.proj_n = nn.Parameter(torch.empty(num_tokens, reduced_n, **dd))
        self.proj_back_n = nn.Parameter(torch.empty(num_tokens, reduced_n, **dd))
        if not self.proj_n.is_meta:  # the official init: truncated normal (std 0.02), zero biases
            for weight in (self.proj_n, self.proj_back_n, self.proj_c_q.weight, self.proj_c_k.weight):
                trunc_normal_(weight, std=0.02)
            nn.init.zeros_(self.proj_c_q.bias)
            nn.init.zeros_(self.proj_c_k.bias)

    def approximate_attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The training form of the low-rank attention rows ``[B, H, N - 1, N]`` (all basis
        coefficients, the raw ``proj_back_n``), which the official reconstruction phase fits to the
        dense attention; differentiable in the predictor's parameters."""
        n = q.shape[-2]
        slots = self.proj_c_k(k).transpose(-1, -2) @ fit_token_table(self.proj_n, n)
        coef = ((self.proj_c_q(q)[..., 1:, :] @ slots) * self.scale).softmax(dim=-1)
        return coef @ fit_token_table(self.proj_back_n, n).t()

    def budget(self, num_tokens: int) -> int:
        """Keys kept per query row at ``num_tokens`` tokens: ``ceil(keep_rate * N)`` (50 of 197)."""
        return min(num_tokens, math.ceil(self.attn_keep_rate * num_tokens))

    @torch.no_grad()
    def forward(
        self, q: torch.Tensor, k: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Key indices ``[B, H, N - 1, budget]`` (int64) for the non-class query rows of ``q`` / ``k``
        (``[B, H, N, D]``, already zeroed at pruned tokens); ``token_mask`` ``[B, N - 1]`` (live
        patch tokens) keeps pruned keys out of the choice while enough live keys remain."""
        n = q.shape[-2]
        qc, kc = self.proj_c_q(q), self.proj_c_k(k)  # [B, H, N, c]
        if token_mask is not None:
            live = live_tokens(token_mask)
            qc, kc = qc * live, kc * live
        proj_n = fit_token_table(self.proj_n, n).to(kc.dtype)
        basis = fit_token_table(self.proj_back_n, n).abs().t().to(kc.dtype)  # [K, N]
        basis = basis.masked_fill(basis <= self.basis_threshold, 0.0)
        slots = kc.transpose(-1, -2) @ proj_n  # [B, H, c, K]
        coef = ((qc[..., 1:, :] @ slots) * self.scale).softmax(dim=-1)  # [B, H, N - 1, K]
        top, where = coef.topk(self.basis_topk, dim=-1, sorted=False)
        coef = torch.zeros_like(coef).scatter_(-1, where, top)
        approx = coef @ basis  # [B, H, N - 1, N]
        budget = self.budget(n)
        if token_mask is not None:
            approx[..., 1:] = approx[..., 1:].masked_fill(~token_mask[:, None, None, :], float("-inf"))
            # Official: the budget never exceeds the live patch tokens (of the first image, if any).
            if token_mask.shape[0]:
                budget = max(1, min(budget, int(token_mask[0].sum())))
        return top_keys(approx, budget)


@register_notrace_module
class SparsifinerAttention(HeadProjections):
    """timm-``Attention``-compatible multi-head attention over predictor-chosen keys.

        Constructor and parameters are timm ``Attention``'s (fused ``qkv``, ``proj``), so a DeiT's weights
        load as they are, plus ``mask_predictor`` (:class:`ConnectivityPredictor`). ``token_keep_rate``
        makes the layer a pruning layer (see the module docstring); pruning layers and the layers after
        one pass the live-token mask through ``forward``. Under torch.fx the layer is one call (its key
    budgets are Python ints read from the token count).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: Callable[..., nn.Module] | None = None,
        num_tokens: int = 197,
        attn_keep_rate: float = 0.25,
        reduce_n_factor: int = 6,
        reduce_c_factor: int = 2,
        basis_threshold: float = 0.02,
        basis_topk: int = 8,
        device=None,
        dtype=None,
    ) -> None:
        if qk_norm or scale_norm:
            raise ValueError("SparsifinerAttention has no qk_norm / scale_norm (the official model has none)")
        if attn_drop:
            raise ValueError(
                "SparsifinerAttention has no attention dropout (the sparse rows never form weights)"
            )
        dd = {"device": device, "dtype": dtype}
        super().__init__(
            dim, num_heads=num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, proj_drop=proj_drop, **dd
        )
        self.mask_predictor = ConnectivityPredictor(
            self.head_dim,
            num_heads,
            num_tokens=num_tokens,
            attn_keep_rate=attn_keep_rate,
            reduce_n_factor=reduce_n_factor,
            reduce_c_factor=reduce_c_factor,
            basis_threshold=basis_threshold,
            basis_topk=basis_topk,
            **dd,
        )
        self.token_keep_rate: float | None = None

    def extra_repr(self) -> str:
        keep = self.mask_predictor.attn_keep_rate
        return f"num_heads={self.num_heads}, attn_keep_rate={keep}, token_keep_rate={self.token_keep_rate}"

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        token_mask: torch.Tensor | None = None,
        return_token_mask: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """timm's signature (``[B, N, C]`` -> ``[B, N, C]``), plus the live-token mask ``[B, N - 1]``
        (None: every token live). With ``return_token_mask`` it also returns the mask after this
        layer: a pruning layer's new one, else ``token_mask``."""
        check_no_mask(attn_mask, is_causal, "SparsifinerAttention")
        out, token_mask = self._attend(x, token_mask)
        return (out, token_mask) if return_token_mask else out

    def reconstruction(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense attention (the official reconstruction phase) and the predictor's loss: the summed
        squared error between :meth:`ConnectivityPredictor.approximate_attention` and the dense
        attention rows, both from detached q / k, so only the predictor learns from it."""
        q, k, v = self.split_heads(x)
        weights = ((q * self.scale) @ k.transpose(-1, -2)).softmax(dim=-1)
        approx = self.mask_predictor.approximate_attention(q.detach(), k.detach())
        loss = F.mse_loss(approx, weights[:, :, 1:].detach(), reduction="sum")
        return self.merge_heads(weights @ v), loss

    def _attend(
        self, x: torch.Tensor, token_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, N, _ = x.shape
        if N < 2:
            raise ValueError(f"SparsifinerAttention needs a class token and patch tokens, got {N} tokens")
        q, k, v = self.split_heads(x)
        if token_mask is not None:
            live = live_tokens(token_mask)
            q, k, v = q * live, k * live, v * live
        idx = self.mask_predictor(q, k, token_mask)  # no gradient: the predictor runs under no_grad

        # The class row is dense (its weights also rank tokens for pruning); the rest is sparse.
        cls_logits = (q[:, :, :1] * self.scale) @ k.transpose(-1, -2)  # [B, H, 1, N]
        cls_weights = cls_logits.softmax(dim=-1)
        cls_out = cls_weights @ v
        # idx is a topk / sort over the keys: in range by construction, so no range check (no sync).
        rows = topk_attention(q[:, :, 1:], k, v, idx, self.scale, check_range=False)
        out = self.merge_heads(torch.cat([cls_out, rows], dim=2))

        if self.token_keep_rate is None:
            return out, token_mask
        score = cls_weights[:, :, 0, 1:].mean(dim=1)  # [B, N - 1]
        if token_mask is not None:
            score = score.masked_fill(~token_mask, float("-inf"))
        keep = math.ceil(self.token_keep_rate * (N - 1))
        kept = score.topk(keep, dim=-1, sorted=False).indices
        new_mask = torch.zeros_like(score, dtype=torch.bool).scatter_(-1, kept, True)
        return out, new_mask
