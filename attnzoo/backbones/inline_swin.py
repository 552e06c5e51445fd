"""InLine-Swin (Han et al., "Bridging the Divide: Reconsidering Softmax and Linear Attention", NeurIPS
2024, arXiv:2412.06590): the Swin Transformer with stages of injective linear attention ('I' blocks,
:class:`attnzoo.layers.inline.InjectiveLinearAttention`) and Swin's softmax window attention ('S' blocks).

Same parameters and math as the official ``models/inline_swin.py`` (``InLineSwin`` with
``cfgs/inline_swin_{t,s,b,b_384}.yaml``), on the hierarchical skeleton: official checkpoints convert on
load (:func:`convert_inline_swin` renames ``layers.i.blocks.j`` -> ``stages.i.j`` and the stage-end
``layers.i.downsample`` -> ``downsamples.{i + 1}``, and verifies, then drops, the ``relative_position_index``
and ``attn_mask`` buffers, which are rebuilt from the map size here). ``attn_type`` is the official string:
one letter per stage (``I``, ``S``, or ``M``: the first ``n`` blocks ``I``, the rest ``S``, with ``n`` the
number after the stage letters, e.g. ``'IIMS2'``). InLine blocks use the model's ``window_size``, softmax
blocks ``max(7, window_size // 8)`` (the official rule); the odd blocks of a stage are shifted by half
their window.

Window rule (any input size). The official model asserts its one training resolution and clips a block's
window to the map when ``min(H, W) <= window`` (one window, no shift). Here each block decides per
forward, on its ``H x W`` map, per axis: the window is ``min(window, side)`` and the shift is 0 where
``side <= window`` (the window covers the axis), else the block's shift (timm's Swin rule, per axis). So:

* a map that fits the window on both axes is one ``H x W`` window, no padding, no shift (at the official
  resolutions every InLine stage is one global window, as in the official model);
* a map larger than the window on both axes is cut into ``window x window`` windows as in mmdet's Swin:
  the normed map is zero-padded bottom / right to whole windows, shifted blocks roll it by the shift,
  and softmax blocks mask (-100, as official and mmdet) the token pairs that the roll brings together
  from different regions of the padded map (mmdet's mask, computed on the padded map);
* a map larger than the window on one axis only gets a rectangular ``min(window, H) x min(window, W)``
  window, shifted (and padded) along the long axis only; a softmax block reads its relative-position bias
  from the matching sub-table of its ``(2 window - 1)^2`` table.

InLine blocks take no mask (as the official ``InLineAttention``, which ignores it): with a shift, a window
mixes the tokens rolled in from the opposite edge, and zero-padded tokens take part in the InLine windows
(their keys and values are the projection biases; the local residual sees them as neighbours). At every
square input the official model accepts (built for that size; the released configs use 224 px, and 384 px
for ``inline_swin_base_384``) this rule is the official one (an official softmax block built for a map
smaller than its window has a table of the clipped size; here the sub-table of the full one is read).
An official model built for a non-square size whose map satisfies ``min(H, W) <= window`` tiles
``min(H, W)``-square windows along the long side without a shift; this model uses ``min(window, side)``
per axis instead (one window when both sides fit, the long axis shifted when it exceeds the window). Patch
embedding and patch merging pad bottom / right with zeros to a whole patch / an even size (feature strides
4, 8, 16, 32: maps ``ceil(side / stride)``).

Beyond the official code: any input size, ``features_only`` / ``forward_intermediates``, gradient
checkpointing, the Triton InLine kernel on CUDA. Not carried over: the absolute position embedding
(``ape``, off in every config), ``qk_scale`` (None in every config); ``drop_rate`` is the classifier's
dropout (timm's meaning), not the official per-layer dropout (0 in every config). The official
detection / segmentation use has no published backbone, so there is no dense form.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import (
    DropPath,
    LayerNorm2d,
    Mlp,
    calculate_drop_path_rates,
    register_notrace_module,
    trunc_normal_,
)
from timm.models import register_model
from torch import nn

from attnzoo.backbones._convert import StateDict, detector_backbone, model_tensors, verify_against_model
from attnzoo.backbones._family import DenseLayout, Family, Weights, register_family
from attnzoo.backbones._hierarchical import HierarchicalBackbone, ModuleNames, Stage
from attnzoo.backbones._inline import INLINE_PAPER, inline_weights
from attnzoo.layers.inline import InjectiveLinearAttention
from attnzoo.layers.padding import pad_to_multiple

__all__ = [
    "InLineSwin",
    "InLineSwinBlock",
    "WindowAttention",
    "block_attn_types",
    "convert_inline_swin",
    "relative_position_index",
    "shift_mask",
    "window_geometry",
]

_LN_EPS = 1e-5  # the official nn.LayerNorm default


# ----------------------------------------------------------------------------- window rule
def window_geometry(
    size: tuple[int, int], window: int, shift: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """A block's ``(window_h, window_w)`` and ``(shift_h, shift_w)`` on a map of ``size = (H, W)``.

    Per axis: the window is ``min(window, side)``; the shift is 0 where the window covers the axis
    (``side <= window``), else ``shift``. See the module docstring.
    """
    win = (min(window, size[0]), min(window, size[1]))
    shifts = (0 if size[0] <= window else shift, 0 if size[1] <= window else shift)
    return win, shifts


def shift_mask(
    padded: tuple[int, int],
    window: tuple[int, int],
    shift: tuple[int, int],
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``(num_windows, N, N)`` additive mask (0 / -100) of a shifted softmax block on the rolled,
    padded ``padded = (Hp, Wp)`` map: token pairs from different regions of the roll are masked.

    Regions per shifted axis: ``[0, -window)``, ``[-window, -shift)``, ``[-shift, end)`` (the official /
    mmdet rule); an axis without a shift is one region.
    """
    labels = torch.zeros(padded, device=device)
    cuts = []
    for win, sh in zip(window, shift, strict=True):
        cuts.append((slice(0, -win), slice(-win, -sh), slice(-sh, None)) if sh else (slice(None),))
    region = 0
    for rows in cuts[0]:
        for cols in cuts[1]:
            labels[rows, cols] = region
            region += 1
    windows = _partition(labels[None, :, :, None], window).squeeze(-1)  # nW, N
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.zeros(diff.shape, device=device, dtype=dtype).masked_fill(diff != 0, -100.0)


