"""The endpoint table of README.md and docs/endpoints.md, written from the rows.

`python -m modelslab_fetch._endpoints.docs` rewrites the marked block of both files;
`tests/test_endpoint_docs.py` fails when a file disagrees with the table. The table of
docs/endpoints.md adds the public source each row rests on (`SOURCES`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .table import SOURCES, endpoint_table

__all__ = ["END", "START", "markdown_table", "rewrite"]

START = "<!-- endpoints:start (generated from modelslab_fetch/_endpoints/table.py) -->"
END = "<!-- endpoints:end -->"
PAGES = ("README.md", "docs/endpoints.md")


def markdown_table(*, sources: bool = False) -> str:
    """The table of every endpoint: call, path, where the id goes, outputs, result type.

    With `sources`, a last column names the public source each row rests on.
    """
    header = "| call on the client | `POST` below the API root | body | outputs | result |"
    rule = "|---|---|---|---|---|"
    if sources:
        header, rule = header + " source |", rule + "---|"
    lines = [header, rule]
    for name, row in endpoint_table().items():
        body = "`{key}`" if row.id_field is None else f"`{{key, {row.id_field}}}`"
        line = (
            f"| `client.{name}` | `{row.path_template}` | {body} | {row.output} "
            f"| `{row.result_model.__name__}` |"
        )
        lines.append(line + f" {SOURCES[name]} |" if sources else line)
    return "\n".join(lines)


def block(page: str = "README.md") -> str:
    """The marked block of `page`, markers included (docs/endpoints.md's names sources)."""
    return f"{START}\n{markdown_table(sources=page.startswith('docs/'))}\n{END}"


def rewrite(text: str, page: str = "README.md") -> str:
    """`text` with its marked block replaced by the current table of `page`."""
    before, start, rest = text.partition(START)
    _old, end, after = rest.partition(END)
    if not start or not end:
        raise ValueError(f"no endpoint block: add the lines {START!r} and {END!r}")
    return before + block(page) + after


def main(root: Path) -> None:
    """Rewrite the endpoint block of each page below `root`."""
    for page in PAGES:
        path = root / page
        path.write_text(rewrite(path.read_text(encoding="utf-8"), page), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
