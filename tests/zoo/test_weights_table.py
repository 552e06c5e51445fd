"""README.md's weights table is the one the release manifest generates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_weights_table_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "update_readme_tables", ROOT / "tools" / "update_readme_tables.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert tool.updated(text) == text, "README.md is stale: run `python tools/update_readme_tables.py`"