def relative_position_index(
    window: tuple[int, int], table_window: tuple[int, int], device: torch.device | None = None
) -> torch.Tensor:
    """``(N, N)`` indices into a relative-position table built for ``table_window`` (rows
    ``(2 Th - 1) (2 Tw - 1)``) for a ``window <= table_window`` of ``N`` tokens (the official index when
    the two are equal; a sub-table otherwise)."""
    th, tw = table_window
    coords = torch.stack(
        torch.meshgrid(
            torch.arange(window[0], device=device), torch.arange(window[1], device=device), indexing="ij"
        )
    ).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + th - 1) * (2 * tw - 1) + (rel[1] + tw - 1)


def _partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W, C)`` with whole windows -> ``(B * num_windows, wh * ww, C)``, windows row-major."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def _merge(windows: torch.Tensor, window: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """The inverse of :func:`_partition` for a ``size = (H, W)`` map."""
    (wh, ww), (h, w) = window, size
    c = windows.shape[-1]
    x = windows.reshape(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


# ----------------------------------------------------------------------------- modules
class WindowAttention(nn.Module):
    """Swin's softmax window attention with a learned relative-position bias (official keys ``qkv``,
    ``proj``, ``relative_position_bias_table``), run with SDPA.

    ``forward(x, window, mask)``: ``x`` is ``(B * num_windows, wh * ww, C)``; a window smaller than the
    one the table was built for reads the sub-table; ``mask`` is :func:`shift_mask`'s or None.
    """

    def __init__(
        self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.window_size = (window_size, window_size)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads, **dd)
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def relative_bias(self, window: tuple[int, int]) -> torch.Tensor:
        """The ``(heads, N, N)`` bias of a ``window`` (``<= window_size``) of ``N`` tokens."""
        n = window[0] * window[1]
        index = relative_position_index(window, self.window_size, self.relative_position_bias_table.device)
        return self.relative_position_bias_table[index.reshape(-1)].reshape(n, n, -1).permute(2, 0, 1)

    def forward(
        self, x: torch.Tensor, window: tuple[int, int], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, n, c = x.shape
        heads, hd = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).reshape(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_bias(window).to(q.dtype)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0), scale=self.scale)
        else:
            # windows of one image share the batch entry: (B, num_windows * heads, N, hd) with one mask
            nw = mask.shape[0]
            q, k, v = (t.reshape(-1, nw * heads, n, hd) for t in (q, k, v))
            attn_mask = (mask.to(q.dtype).unsqueeze(1) + bias).reshape(1, nw * heads, n, n)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
        return self.proj(out.reshape(b, heads, n, hd).transpose(1, 2).reshape(b, n, c))


@register_notrace_module  # windows from the map size: torch.fx keeps the block as one call
class InLineSwinBlock(nn.Module):
    """A Swin block (pre-norm window attention and MLP residuals) with InLine (``attn_type='I'``) or
    softmax (``'S'``) window attention; channels-first in and out, channels-last inside.

    ``window_size`` / ``shift_size`` are the nominal ones; each forward applies the window rule of the
    module docstring (:func:`window_geometry`) to the map it gets.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attn_type: str = "I",
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        kernel_func: str = "identity",
        drop_path: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        if attn_type not in ("I", "S"):
            raise ValueError(f"attn_type must be 'I' (InLine) or 'S' (softmax), got {attn_type!r}")
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size {shift_size} must be in [0, window_size {window_size})")
        self.attn_type = attn_type
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS, **dd)
        if attn_type == "I":
            self.attn: nn.Module = InjectiveLinearAttention(
                dim, num_heads, qkv_bias=qkv_bias, kernel_func=kernel_func, **dd
            )
        else:
            self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias=qkv_bias, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, **dd)

    def extra_repr(self) -> str:
        return f"attn_type={self.attn_type!r}, window_size={self.window_size}, shift_size={self.shift_size}"

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        """Window attention on a normed channels-last ``(B, H, W, C)`` map (pad, roll, windows, crop)."""
        h, w = x.shape[1], x.shape[2]
        window, shift = window_geometry((h, w), self.window_size, self.shift_size)
        pad_h, pad_w = -h % window[0], -w % window[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        padded = (h + pad_h, w + pad_w)
        shifted = shift != (0, 0)
        if shifted:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = _partition(x, window)
        if self.attn_type == "I":
            windows = self.attn(windows, grid=window)
        else:
            mask = shift_mask(padded, window, shift, x.device, x.dtype) if shifted else None
            windows = self.attn(windows, window, mask)
        x = _merge(windows, window, padded)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w] if pad_h or pad_w else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = x + self.drop_path(self.mix(self.norm1(x)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """``patch x patch`` conv, stride ``patch`` (the image zero-padded bottom / right to whole patches),
    then a LayerNorm over channels (official ``patch_embed``: ``proj``, ``norm``). Channels-first out."""

    def __init__(self, in_chans: int, dim: int, patch_size: int = 4, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, **dd)
        self.norm = nn.LayerNorm(dim, eps=_LN_EPS, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(pad_to_multiple(x, self.patch_size))
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PatchMerging(nn.Module):
    """Each 2 x 2 patch's four ``C``-vectors concatenated in the official order (``[0::2, 0::2]``,
    ``[1::2, 0::2]``, ``[0::2, 1::2]``, ``[1::2, 1::2]``), LayerNorm(4C), Linear(4C -> 2C, no bias); an odd
    side is zero-padded bottom / right first. Channels-first in and out (official keys ``norm``,
    ``reduction``)."""

    def __init__(self, dim: int, device=None, dtype=None) -> None:
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.norm = nn.LayerNorm(4 * dim, eps=_LN_EPS, **dd)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, 2)
        x = torch.cat(
            [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=1
        )
        return self.reduction(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


def block_attn_types(attn_type: str, depths: tuple[int, ...] | list[int]) -> list[list[str]]:
    """The official ``attn_type`` string -> each block's ``'I'`` / ``'S'``, per stage.

    One letter per stage, then (only if a stage is ``'M'``) the number of leading InLine blocks of the
    ``'M'`` stages: ``'IIMS2'`` with depths 2-2-18-2 gives stage 3 two InLine blocks, then 16 softmax ones.
    """
    n = len(depths)
    letters, tail = attn_type[:n], attn_type[n:]
    if len(letters) != n or set(letters) - set("ISM"):
        raise ValueError(f"attn_type {attn_type!r}: needs one of I / S / M per stage ({n} stages)")
    if "M" in letters and not tail.isdigit():
        raise ValueError(
            f"attn_type {attn_type!r}: an 'M' stage needs its InLine block count after the letters"
        )
    if "M" not in letters and tail:
        raise ValueError(f"attn_type {attn_type!r}: trailing {tail!r} without an 'M' stage")
    out = []
    for letter, depth in zip(letters, depths, strict=True):
        if letter == "M":
            out.append(["I" if j < int(tail) else "S" for j in range(depth)])
        else:
            out.append([letter] * depth)
    return out


class InLineSwin(HierarchicalBackbone):
    """InLine-Swin: patch embedding (stride ``patch_size``), four stages of :class:`InLineSwinBlock` with
    patch merging between them, LayerNorm, average pool and a linear classifier.

    Arguments follow the official ``InLineSwin`` (``embed_dim``, ``depths``, ``num_heads``,
    ``window_size``: the InLine window, ``attn_type``, ``mlp_ratio``, ``qkv_bias``, ``patch_size``,
    ``drop_path_rate``); ``softmax_window_size`` defaults to the official ``max(7, window_size // 8)``;
    ``kernel_func``: InLine's kernel on q and k (identity in every released config). The input size is
    free (window rule in the module docstring); the official ``img_size`` lives in the pretrained cfg.
    """

    module_names = ModuleNames(stem="patch_embed", downsamples="downsamples")

    def __init__(
        self,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        embed_dim: int = 96,
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 56,
        attn_type: str = "IIIS",
        softmax_window_size: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        kernel_func: str = "identity",
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        device=None,
        dtype=None,
    ) -> None:
        dd = dict(device=device, dtype=dtype)
        if len(num_heads) != len(depths):
            raise ValueError(f"num_heads needs one entry per stage ({len(depths)}), got {num_heads}")
        types = block_attn_types(attn_type, depths)
        softmax_window = softmax_window_size or max(7, window_size // 8)
        widths = [embed_dim * 2**i for i in range(len(depths))]
        rates = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        stages = []
        for i, (dim, stage_types) in enumerate(zip(widths, types, strict=True)):
            blocks = []
            for j, kind in enumerate(stage_types):
                window = window_size if kind == "I" else softmax_window
                blocks.append(
                    InLineSwinBlock(
                        dim,
                        num_heads[i],
                        attn_type=kind,
                        window_size=window,
                        shift_size=0 if j % 2 == 0 else window // 2,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        kernel_func=kernel_func,
                        drop_path=rates[i][j],
                        **dd,
                    )
                )
            stages.append(Stage(*blocks))
        super().__init__(
            stem=PatchEmbed(in_chans, embed_dim, patch_size, **dd),
            downsamples=[nn.Identity()] + [PatchMerging(w, **dd) for w in widths[:-1]],
            stages=stages,
            norm=LayerNorm2d(widths[-1], eps=_LN_EPS, **dd),
            widths=widths,
            reductions=[patch_size * 2**i for i in range(len(depths))],
            in_chans=in_chans,
            num_classes=num_classes,
            global_pool=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.attn_type = attn_type
        self.window_size = window_size
        self.softmax_window_size = softmax_window
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        """The official init: truncated-normal (std .02) linears with zero bias, unit LayerNorms (the
        bias tables are drawn in :class:`WindowAttention`, convs keep torch's default)."""
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """1-d parameters and the relative-position bias tables (official ``no_weight_decay_keywords``)."""
        tables = {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}
        return super().no_weight_decay() | tables


# ----------------------------------------------------------------------------- conversion
_RENAMES = (
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\."), lambda m: f"stages.{m[1]}.{m[2]}."),
    (re.compile(r"^layers\.(\d+)\.downsample\."), lambda m: f"downsamples.{int(m[1]) + 1}."),
)
_INDEX = re.compile(r"^layers\.\d+\.blocks\.\d+\.attn\.relative_position_index$")
_MASK = re.compile(r"^layers\.\d+\.blocks\.\d+\.attn_mask$")


def _check_buffer(key: str, value: torch.Tensor) -> None:
    """Raise unless an official ``relative_position_index`` / ``attn_mask`` buffer is the one this
    module rebuilds (the index for its square window; the mask of its square map, window and shift)."""
    if _INDEX.match(key):
        side = math.isqrt(value.shape[0])
        want = relative_position_index((side, side), (side, side))
    else:  # (num_windows, N, N): a square map of sqrt(num_windows) windows a side, shifted by half
        side = math.isqrt(value.shape[1])
        size = math.isqrt(value.shape[0]) * side
        want = shift_mask((size, size), (side, side), (side // 2, side // 2))
    if value.shape != want.shape or not torch.equal(value.to(want.dtype), want):
        raise ValueError(f"{key} is not the buffer InLine-Swin's window rule builds for its shape")


def convert_inline_swin(state_dict: StateDict, model: nn.Module | None = None) -> StateDict:
    """An official InLine-Swin checkpoint (``{'model': ...}``, or a detector / segmentor's ``backbone.*``)
    -> attnzoo keys.

    ``layers.i.blocks.j`` -> ``stages.i.j``; ``layers.i.downsample`` (the end of stage ``i``) ->
    ``downsamples.{i + 1}`` (the start of stage ``i + 1``); ``patch_embed``, ``norm``, ``head`` keep their
    names. The ``relative_position_index`` and ``attn_mask`` buffers are checked against the ones this
    module builds and dropped. Keys already in attnzoo's naming pass through; a checkpoint of another
    variant (other attention types, depths or window) is refused.
    """
    state_dict = detector_backbone(model_tensors(state_dict))
    if not any(k.startswith("layers.") for k in state_dict):
        return verify_against_model(state_dict, model)
    out: StateDict = {}
    for key, value in state_dict.items():
        if _INDEX.match(key) or _MASK.match(key):
            _check_buffer(key, value)
            continue
        for pattern, new in _RENAMES:
            key = pattern.sub(new, key, count=1)
        out[key] = value
    return verify_against_model(out, model)


# ----------------------------------------------------------------------------- registration
FAMILY = register_family(
    Family(
        name="inline_swin",
        module=__name__,
        **INLINE_PAPER,
        converter=convert_inline_swin,
        # The official eval transform: bicubic, both sides resized to img_size / 0.875, centre crop.
        cfg=dict(
            pool_size=(7, 7),
            crop_pct=0.875,
            crop_mode="squash",
            interpolation="bicubic",
            first_conv="patch_embed.proj",
            classifier="head",
        ),
        weights=(
            *(
                inline_weights(
                    *release, notes=(f"official training drop_path_rate {dp}; the model's default is 0",)
                )
                for *release, dp in (
                    ("inline_swin_tiny", "32810869fcc34410966b", 82.4, 30, 4.5, 0.2),
                    ("inline_swin_small", "e9657fd247c04c7cb1a1", 83.6, 50, 8.7, 0.3),
                    ("inline_swin_base", "bf23564bb64c420aafe1", 84.1, 88, 15.4, 0.5),
                )
            ),
            Weights(
                "inline_swin_base_384",
                "untrained",
                cfg=dict(input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0),
                notes=(
                    "no weights released: the official README lists none for cfgs/inline_swin_b_384.yaml "
                    "(30 epochs at 384 px from InLine-Swin-B; window 96, softmax window 12; evaluated "
                    "without a crop; drop_path_rate 0.5)",
                ),
            ),
        ),
        goldens={"inline_swin_tiny": "inline_swin_tiny"},
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        # downsamples.i (i > 0) opens stage i here (the official code and mmdet's Swin end stage i - 1
        # with it, so mmdet's frozen_stages=k also freezes the k-th patch merging; here it trains).
        dense=DenseLayout(
            out_indices=(0, 1, 2, 3),
            stem=r"patch_embed\.",
            stage=r"(?:downsamples|stages)\.(\d+)\.",
            last=r"norm\.",
        ),
    )
)


default_cfgs = FAMILY.default_cfgs()

_TINY = dict(depths=(2, 2, 6, 2), embed_dim=96, num_heads=(3, 6, 12, 24), window_size=56, attn_type="IIIS")
_BASE = dict(depths=(2, 2, 18, 2), embed_dim=128, num_heads=(4, 8, 16, 32), attn_type="IIMS2")


def _create(variant: str, pretrained: bool, model_args: dict[str, Any], **kwargs: Any) -> InLineSwin:
    return FAMILY.build(InLineSwin, variant, pretrained, **{**model_args, **kwargs})


@register_model
def inline_swin_tiny(pretrained: bool = False, **kwargs: Any) -> InLineSwin:
    """InLine-Swin-T (cfgs/inline_swin_t.yaml): Swin-T geometry, window 56, stages I-I-I-S."""
    return _create("inline_swin_tiny", pretrained, _TINY, **kwargs)


@register_model
def inline_swin_small(pretrained: bool = False, **kwargs: Any) -> InLineSwin:
    """InLine-Swin-S (cfgs/inline_swin_s.yaml): depths 2-2-18-2, window 56, stages I-I-S-S."""
    return _create(
        "inline_swin_small", pretrained, {**_TINY, "depths": (2, 2, 18, 2), "attn_type": "IISS"}, **kwargs
    )


@register_model
def inline_swin_base(pretrained: bool = False, **kwargs: Any) -> InLineSwin:
    """InLine-Swin-B (cfgs/inline_swin_b.yaml): Swin-B geometry, window 56, stage 3 two InLine blocks then
    softmax (attn_type IIMS2)."""
    return _create("inline_swin_base", pretrained, {**_BASE, "window_size": 56}, **kwargs)


@register_model
def inline_swin_base_384(pretrained: bool = False, **kwargs: Any) -> InLineSwin:
    """InLine-Swin-B at 384 px (cfgs/inline_swin_b_384.yaml): window 96 (softmax window 12), IIMS2."""
    return _create("inline_swin_base_384", pretrained, {**_BASE, "window_size": 96}, **kwargs)
