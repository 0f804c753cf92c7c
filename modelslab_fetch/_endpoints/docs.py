"""The endpoint table of README.md and docs/endpoints.md, written from the rows.

`python -m modelslab_fetch._endpoints.docs` rewrites the marked block of both files;
`tests/test_endpoint_docs.py` fails when a file disagrees with the table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .table import endpoint_table

__all__ = ["END", "START", "markdown_table", "rewrite"]

START = "<!-- endpoints:start (generated from modelslab_fetch/_endpoints/table.py) -->"
END = "<!-- endpoints:end -->"
PAGES = ("README.md", "docs/endpoints.md")


def markdown_table() -> str:
    """The table of every endpoint: call, path, where the id goes, outputs, result type."""
    lines = [
        "| call on the client | `POST` below the API root | body | outputs | result |",
        "|---|---|---|---|---|",
    ]
    for name, row in endpoint_table().items():
        body = "`{key}`" if row.id_field is None else f"`{{key, {row.id_field}}}`"
        lines.append(
            f"| `client.{name}` | `{row.path_template}` | {body} | {row.output} "
            f"| `{row.result_model.__name__}` |"
        )
    return "\n".join(lines)


def block() -> str:
    """The marked block, markers included."""
    return f"{START}\n{markdown_table()}\n{END}"


def rewrite(text: str) -> str:
    """`text` with its marked block replaced by the current table."""
    before, start, rest = text.partition(START)
    _old, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"no endpoint block: add the lines {START!r} and {END!r}")
    return before + block() + after


def main(root: Path) -> None:
    """Rewrite the endpoint block of each page below `root`."""
    for page in PAGES:
        path = root / page
        path.write_text(rewrite(path.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
