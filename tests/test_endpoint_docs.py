"""The endpoint tables of README.md and docs/endpoints.md are the endpoint table."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelslab_fetch import endpoint_table
from tools import endpoint_docs as docs

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("page", docs.PAGES)
def test_each_page_lists_every_endpoint_from_the_table(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    assert docs.block(page) in text, (
        f"{page}'s endpoint table differs from modelslab_fetch/_endpoints/table.py; "
        "run: python -m tools.endpoint_docs"
    )
    for name, row in endpoint_table().items():
        assert f"| `client.{name}` | `{row.path_template}` |" in text


def test_rewrite_replaces_only_the_marked_block(tmp_path: Path) -> None:
    page = f"intro\n{docs.START}\n| stale |\n{docs.END}\noutro\n"
    assert docs.rewrite(page) == f"intro\n{docs.block()}\noutro\n"
    assert docs.rewrite(page, "docs/endpoints.md") == (
        f"intro\n{docs.block('docs/endpoints.md')}\noutro\n"
    )
    with pytest.raises(ValueError, match="no endpoint block"):
        docs.rewrite("no markers here")
    (tmp_path / "docs").mkdir()
    for name in docs.PAGES:
        (tmp_path / name).write_text(page)
    docs.main(tmp_path)
    assert all(docs.block(name) in (tmp_path / name).read_text() for name in docs.PAGES)


def test_every_row_names_the_public_source_it_rests_on() -> None:
    from tools.endpoint_docs import SOURCES

    assert set(SOURCES) == set(endpoint_table())
    assert all(source.strip() for source in SOURCES.values())
    page = (ROOT / "docs/endpoints.md").read_text(encoding="utf-8")
    for name, source in SOURCES.items():
        assert f"| {source} |" in page, name


def test_the_mkdocs_nav_has_the_endpoints_page() -> None:
    assert "endpoints.md" in (ROOT / "mkdocs.yml").read_text()
