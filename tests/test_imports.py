"""``import attnzoo`` stays light: the optional frameworks (OpenMMLab, mmpretrain, transformers) load only
when their integration is imported (``attnzoo.mm``) or the user imports them."""

from __future__ import annotations

import subprocess
import sys

OPTIONAL = ("mmdet", "mmseg", "mmengine", "mmpretrain", "transformers", "attnzoo.mm")


def test_import_attnzoo_imports_no_optional_framework():
    code = (
        f"import sys, attnzoo; bad = [m for m in {OPTIONAL!r} if m in sys.modules]; "
        "assert not bad, f'import attnzoo imports {bad}'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
