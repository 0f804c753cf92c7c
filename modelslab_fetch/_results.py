"""Typed fetch results, of every endpoint family, tolerant of every quirk of the wire format."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, ClassVar, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
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
    if type(value) is list:  # the usual shape, tested first
        if not value:
            return value  # pydantic's check makes the field a list of its own
        return [item.strip() for item in value if isinstance(item, str) and item.strip()]
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

    _lenient: ClassVar[dict[str, _Lenient]]
    # `from_body` keeps the body, and what the caller asked (not what the server
    # answered: files are named from these), in pydantic's slot for private values,
    # `{"raw": ..., "request_id": ..., "endpoint_name": ...}`: copies, pickles and `==`
    # carry it. Not declared as private attributes: pydantic would build them with a
    # Python call on every result, a third of the cost of validating one.

    @property
    def raw(self) -> dict[str, Any]:
        """The response body as received, the API key redacted if echoed.

        From the wire, half an emoji (a lone surrogate: no UTF-8 writer takes it) reads
        as U+FFFD here too; a body handed to `from_body` is kept exactly as given.
        """
        private = self.__pydantic_private__
        raw = None if private is None else private.get("raw")
        return {} if raw is None else raw

    @property
    def request_id(self) -> str:
        """The id this result was asked for; `id` is what the server answered.

        They differ only when the server answers with another id (a bug, a proxy's
        cache). Downloads name files from this one, so no answer can make two jobs
        write one file. For a result built by hand it is `id`.
        """
        private = self.__pydantic_private__
        asked = None if private is None else private.get("request_id")
        return self.id if asked is None else asked

    @property
    def endpoint_name(self) -> str | None:
        """The endpoint this result was fetched from, by table name, or None.

        A table name is `"video"`, `"enterprise.three_d"`...; a result built by hand has
        None. ModelsLab's ids are per product: downloads prefix file names with it (except
        for `images`), so the same id on two endpoints never shares a file.
        """
        private = self.__pydantic_private__
        return None if private is None else private.get("endpoint_name")

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
        return cls._from_body(body, request_id, endpoint_name, checked=False)

    @classmethod
    def _from_body(
        cls: type[_Result],
        body: dict[str, Any],
        request_id: str,
        endpoint_name: str | None,
        *,
        checked: bool,
    ) -> _Result:
        # `checked`: the body is known to hold no lone surrogate (the transport's answers
        # are made well-formed where they are decoded), so it is not walked again here.
        status = body.get("status")
        if not isinstance(status, str):
            # An empty or unknown word still reads (as processing); no word at all cannot.
            raise ValueError(  # noqa: TRY004 - from_body promises ValueError for any bad body
                f"status: missing or unreadable (got {_shape_of(status)})"
            )
        fields = cls._read_leniently(body, checked=checked)
        fields["raw_status"] = status if checked else well_formed(status)
        if not _usable_id(body.get("id")):
            fields["id"] = request_id
        # Each pass drops the fields that failed; `status` and `id` cannot fail by now, so
        # this ends within one pass per field.
        for _ in range(len(fields) + 1):
            try:
                result: _Result = cls.__pydantic_validator__.validate_python(fields)
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
                private = {"raw": body, "request_id": request_id, "endpoint_name": endpoint_name}
                if result.__pydantic_private__ is None:
                    object.__setattr__(result, "__pydantic_private__", private)
                else:  # a subclass of yours with private attributes of its own
                    result.__pydantic_private__.update(private)
                return result
        raise ValueError("the response fields could not be read")  # pragma: no cover

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Each subclass reads its own fields leniently (`_readers_of`), yours included."""
        super().__pydantic_init_subclass__(**kwargs)
        cls._lenient = _readers_of(cls)

    @model_validator(mode="before")
    @classmethod
    def _lenient_fields(cls, data: object) -> object:
        if type(data) is _ReadLeniently or not isinstance(data, Mapping):
            return data  # read already (by `from_body`), or not fields at all
        return cls._read_leniently(data if isinstance(data, dict) else dict(data))

    @classmethod
    def _read_leniently(cls, data: dict[str, Any], *, checked: bool = False) -> _ReadLeniently:
        # Lone surrogates (valid JSON, an emoji cut in half) become U+FFFD in every typed
        # field, key and nested value, so that printing, logging or `model_dump_json()` a
        # result never fails; `raw` keeps the body exactly as received. Then each field
        # present is read leniently (see `_lenient`): one Python pass per body, where a
        # validator per field cost pydantic a call each (most of a fetch's parse time).
        lenient = cls._lenient
        fields = _ReadLeniently()
        for name, value in (data if checked else well_formed(data)).items():
            reader = lenient.get(name)
            fields[name] = value if reader is None else reader(value)
        return fields


class _ReadLeniently(dict[str, Any]):
    """Fields already read leniently: the model's own check lets them through as they are."""


def _status(value: object) -> object:
    if type(value) is str and value in _KNOWN_STATUSES:
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        return lowered if lowered in _KNOWN_STATUSES else Status.PROCESSING.value
    return value


def _id_as_text(value: object) -> object:
    if type(value) is int:
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return value.strip()
    return value


def _seconds(value: object) -> float | None:
    if type(value) is float and 0.0 <= value < math.inf:  # the usual shape, tested first
        return value
    seconds = finite_number(value)
    return None if seconds is None else max(seconds, 0.0)


def _message_as_text(value: object) -> object:
    # Validation errors arrive as {"field": ["problem"]}: keep them readable, not rejected.
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _blank_is_unknown(value: object) -> object:
    return None if value == "" else value


def _empty_meta(value: object) -> object:
    # Some responses send [] or "" where the meta object would be.
    return None if value in ("", []) else value


def _scalar_as_text(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _assets_as_list(value: object) -> object:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


_Lenient = Callable[[object], object]

# How each field is read before pydantic checks its type, by field name: a family's
# fields (`links`, `audio_time`, `extra_assets`), and your subclass's fields of these
# names, are read as the base's are.
_READERS: dict[str, _Lenient] = {
    "status": _status,
    "id": _id_as_text,
    "eta": _seconds,
    "generation_time": _seconds,
    "audio_time": _seconds,
    "message": _message_as_text,
    "output": _url_list,
    "proxy_links": _url_list,
    "future_links": _url_list,
    "links": _url_list,
    "extra_assets": _assets_as_list,
    "nsfw_content_detected": _blank_is_unknown,
    "meta": _empty_meta,
    "tip": _scalar_as_text,
    "webhook_status": _scalar_as_text,
    "fetch_result": _scalar_as_text,
}


def _readers_of(model: type[FetchResult]) -> dict[str, _Lenient]:
    """The reader of each field of `model` that has one, under every name it arrives as."""
    table: dict[str, _Lenient] = {}
    for name, field in model.model_fields.items():
        reader = _READERS.get(name)
        if reader is None:
            continue
        table[name] = reader
        alias = field.validation_alias
        names = alias.choices if isinstance(alias, AliasChoices) else [alias]
        table.update((choice, reader) for choice in names if isinstance(choice, str))
    return table


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


FetchResult._lenient = _readers_of(FetchResult)
