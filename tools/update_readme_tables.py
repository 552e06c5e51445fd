"""Rewrite the generated tables in README.md (today: the weights table) from the package's records.

Run ``python tools/update_readme_tables.py`` after changing a family's ``weights``; the test suite
fails while README.md differs from what this writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attnzoo  # noqa: F401  (registers the models)
from attnzoo.zoo.weights_table import BEGIN, END, weights_table

README = Path(__file__).resolve().parent.parent / "README.md"


def updated(text: str) -> str:
    """``text`` with the block between the weights-table markers replaced by the generated table."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{README}: the markers {BEGIN!r} ... {END!r} are missing")
    return text[:start] + weights_table() + text[end + len(END) :]


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = updated(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"updated {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
