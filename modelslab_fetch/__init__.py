"""modelslab-fetch: an async-first, typed SDK for ModelsLab's queued-image fetch endpoints.

The layers, bottom up:

1. transport (`_transport`): one JSON POST, errors mapped, transient failures retried;
2. polling (`_polling`): `wait` until finished, spaced by the server's `eta`, deadline-bound;
3. endpoints (`_endpoint`, `_endpoints/table.py`): every fetch endpoint one row of data;
4. clients: `AsyncModelsLab`, and `ModelsLab`, which runs it on a private event loop.
"""

import importlib
from typing import TYPE_CHECKING

from ._config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
)
from ._errors import (
    AccountError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CertificateVerificationError,
    ClientClosedError,
    ConfigurationError,
    DownloadError,
    GenerationFailedError,
    HostNotFoundError,
    InsufficientCreditsError,
    InvalidRequestIdError,
    ModelsLabError,
    PermissionDeniedError,
    RateLimitError,
    RequestNotFoundError,
    ResponseParseError,
    WaitTimeoutError,
)
from ._logging import LOG_ENV, setup_logging_from_env
from ._retry_policy import DEFAULT_RETRY_STATUSES, RetryPolicy
from ._version import __version__

if TYPE_CHECKING:
    from ._async_client import AsyncEnterprise, AsyncModelsLab
    from ._batch import AsyncBatch, Batch, Failure, Outcome, Progress, Success
    from ._clock import Clock, EventLoopClock
    from ._downloads import Downloaded
    from ._endpoint import (
        DEFAULT_WAIT_MANY_CONCURRENCY,
        AsyncFetchResource,
        FetchEndpoint,
        FetchResource,
    )
    from ._endpoints.results import ThreeDResult, VoiceResult
    from ._endpoints.table import V7, AsyncV7, endpoint_table
    from ._ids import RequestId
    from ._models import FetchResult, Status
    from ._polling import DEFAULT_WAIT_TIMEOUT, PollPolicy
    from ._routing import ForeignFetchURLError
    from ._sync_client import Enterprise, ModelsLab, SyncBatch, SyncFetchResource
    from ._updates import PollUpdate

setup_logging_from_env()

# The clients, results and batches are imported when first asked for (PEP 562), not with
# the package: `import modelslab_fetch` stays cheap for a CLI start, a cold start, or a
# program that only reads a constant or an error class. Type checkers see them above.
_LAZY = {
    "AsyncBatch": "._batch",
    "AsyncEnterprise": "._async_client",
    "AsyncFetchResource": "._endpoint",
    "AsyncModelsLab": "._async_client",
    "AsyncV7": "._endpoints.table",
    "Batch": "._batch",
    "Clock": "._clock",
    "DEFAULT_WAIT_MANY_CONCURRENCY": "._endpoint",
    "DEFAULT_WAIT_TIMEOUT": "._polling",
    "Downloaded": "._downloads",
    "Enterprise": "._sync_client",
    "EventLoopClock": "._clock",
    "Failure": "._batch",
    "FetchEndpoint": "._endpoint",
    "FetchResource": "._endpoint",
    "FetchResult": "._models",
    "ForeignFetchURLError": "._routing",
    "ModelsLab": "._sync_client",
    "Outcome": "._batch",
    "PollPolicy": "._polling",
    "PollUpdate": "._updates",
    "Progress": "._batch",
    "RequestId": "._ids",
    "Status": "._models",
    "Success": "._batch",
    "SyncBatch": "._sync_client",
    "SyncFetchResource": "._sync_client",
    "ThreeDResult": "._endpoints.results",
    "V7": "._endpoints.table",
    "VoiceResult": "._endpoints.results",
    "endpoint_table": "._endpoints.table",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # asked once: later reads are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RETRY_STATUSES",
    "DEFAULT_WAIT_MANY_CONCURRENCY",
    "DEFAULT_WAIT_TIMEOUT",
    "LOG_ENV",
    "V7",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AccountError",
    "AsyncBatch",
    "AsyncEnterprise",
    "AsyncFetchResource",
    "AsyncModelsLab",
    "AsyncV7",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "CertificateVerificationError",
    "ClientClosedError",
    "Clock",
    "ConfigurationError",
    "DownloadError",
    "Downloaded",
    "Enterprise",
    "EventLoopClock",
    "Failure",
    "FetchEndpoint",
    "FetchResource",
    "FetchResult",
    "ForeignFetchURLError",
    "GenerationFailedError",
    "HostNotFoundError",
    "InsufficientCreditsError",
    "InvalidRequestIdError",
    "ModelsLab",
    "ModelsLabError",
    "Outcome",
    "PermissionDeniedError",
    "PollPolicy",
    "PollUpdate",
    "Progress",
    "RateLimitError",
    "RequestId",
    "RequestNotFoundError",
    "ResponseParseError",
    "RetryPolicy",
    "Status",
    "Success",
    "SyncBatch",
    "SyncFetchResource",
    "ThreeDResult",
    "VoiceResult",
    "WaitTimeoutError",
    "__version__",
    "endpoint_table",
]
