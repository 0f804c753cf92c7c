"""Typed fetch results, of every endpoint family, tolerant of every quirk of the wire format."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ._logging import log_once
from ._numbers import finite_number
from ._server_json import well_formed

__all__ = ["FetchResult", "Status", "ThreeDResult", "VoiceResult"]

_Result = TypeVar("_Result", bound="FetchResult")


class Status(str, Enum):
    """Where a queued job stands, from the `status` field of a fetch response."""

    SUCCESS = "success"
    """Finished; `output` holds the image URLs."""
    PROCESSING = "processing"
    """Still queued or running; also stands for any status value ModelsLab adds later."""
    FAILED = "failed"
    """The generation failed; `message` may say why."""
    ERROR = "error"
    """The job ended in an error the server named no cause for; `message` says why.

    (Errors about the request or the account are raised as exceptions instead.)"""

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more: success, failed or error."""
        return self is not Status.PROCESSING


_KNOWN_STATUSES = frozenset(status.value for status in Status)


def _url_list(value: object) -> object:
    """Every shape ModelsLab sends where a list of URLs is documented, as that list.

    Seen: a list, a lone URL string, `null` or `""` for "nothing yet", and an object keyed
    by position (`{"0": "https://..."}`). Entries that are not text are dropped.
    """
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        value = [item for _, item in sorted(value.items(), key=_position_key)]
    if isinstance(value, list | tuple):
        return [item.strip() for item in value if isinstance(item, str) and item.strip()]
    return value  # anything else fails validation, and the field is dropped


def _position_key(item: tuple[object, object]) -> tuple[int, str]:
    key = str(item[0])
    return (int(key), "") if key.isdigit() else (1 << 62, key)


def _usable_id(value: object) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, str) and bool(value.strip())


