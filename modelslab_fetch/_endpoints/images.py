"""The v6 queued-images fetch: `POST /v6/images/fetch` with `{key, request_id}`."""

from __future__ import annotations

from .._endpoint import FetchEndpoint
from .._models import FetchResult

IMAGES: FetchEndpoint[FetchResult] = FetchEndpoint("/v6/images/fetch", id_field="request_id")
