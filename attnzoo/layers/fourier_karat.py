"""Fourier Kolmogorov-Arnold attention (Fourier-KArAt, Maity et al., arXiv:2503.10632) as a
timm-compatible attention layer.

Softmax is replaced row-wise by a learnable operator. Per head, with ``A = q k^T / sqrt(d)``
(``N x N``), each row ``A_k`` goes through ``r`` learnable KAN units (``p = 1 .. r``, one 1-D function
per edge ``q -> p``) and a learned ``W`` (``N x r``) maps the ``r`` values back to ``N`` weights::

    Phi_p(A_k) = sum_q [ w_pq silu(A_kq) + s_pq sum_{m=1..G} (a_pqm cos(m A_kq) + b_pqm sin(m A_kq)) ]
    sigma(A)_k = W Phi(A_k),   out = sigma(A) V = Phi(A) (W^T V)

No normalisation. Parameters per operator and head: ``a``, ``b`` (``2 G r N``), ``W`` (``r N``) and
``2 r N`` more, so ``(2G + 3) r N`` in all: the count the paper's tables fit exactly (ViT-Ti + G3B
6.29M, + G3U 5.59M at 10 classes, N = 197). The official code is not public, so the extra ``2 r N`` are
our choice: the two per-edge weights of a KAN layer (Liu et al.; ``efficient-kan``'s ``base_weight``
and ``spline_scaler``): ``w`` weighs a SiLU base branch (KAN's residual ``b(x) = silu(x)``, which
gives every edge a non-periodic component) and ``s`` scales the Fourier sum. Both are per edge
``(p, q)`` (``[r, N]``), which is what makes them ``r N`` each; ``s`` is folded into ``a``, ``b`` before
the kernel, so the op sees one coefficient tensor (``[2G + 1, N, r]`` per head).

Sharing (:class:`FourierOperator` holds the tensors of all heads): ``'blockwise'``, one operator per
block (the layer's own ``karat`` submodule); ``'universal'``, one per model, every block using it. A
universal operator belongs to the model (``model.karat``, one set of keys in the state dict, one
count in ``parameters()``) and each layer holds a plain reference (:meth:`FourierKArAtAttention.
share_operator`), not a submodule: a submodule registered under every block would repeat its keys
in ``state_dict`` (and break safetensors' no-shared-tensors rule). Gradients from all blocks
accumulate into the one tensor set.

Any input size: the operator's token axis is tied to the ``N`` it was built for (the class token and
a patch grid, 1 + 14 x 14 at 224 px). For another token count the coefficients and ``W`` are
resampled along that axis like a position embedding: prefix (class) entries kept, the patch entries
resampled bilinearly to the current grid and multiplied by ``old patches / new patches`` (so the sums
over keys in ``Phi`` and in ``sigma(A) V`` keep their magnitude, a Riemann sum over the same image).
The current grid is written into the operator (``token_grid``) by the model before its blocks run
(``KArAtViT._pos_embed``); a layer used alone reads it there, else assumes a square grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from timm.layers import register_notrace_function, trunc_normal_
from torch import nn

from attnzoo.kernels import fourier_karat
from attnzoo.layers.checks import check_no_mask
from attnzoo.layers.projections import HeadProjections
from attnzoo.layers.token_tables import resample_tokens

__all__ = ["SHARING", "FourierKArAtAttention", "FourierOperator", "operator_tensors"]

SHARING = ("blockwise", "universal")

# torch.fx (timm's feature_cls='fx'): the op checks and dispatches on its inputs, so a trace records
# it as one call.
register_notrace_function(fourier_karat)


def _grid_for(n_tokens: int, num_prefix: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    """The patch grid of ``n_tokens`` tokens: ``grid`` when it fits, else a square one."""
    if grid is not None and grid[0] * grid[1] + num_prefix == n_tokens:
        return int(grid[0]), int(grid[1])
    side = math.isqrt(n_tokens - num_prefix)
    if side * side + num_prefix != n_tokens:
        raise ValueError(
            f"Fourier-KArAt got {n_tokens} tokens ({num_prefix} prefix) that fit neither the operator's "
            f"token_grid {grid} nor a square grid; set operator.token_grid = (rows, cols)"
        )
    return side, side


@register_notrace_function
def operator_tensors(
    fourier: torch.Tensor,
    base_weight: torch.Tensor,
    edge_scale: torch.Tensor,
    token_proj: torch.Tensor,
    n_tokens: int,
    base_grid: tuple[int, int],
    grid: tuple[int, int] | None,
    num_prefix: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's coefficient tensor ``[H, 2G + 1, n, r]`` and ``W`` ``[H, n, r]`` for ``n_tokens``.

    Basis order: SiLU, then ``cos(m x)``, ``sin(m x)`` for ``m = 1 .. G``; ``edge_scale`` is folded
    into the Fourier coefficients. One torch.fx call (a leaf): the token count decides the resampling.
    """
    h, _, r, n, g = fourier.shape
    harmonics = (fourier * edge_scale[:, None, :, :, None]).permute(0, 4, 1, 3, 2).reshape(h, 2 * g, n, r)
    coef = torch.cat((base_weight.transpose(1, 2).unsqueeze(1), harmonics), dim=1)
    if n_tokens != n:
        new_grid = _grid_for(n_tokens, num_prefix, grid)
        coef = resample_tokens(coef.reshape(-1, n, r), base_grid, new_grid, num_prefix).unflatten(
            0, (h, 2 * g + 1)
        )
        token_proj = resample_tokens(token_proj, base_grid, new_grid, num_prefix)
    return coef, token_proj