class FetchResult(BaseModel):
    """One answer from a ModelsLab fetch endpoint, whatever its status.

    Fields the server adds without notice are kept (`model_extra`) and the whole body as
    received is in `raw`. Numeric strings and string booleans are coerced; an unusable
    `eta` becomes None rather than failing the fetch, because it is only an estimate.
    """

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        populate_by_name=True,
        # Built on the first result parsed rather than at import: a CLI start or a cold
        # start pays for it only when an answer arrives.
        defer_build=True,
        ser_json_inf_nan="constants",
    )

    status: Status
    """Where the job stands. Unknown values read as `processing` (see `raw_status`)."""
    raw_status: str = ""
    """The `status` string exactly as the server sent it."""
    id: str
    """The request id, always a string (the server sends ints and strings)."""
    output: list[str] = Field(default_factory=list)
    """URLs of the generated images; empty until the job succeeds."""
    eta: float | None = None
    """The server's estimate, in seconds, of when the job will be ready."""
    message: str | None = Field(default=None, validation_alias=AliasChoices("message", "messege"))
    """The server's explanation, read from `message` or its misspelling `messege`."""
    generation_time: float | None = Field(
        default=None, validation_alias=AliasChoices("generationTime", "generation_time")
    )
    """Seconds the generation took, when finished."""
    proxy_links: list[str] = Field(default_factory=list)
    """Alternative URLs of the same images."""
    future_links: list[str] = Field(default_factory=list)
    """URLs where the images will appear once a processing job finishes."""
    meta: dict[str, Any] | None = None
    """The generation parameters echoed back (prompt, seed, ...)."""
    nsfw_content_detected: bool | None = None
    """Whether the server flagged the images."""
    tip: str | None = None
    """A hint the server added."""
    webhook_status: str | None = None
    """Delivery status of the webhook, when one was set."""
    fetch_result: str | None = None
    """The URL the server suggests for the next fetch."""

    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)
    # What the caller asked, not what the server answered: files are named from these.
    _request_id: str | None = PrivateAttr(default=None)
    _endpoint_name: str | None = PrivateAttr(default=None)

    @property
    def raw(self) -> dict[str, Any]:
        """The response body exactly as received (with the API key redacted, if echoed)."""
        return self._raw

    @property
    def request_id(self) -> str:
        """The id this result was asked for; `id` is what the server answered.

        They differ only when the server answers with another id (a bug, a proxy's
        cache). Downloads name files from this one, so no answer can make two jobs
        write one file. For a result built by hand it is `id`.
        """
        return self._request_id if self._request_id is not None else self.id

    @property
    def endpoint_name(self) -> str | None:
        """The endpoint this result was fetched from, by table name, or None.

        A table name is `"video"`, `"enterprise.three_d"`...; a result built by hand has
        None. ModelsLab's ids are per product: downloads prefix file names with it (except
        for `images`), so the same id on two endpoints never shares a file.
        """
        return self._endpoint_name

    @property
    def finished(self) -> bool:
        """Whether the job will not change any more (success, failed or error)."""
        return self.status.finished

    @property
    def succeeded(self) -> bool:
        """Whether the job finished with images."""
        return self.status is Status.SUCCESS

    @classmethod
    def from_body(
        cls: type[_Result],
        body: dict[str, Any],
        *,
        request_id: str,
        endpoint_name: str | None = None,
    ) -> _Result:
        """Build a result from a decoded response body; `request_id` is the id asked about.

        `request_id` and `endpoint_name` (where it was asked, e.g. `"video"`) become the
        result's `request_id` and `endpoint_name`, which name its downloaded files.

        Lenient wherever a field is only optional: an unusable `id` (missing, `""`) becomes
        `request_id`, and any other optional field of an unusable shape is left out of its
        typed attribute (kept in `raw`, logged once at DEBUG). Raises `ValueError` only when
        the body has no readable `status`.
        """
        status = body.get("status")
        if not isinstance(status, str):
            # An empty or unknown word still reads (as processing); no word at all cannot.
            raise ValueError(  # noqa: TRY004 - from_body promises ValueError for any bad body
                f"status: missing or unreadable (got {_shape_of(status)})"
            )
        fields = dict(body)
        fields["raw_status"] = status
        if not _usable_id(fields.get("id")):
            fields["id"] = request_id
        # Each pass drops the fields that failed; `status` and `id` cannot fail by now, so
        # this ends within one pass per field.
        for _ in range(len(fields) + 1):
            try:
                result = cls.model_validate(fields)
            except ValidationError as exc:
                odd = {
                    str(error["loc"][0]): error["msg"]
                    for error in exc.errors(include_url=False, include_input=False)
                    if error["loc"]
                }
                odd.pop("status", None)
                if not odd:
                    raise
                for name, problem in odd.items():
                    fields.pop(name, None)
                    log_once(
                        logging.DEBUG,
                        "field %r of a fetch response has an unusable shape (%s); it is "
                        "left out of the typed result and kept in .raw",
                        name,
                        name[:100],
                        problem,
                    )
                if "id" in odd:
                    fields["id"] = request_id
            else:
                result._raw = body
                result._request_id = request_id
                result._endpoint_name = endpoint_name
                return result
        raise ValueError("the response fields could not be read")  # pragma: no cover

    @model_validator(mode="before")
    @classmethod
    def _text_any_writer_can_write(cls, data: object) -> object:
        # Lone surrogates (valid JSON, an emoji cut in half) become U+FFFD in every typed
        # field, key and nested value, so that printing, logging or `model_dump_json()` a
        # result never fails; `raw` keeps the body exactly as received.
        return well_formed(data)

    @field_validator("status", mode="before")
    @classmethod
    def _unknown_status_means_processing(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return lowered if lowered in _KNOWN_STATUSES else Status.PROCESSING.value
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, str):
            return value.strip()
        return value

    # Also the fields of the families below (audio_time, links): declared once, here.
    @field_validator("eta", "generation_time", "audio_time", mode="before", check_fields=False)
    @classmethod
    def _lenient_seconds(cls, value: object) -> float | None:
        seconds = finite_number(value)
        return None if seconds is None else max(seconds, 0.0)

    @field_validator("message", mode="before")
    @classmethod
    def _message_as_text(cls, value: object) -> object:
        # Validation errors arrive as {"field": ["problem"]}: keep them readable, not rejected.
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    @field_validator(
        "output", "proxy_links", "future_links", "links", mode="before", check_fields=False
    )
    @classmethod
    def _url_lists(cls, value: object) -> object:
        return _url_list(value)

    @field_validator("nsfw_content_detected", mode="before")
    @classmethod
    def _blank_is_unknown(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("meta", mode="before")
    @classmethod
    def _empty_meta(cls, value: object) -> object:
        # Some responses send [] or "" where the meta object would be.
        return None if value in ("", []) else value

    @field_validator("tip", "webhook_status", "fetch_result", mode="before")
    @classmethod
    def _scalar_as_text(cls, value: object) -> object:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value


def _shape_of(value: object) -> str:
    return "none" if value is None else f"a {type(value).__name__}"


class VoiceResult(FetchResult):
    """A voice or speech fetch result: `output` holds the audio URLs."""

    links: list[str] = Field(default_factory=list)
    """More URLs of the same audio, when the server sends them."""
    audio_time: float | None = None
    """The length of the generated audio, in seconds."""


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
