"""The endpoint table of README.md and docs/endpoints.md, written from the rows.

`python -m tools.endpoint_docs` (from the repository's root) rewrites the marked block of
both files; `tests/test_endpoint_docs.py` fails when a file disagrees with the table. The
table of docs/endpoints.md adds the public source each row rests on (`SOURCES`): every
row must have one.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modelslab_fetch import endpoint_table

__all__ = ["END", "SOURCES", "START", "markdown_table", "rewrite"]

_DOCS = "ModelsLab/docs-v2"
_CLI = "ModelsLab/modelslab-cli `internal/cmd/generate.go`"
_SKILLS = "ModelsLab/skills"

SOURCES: dict[str, str] = {
    "images": f"{_DOCS} `image-generation/community-models/dreambooth-fetch-queue-image.mdx`",
    "realtime": f"{_DOCS} `image-generation/realtime-stable-diffusion/fetchimage.mdx`",
    "image_editing": f"{_DOCS} `image-editing/fetchimage.mdx`",
    "video": f"{_DOCS} `video-api/fetch-video.mdx`",
    "voice": f"{_DOCS} `voice-cloning/fetch-voice.mdx`",
    "three_d": f"{_DOCS} `3d-api/fetch.mdx`",
    "faceswap": f"{_DOCS} `faceswap-api/fetch.mdx` (the alias: its former `deepfake-api/`)",
    "interior": f"{_DOCS} `interior-api/fetch.mdx`",
    "v7.images": f"{_CLI}; {_SKILLS} `image-generation/SKILL.md` (no docs-v2 page)",
    "v7.video_fusion": f"{_DOCS} `guides/model-selection.mdx` (prose); {_CLI}",
    "v7.voice": f"{_CLI}; {_SKILLS} `audio-generation/SKILL.md` (no docs-v2 page)",
    "enterprise.images": f"{_DOCS} `enterprise-api/text-to-image/fetch-queue-image.mdx`",
    "enterprise.super_resolution": f"{_DOCS} `enterprise-api/super-resolution/fetchimage.mdx`",
    "enterprise.realtime": f"{_DOCS} `enterprise-api/realtime/fetchimage.mdx`",
    "enterprise.image_editing": f"{_DOCS} `enterprise-api/image-editing/fetchimage.mdx`",
    "enterprise.interior": f"{_DOCS} `enterprise-api/interior/fetch.mdx`",
    "enterprise.video": f"{_DOCS} `enterprise-api/video/fetch-video.mdx`",
    "enterprise.ultra_video": f"{_DOCS} `enterprise-api/text-to-video-ultra/fetch-video.mdx`",
    "enterprise.image_to_video_ultra": (
        f"{_DOCS} `enterprise-api/image-to-video-ultra/fetchvideo.mdx`"
    ),
    "enterprise.text_to_speech": f"{_DOCS} `enterprise-api/text-to-speech/fetch-audio.mdx`",
    "enterprise.speech_to_text": f"{_DOCS} `enterprise-api/speech-to-text/fetch-audio.mdx`",
    "enterprise.voice": f"{_DOCS} `enterprise-api/voice-cloning/fetch.mdx`",
    "enterprise.three_d": f"{_DOCS} `enterprise-api/3d-api/fetch.mdx`",
    "enterprise.face_gen": f"{_DOCS} `enterprise-api/face-gen/fetch.mdx`",
    "enterprise.flux_headshot": f"{_DOCS} `enterprise-api/flux-headshot/fetch.mdx`",
    "enterprise.qwen": f"{_DOCS} `enterprise-api/qwen/fetch.mdx`",
    "enterprise.flux": f"{_DOCS} `enterprise-api/flux/fetch.mdx`, `flux-2-dev/fetch.mdx`",
    "enterprise.flux_klein": f"{_DOCS} `enterprise-api/flux-klein/fetch.mdx`",
    "enterprise.flux_kontext_dev": f"{_DOCS} `enterprise-api/flux-kontext-dev/fetch-image.mdx`",
    "enterprise.z_image_turbo": f"{_DOCS} `enterprise-api/z-image-turbo/fetch.mdx`",
    "enterprise.faceswap": f"{_DOCS} `enterprise-api/faceswap/fetch.mdx` (page, not OpenAPI)",
}
"""The public source each row rests on, by dotted name (shown in docs/endpoints.md).

docs-v2 is ModelsLab's documentation source, read as of its 2026-05-04 snapshot; a row
whose only source is ModelsLab's own CLI or agent skills says so."""

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
