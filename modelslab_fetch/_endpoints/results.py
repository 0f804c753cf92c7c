"""Typed results of the endpoint families that add fields to `FetchResult`."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from .._numbers import finite_number
from .._results import FetchResult, _url_list

__all__ = ["ThreeDResult", "VoiceResult"]


class VoiceResult(FetchResult):
    """A voice or speech fetch result: `output` holds the audio URLs."""

    links: list[str] = Field(default_factory=list)
    """More URLs of the same audio, when the server sends them."""
    audio_time: float | None = None
    """The length of the generated audio, in seconds."""

    @field_validator("links", mode="before")
    @classmethod
    def _links_as_urls(cls, value: object) -> object:
        return _url_list(value)

    @field_validator("audio_time", mode="before")
    @classmethod
    def _lenient_audio_time(cls, value: object) -> float | None:
        seconds = finite_number(value)
        return None if seconds is None else max(seconds, 0.0)


class ThreeDResult(FetchResult):
    """A 3D fetch result: `output` holds the model files (glb, obj, ...)."""

    extra_assets: list[Any] = Field(default_factory=list)
    """Further files of the model (textures, previews): URLs or objects, as sent."""

    @field_validator("extra_assets", mode="before")
    @classmethod
    def _assets_as_list(cls, value: object) -> object:
        if value is None or value == "":
            return []
        if isinstance(value, list | tuple):
            return list(value)
        return [value]
