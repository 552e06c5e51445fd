"""One module per model family; importing this package registers every family with timm.

Each module declares its :class:`~attnzoo.backbones._family.Family` record once and writes its model
entry points out with ``@register_model``; :data:`FAMILIES` holds the records in import order.
"""

# registration side effects
from attnzoo.backbones import (  # noqa: F401
    biformer,
    convit,
    halonet,
    infvit,
    inline_cswin,
    inline_deit,
    inline_pvt,
    inline_swin,
    karat,
    mala,
    overlock,
    sparsifiner,
)
from attnzoo.backbones._family import FAMILIES, Family, UnknownModelError, family_of

__all__ = ["FAMILIES", "Family", "UnknownModelError", "family_of"]
