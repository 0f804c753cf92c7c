"""The enterprise super-resolution fetch.

`POST /v1/enterprise/super_resolution/fetch/{id}` with `{key}`.
"""

from __future__ import annotations

from .._endpoint import FetchEndpoint
from .._models import FetchResult

SUPER_RESOLUTION: FetchEndpoint[FetchResult] = FetchEndpoint(
    "/v1/enterprise/super_resolution/fetch/{id}"
)