class FourierOperator(nn.Module):
    """The learnable Fourier-KArAt operator of one attention layer (blockwise) or model (universal),
    for all heads; the layout is the module docstring's.

    Parameters: ``fourier`` ``[H, 2, r, N, G]`` (``a`` then ``b``), ``base_weight`` and
    ``edge_scale`` ``[H, r, N]``, ``token_proj`` (``W``) ``[H, N, r]``. ``base_grid``: the patch grid
    of the ``N - num_prefix`` patch tokens (default: square). ``token_grid``: the grid of the tokens
    now running, written by the model (see the module docstring).
    """

    def __init__(
        self,
        num_heads: int,
        grid: int = 3,
        rank: int = 12,
        num_tokens: int = 197,
        num_prefix_tokens: int = 1,
        base_grid: tuple[int, int] | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if grid < 1 or rank < 1:
            raise ValueError(f"grid and rank must be >= 1, got {grid}, {rank}")
        self.num_heads, self.grid, self.rank = num_heads, grid, rank
        self.num_tokens, self.num_prefix_tokens = num_tokens, num_prefix_tokens
        self.base_grid = tuple(base_grid) if base_grid else _grid_for(num_tokens, num_prefix_tokens, None)
        if self.base_grid[0] * self.base_grid[1] + num_prefix_tokens != num_tokens:
            raise ValueError(
                f"base_grid {self.base_grid} does not hold {num_tokens - num_prefix_tokens} patches"
            )
        self.token_grid: tuple[int, int] | None = None
        dd = {"device": device, "dtype": dtype}
        self.fourier = nn.Parameter(torch.empty(num_heads, 2, rank, num_tokens, grid, **dd))
        self.base_weight = nn.Parameter(torch.empty(num_heads, rank, num_tokens, **dd))
        self.edge_scale = nn.Parameter(torch.empty(num_heads, rank, num_tokens, **dd))
        self.token_proj = nn.Parameter(torch.empty(num_heads, num_tokens, rank, **dd))
        self.init_weights()

    def init_weights(self) -> None:
        """KAN-style init (timm's ViT init calls it): ``Phi`` of order 1 at init, ``W`` as timm's linears.

        ``a``, ``b`` ~ N(0, 1 / (2 G N)) (the Fourier-KAN scaling over ``2 G N`` terms per unit),
        ``edge_scale`` = 1, ``base_weight`` ~ U(+-1 / sqrt(N)) (nn.Linear's), ``W`` ~ trunc N(0, 0.02).
        """
        if self.fourier.is_meta:
            return
        with torch.no_grad():
            self.fourier.normal_(0.0, (2 * self.grid * self.num_tokens) ** -0.5)
            self.edge_scale.fill_(1.0)
            bound = self.num_tokens**-0.5
            self.base_weight.uniform_(-bound, bound)
            trunc_normal_(self.token_proj, std=0.02)

    def extra_repr(self) -> str:
        return (
            f"num_heads={self.num_heads}, grid={self.grid}, rank={self.rank}, num_tokens={self.num_tokens}, "
            f"base_grid={self.base_grid}"
        )

    def tensors(self, n_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(coef [H, 2G + 1, n, r], W [H, n, r])`` for ``n_tokens`` tokens (:func:`operator_tensors`)."""
        return operator_tensors(
            self.fourier,
            self.base_weight,
            self.edge_scale,
            self.token_proj,
            n_tokens,
            self.base_grid,
            self.token_grid,
            self.num_prefix_tokens,
        )


class FourierKArAtAttention(HeadProjections):
    """Multi-head Fourier-KArAt over ``(B, N, C)`` tokens, with timm ``Attention``'s constructor and
    parameter layout (fused ``qkv``, ``proj``, optional ``q_norm`` / ``k_norm`` / ``norm``), so it
    drops into ``timm.models.vision_transformer.Block(attn_layer=...)``.

    KArAt arguments: ``grid`` (G), ``rank`` (r), ``num_tokens`` (N of the operator),
    ``num_prefix_tokens``, ``base_grid``, ``sharing``. ``'blockwise'`` builds its own operator
    (``self.karat``); ``'universal'`` builds none and needs :meth:`share_operator` before it runs.
    ``attn_drop`` (dropout on ``sigma(A)``) makes the training forward materialise ``sigma(A)``; at
    ``attn_drop=0`` the fused op runs.
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
        grid: int = 3,
        rank: int = 12,
        num_tokens: int = 197,
        num_prefix_tokens: int = 1,
        base_grid: tuple[int, int] | None = None,
        sharing: str = "blockwise",
        attn_head_dim: int | None = None,
        device=None,
        dtype=None,
    ) -> None:
        if sharing not in SHARING:
            raise ValueError(f"sharing must be one of {SHARING}, got {sharing!r}")
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
        self.sharing = sharing
        if sharing == "blockwise":
            self.karat = FourierOperator(
                num_heads, grid, rank, num_tokens, num_prefix_tokens, base_grid, **dd
            )
        else:
            self.__dict__["_shared_operator"] = None

    @property
    def operator(self) -> FourierOperator:
        """The operator this layer runs: its own (blockwise) or the model's (universal)."""
        if self.sharing == "blockwise":
            return self.karat
        op = self.__dict__["_shared_operator"]
        if op is None:
            raise RuntimeError("a universal FourierKArAtAttention needs share_operator(op) before it runs")
        return op

    def share_operator(self, operator: FourierOperator) -> None:
        """Use ``operator`` (owned elsewhere, e.g. by the model) instead of an own one: a plain reference,
        not a submodule, so its parameters appear once, under their owner."""
        if operator.num_heads != self.num_heads:
            raise ValueError(f"operator has {operator.num_heads} heads, the layer {self.num_heads}")
        if "karat" in self._modules:
            del self._modules["karat"]
        self.sharing = "universal"
        self.__dict__["_shared_operator"] = operator

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, sharing={self.sharing!r}"

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        check_no_mask(attn_mask, is_causal, "FourierKArAtAttention")
        q, k, v = self.split_heads(x)
        coef, w = self.operator.tensors(x.shape[1])
        if self.training and self.attn_drop.p > 0:
            p = fourier_karat(q, k, coef.to(q.dtype), self.scale)  # [B, H, N, r]
            attn = self.attn_drop(p @ w.to(p.dtype).transpose(-1, -2))  # sigma(A), [B, H, N, N]
            o = attn @ v
        else:
            p = fourier_karat(q, k, coef, self.scale)
            o = p @ (w.to(v.dtype).transpose(-1, -2) @ v)  # Phi(A) (W^T V): never N x N
        return self.merge_heads(o)
