"""Every ModelsLab fetch endpoint, declared once: one class attribute per endpoint.

Adding an endpoint is one line here and one of `SOURCES` in `tools/endpoint_docs.py`;
the simulator, the CLI, `wait_for`'s routing and the docs all read `endpoint_table()`.
"""

from __future__ import annotations

from typing import Any

from .._results import FetchResult, ThreeDResult, VoiceResult
from ._row import FetchEndpoint
from ._surface import AsyncSurface, Group, SyncSurface, rows_of

__all__ = [
    "V7",
    "AsyncEnterprise",
    "AsyncV7",
    "ClientEndpoints",
    "Enterprise",
    "EnterpriseEndpoints",
    "V7Endpoints",
    "endpoint_table",
    "rows_of",
]

_R = FetchResult  # images, and anything with no fields of its own
_E = "/v1/enterprise"


class V7Endpoints:
    """ModelsLab's v7 APIs (`client.v7`)."""

    images = FetchEndpoint("/v7/images/fetch/{id}", result_model=_R)
    video_fusion = FetchEndpoint("/v7/video-fusion/fetch/{id}", result_model=_R, output="video")
    voice = FetchEndpoint("/v7/voice/fetch/{id}", result_model=VoiceResult, output="audio")


class EnterpriseEndpoints:
    """ModelsLab's enterprise servers (`client.enterprise`); `3d` is `three_d`."""

    images = FetchEndpoint(f"{_E}/fetch", id_field="request_id", result_model=_R)
    super_resolution = FetchEndpoint(f"{_E}/super_resolution/fetch/{{id}}", result_model=_R)
    realtime = FetchEndpoint(f"{_E}/realtime/fetch/{{id}}", result_model=_R)
    image_editing = FetchEndpoint(f"{_E}/image_editing/fetch/{{id}}", result_model=_R)
    interior = FetchEndpoint(f"{_E}/interior/fetch/{{id}}", result_model=_R)
    video = FetchEndpoint(f"{_E}/video/fetch/{{id}}", result_model=_R, output="video")
    ultra_video = FetchEndpoint(f"{_E}/ultra_video/fetch/{{id}}", result_model=_R, output="video")
    image_to_video_ultra = FetchEndpoint(
        f"{_E}/image_to_video_ultra/fetch/{{id}}", result_model=_R, output="video"
    )
    text_to_speech = FetchEndpoint(
        f"{_E}/text_to_speech/fetch/{{id}}", result_model=VoiceResult, output="audio"
    )
    speech_to_text = FetchEndpoint(
        f"{_E}/speech_to_text/fetch/{{id}}", result_model=_R, output="text"
    )
    voice = FetchEndpoint(f"{_E}/voice/fetch/{{id}}", result_model=VoiceResult, output="audio")
    three_d = FetchEndpoint(f"{_E}/3d/fetch/{{id}}", result_model=ThreeDResult, output="3d")
    face_gen = FetchEndpoint(f"{_E}/face_gen/fetch/{{id}}", result_model=_R)
    flux_headshot = FetchEndpoint(f"{_E}/flux_headshot/fetch/{{id}}", result_model=_R)
    qwen = FetchEndpoint(f"{_E}/qwen/fetch/{{id}}", result_model=_R)
    flux = FetchEndpoint(f"{_E}/flux/fetch/{{id}}", result_model=_R)
    flux_klein = FetchEndpoint(f"{_E}/flux_klein/fetch/{{id}}", result_model=_R)
    flux_kontext_dev = FetchEndpoint(f"{_E}/flux_kontext_dev/fetch/{{id}}", result_model=_R)
    z_image_turbo = FetchEndpoint(f"{_E}/z_image_turbo/fetch/{{id}}", result_model=_R)
    # Its page's path; its OpenAPI file says `/faceswap/fetch` with `{key, id}` (SOURCES).
    faceswap = FetchEndpoint(f"{_E}/faceswap/fetch/{{id}}", result_model=_R)


class AsyncV7(V7Endpoints, AsyncSurface):
    """`client.v7` on `AsyncModelsLab`: each attribute a `AsyncFetchResource`."""


class V7(V7Endpoints, SyncSurface):
    """`client.v7` on `ModelsLab`: each attribute a `SyncFetchResource`."""


class AsyncEnterprise(EnterpriseEndpoints, AsyncSurface):
    """`client.enterprise` on `AsyncModelsLab`: each attribute a `AsyncFetchResource`."""


class Enterprise(EnterpriseEndpoints, SyncSurface):
    """`client.enterprise` on `ModelsLab`: each attribute a `SyncFetchResource`."""


class ClientEndpoints:
    """The endpoints at the top of each client (`client.images`, `client.video`, ...)."""

    images = FetchEndpoint("/v6/images/fetch", id_field="request_id", result_model=_R)
    realtime = FetchEndpoint("/v6/realtime/fetch/{id}", result_model=_R)
    image_editing = FetchEndpoint("/v6/image_editing/fetch/{id}", result_model=_R)
    video = FetchEndpoint("/v6/video/fetch/{id}", result_model=_R, output="video")
    voice = FetchEndpoint("/v6/voice/fetch/{id}", result_model=VoiceResult, output="audio")
    three_d = FetchEndpoint("/v6/3d/fetch/{id}", result_model=ThreeDResult, output="3d")
    faceswap = FetchEndpoint(
        "/v6/faceswap/fetch/{id}", result_model=_R, aliases=("/v6/deepfake/fetch/{id}",)
    )
    interior = FetchEndpoint("/v6/interior/fetch/{id}", result_model=_R)
    v7 = Group(AsyncV7, V7)
    enterprise = Group(AsyncEnterprise, Enterprise)


def endpoint_table(root: type[Any] = ClientEndpoints) -> dict[str, FetchEndpoint[Any]]:
    """Every endpoint by its dotted attribute name (`"video"`, `"enterprise.three_d"`)."""
    table: dict[str, FetchEndpoint[Any]] = {}
    for name, row in rows_of(root).items():
        if isinstance(row, Group):
            for inner, endpoint in endpoint_table(row.async_class).items():
                table[f"{name}.{inner}"] = endpoint
        else:
            table[name] = row
    return table
