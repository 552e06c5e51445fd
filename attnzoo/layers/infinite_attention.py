"""Infinite Self-Attention as a timm-compatible attention layer, and a swap for timm ViTs.

:class:`InfiniteSelfAttention` has timm ``Attention``'s constructor and parameter layout (fused
``qkv``, ``proj``, optional ``q_norm`` / ``k_norm`` / ``norm``) plus one 0-d ``rho_logit``, so it
drops into ``timm.models.vision_transformer.Block(attn_layer=...)`` and takes a softmax ViT's weights
as they are. ``rho = sigmoid(rho_logit)`` stays a tensor (the official module reads it with
``.item()``, which freezes it and breaks torch.compile); the forward value is the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from timm.layers import register_notrace_function
from torch import nn

from attnzoo.kernels import infsa_linear, infsa_pure
from attnzoo.kernels.infinite_attention import infsa_linear_scores_reference, infsa_pure_scores_reference
from attnzoo.layers.checks import check_no_mask
from attnzoo.layers.projections import HeadProjections

__all__ = ["InfiniteSelfAttention", "swap_attention"]

MODES = ("pure", "linear")

# torch.fx (timm's feature_cls='fx'): the ops check and dispatch on their inputs, so a trace records
# each as one call, run (and dispatched) when the graph runs.
register_notrace_function(infsa_pure)
register_notrace_function(infsa_linear)


class InfiniteSelfAttention(HeadProjections):
    """Multi-head InfSA over ``(B, N, C)`` tokens.

    ``mode='pure'``: ``rho * relu(q k^T) / (||relu(q k^T)||_F + eps) @ v`` per head (q and k each
    scaled by ``head_dim ** -0.5``). ``mode='linear'``: every token receives the same vector
    ``rho * sum_j a_j v_j`` (energy-weighted query pooling, relu weights over the keys), so the
    output projection runs once per image and the result is broadcast over the tokens.

    ``attn_drop`` (dropout on the attention weights, as the official module does in training) makes
    the training forward materialise the weights; at ``attn_drop=0`` the fused kernels run.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        mode: str = "pure",
        qkv_bias: bool = False,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: Callable[..., nn.Module] | None = None,
        rho_init: float = 0.9,
        eps: float = 1e-6,
        attn_head_dim: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < rho_init < 1.0:
            raise ValueError(f"rho_init must lie in (0, 1), got {rho_init}")
        super().__init__(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            scale_norm=scale_norm,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            norm_layer=norm_layer,
            attn_head_dim=attn_head_dim,
            device=device,
            dtype=dtype,
        )
        dd = {"device": device, "dtype": dtype}
        self.mode = mode
        self.eps = eps
        self.rho_logit = nn.Parameter(torch.tensor(math.log(rho_init / (1.0 - rho_init)), **dd))

    @property
    def rho(self) -> torch.Tensor:
        """``sigmoid(rho_logit)``, a differentiable 0-d tensor."""
        return torch.sigmoid(self.rho_logit)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, num_heads={self.num_heads}, head_dim={self.head_dim}"

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        check_no_mask(attn_mask, is_causal, "InfiniteSelfAttention")
        B, N, _ = x.shape
        q, k, v = self.split_heads(x)
        rho = self.rho.to(v.dtype)
        dropout = self.training and self.attn_drop.p > 0
        if self.mode == "pure":
            if dropout:
                a = self.attn_drop(infsa_pure_scores_reference(q, k, self.scale, self.eps))
                o = (rho * (a @ v.to(a.dtype))).to(v.dtype)
            else:
                o = infsa_pure(q, k, v, rho, self.scale, self.eps)
            return self.merge_heads(o)
        if dropout:
            a = self.attn_drop(infsa_linear_scores_reference(q, k, self.scale, self.eps))
            pooled = (rho * (a.unsqueeze(-2) @ v.to(a.dtype)).squeeze(-2)).to(v.dtype)
        else:
            pooled = infsa_linear(q, k, v, rho, self.scale, self.eps)  # (B, H, Dh)
        # Every token carries the same vector: project it once per image, then broadcast.
        o = self.proj(self.norm(pooled.reshape(B, 1, self.attn_dim))).expand(B, N, -1)
        return self.proj_drop(o)


def _is_timm_attention(module: nn.Module) -> bool:
    from timm.layers import Attention

    return type(module) is Attention


def swap_attention(
    model: nn.Module,
    mode: str = "pure",
    rho_init: float = 0.95,
    copy_weights: bool = True,
    predicate: Callable[[str, nn.Module], bool] | None = None,
) -> nn.Module:
    """Replace the softmax attention of a timm ViT (``timm.layers.Attention`` modules) by InfSA, in place.

    ``qkv``, ``proj``, ``q_norm`` / ``k_norm`` and ``norm`` keep their weights when ``copy_weights``
    (as the official ``infsa.convert`` copies q/k/v/out projections); each swapped layer gets a fresh
    ``rho_logit`` with ``sigmoid = rho_init`` (the official default 0.95). ``predicate(name, module)``
    picks which attention modules to swap (default: every ``Attention``). Returns ``model``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    predicate = predicate or (lambda name, module: _is_timm_attention(module))
    targets = [(name, m) for name, m in model.named_modules() if name and predicate(name, m)]
    if not targets:
        raise ValueError(f"no attention module to swap in {type(model).__name__}")
    for name, old in targets:
        if not all(hasattr(old, a) for a in ("qkv", "proj", "num_heads", "head_dim")):
            raise TypeError(f"{name}: {type(old).__name__} lacks timm Attention's qkv / proj layout")
        if getattr(old, "gate", None) is not None:
            raise TypeError(f"{name}: gated attention is not supported")
        ref = old.qkv.weight
        new = InfiniteSelfAttention(
            old.qkv.in_features,
            num_heads=old.num_heads,
            mode=mode,
            qkv_bias=old.qkv.bias is not None,
            proj_bias=old.proj.bias is not None,
            attn_drop=getattr(old.attn_drop, "p", 0.0),
            proj_drop=getattr(old.proj_drop, "p", 0.0),
            rho_init=rho_init,
            attn_head_dim=old.head_dim,
            device=ref.device,
            dtype=ref.dtype,
        )
        for part in ("q_norm", "k_norm", "norm"):
            setattr(new, part, getattr(old, part, nn.Identity()))
        if copy_weights:
            with torch.no_grad():
                new.qkv.load_state_dict(old.qkv.state_dict())
                new.proj.load_state_dict(old.proj.state_dict())
        new.train(old.training)
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)
    return model
