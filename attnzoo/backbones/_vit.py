"""The skeleton of attnzoo's ViT-style families: timm's ``VisionTransformer`` with their own attention.

A family whose model is a ViT with attention layer X subclasses :class:`AttnZooViT` and passes
``attn_layer=X``: a class (timm's ``Block`` calls ``issubclass`` on it) taking timm ``Attention``'s
constructor arguments and ``forward(x, attn_mask=None, is_causal=False)``. Under torch.fx, timm's
``forward`` sees ``attn_mask`` / ``is_causal`` as traced inputs and hands them to every block, so a layer
without masks rejects them in a ``register_notrace_function`` check (as ``InfiniteSelfAttention``
does). Pooling, head, features, intermediates, pruning and checkpointing are timm's. What attnzoo adds
on top, once for every such family:

- any input size: images are padded to whole patches and the position embedding is resampled to the
  patch grid (timm's ``dynamic_img_size`` / ``dynamic_img_pad``; at the training size nothing changes);
- the input check (:func:`~attnzoo.backbones._checks.check_images`) in the patch embedding, which every
  forward path (``forward``, ``forward_features``, ``forward_intermediates``) enters first;
- empty batches: tokens and maps are reshaped with ``flatten`` / ``unflatten`` (timm's ``view(B, -1, C)``
  and ``reshape(B, H, W, -1)`` cannot size an axis of a batch of 0 images);
- the timm contract where ``VisionTransformer`` misses it: ``no_weight_decay`` names only parameters
  the model has, and the modules that ``reset_classifier`` or ``prune_intermediate_layers`` put in
  place take the model's train / eval mode.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.layers import PatchEmbed, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from attnzoo.backbones._checks import check_images

__all__ = ["AttnZooViT", "CheckedPatchEmbed"]


class CheckedPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` that names a wrong input (``family`` in the message) before its convolution
    fails on it with a less helpful error.

    Here rather than in ``forward_features``: timm's notrace registry makes ``check_images`` one torch.fx
    call only in the globals of a traced ``forward`` (the model's is timm's), and this one is attnzoo's.
    """

    def __init__(self, *args: Any, family: str = "ViT", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.family = family

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.proj.in_channels, self.family)
        return super().forward(x)


class AttnZooViT(VisionTransformer):
    """timm ``VisionTransformer`` with attnzoo's defaults and contract fixes (see the module docstring).

    Takes timm's arguments; ``dynamic_img_size`` and ``dynamic_img_pad`` default to True and the patch
    embedding is a :class:`CheckedPatchEmbed` named after the class (``InfViT expects ...``).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("dynamic_img_size", True)
        kwargs.setdefault("dynamic_img_pad", True)
        kwargs.setdefault("embed_layer", partial(CheckedPatchEmbed, family=type(self).__name__))
        super().__init__(**kwargs)

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch grid ``(B, H, W, C)`` -> tokens with the prefix tokens and the position embedding (resampled
        to the grid), as timm's; the grid is flattened with ``flatten``, which also sizes an empty batch."""
        if not self.dynamic_img_size:  # fixed-size tokens (B, N, C): timm's path has no view to fail
            return super()._pos_embed(x)
        _, h, w, _ = x.shape
        pos_embed = self.pos_embed
        if pos_embed is not None:
            pos_embed = resample_abs_pos_embed(
                pos_embed,
                new_size=(h, w),
                old_size=self.patch_embed.grid_size,
                num_prefix_tokens=0 if self.no_embed_class else self.num_prefix_tokens,
            )
        x = x.flatten(1, 2)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if pos_embed is None:
            return torch.cat([*prefix, x], dim=1)
        if self.no_embed_class:  # the embedding covers the patches only
            return self.pos_drop(torch.cat([*prefix, x + pos_embed], dim=1))
        return self.pos_drop(torch.cat([*prefix, x], dim=1) + pos_embed)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        output_dict: bool = False,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> Any:
        """timm's, with the tokens -> ``NCHW`` maps step done here by ``unflatten`` (timm's
        ``reshape(B, H, W, -1)`` cannot size the channels of an empty batch); the input is checked first,
        as timm's reads ``(B, C, H, W)`` from its shape before the patch embedding does."""
        check_images(x, self.patch_embed.proj.in_channels, type(self).__name__)
        fmt = "NLC" if output_fmt == "NCHW" else output_fmt
        out = super().forward_intermediates(
            x,
            indices,
            return_prefix_tokens,
            norm,
            stop_early,
            fmt,
            intermediates_only,
            output_dict,
            attn_mask,
            is_causal,
        )
        if output_fmt != "NCHW":
            return out
        grid = self.patch_embed.dynamic_feat_size(x.shape[-2:])

        def as_map(y: torch.Tensor) -> torch.Tensor:
            return y.unflatten(1, grid).permute(0, 3, 1, 2).contiguous()

        def maps(items: list) -> list:
            """Token intermediates (or (tokens, prefix) pairs: ``return_prefix_tokens``) -> maps."""
            return [(as_map(y[0]), y[1]) if isinstance(y, tuple) else as_map(y) for y in items]

        if output_dict:
            return {**out, "image_intermediates": maps(out["image_intermediates"])}
        if intermediates_only:
            return maps(out)
        return out[0], maps(out[1])

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """timm's set (position embedding, class / register tokens), less the ones this model lacks."""
        return super().no_weight_decay() & {name for name, _ in self.named_parameters()}

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """timm's, with the new head in the model's train / eval mode (timm 1.0.28 and older leave it
        training)."""
        super().reset_classifier(num_classes, global_pool)
        self.head.train(self.training)

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """timm's, with the modules it puts in place (a shorter ``blocks``, ``nn.Identity`` norms and
        head) in the model's train / eval mode; the blocks they hold keep theirs."""
        # The old children themselves (not their ids): holding them keeps a freed module's id from being
        # reused by its replacement, which would then look kept.
        kept = set(self.children())
        take = super().prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head)
        for module in self.children():
            if module not in kept:
                module.training = self.training
        return take
