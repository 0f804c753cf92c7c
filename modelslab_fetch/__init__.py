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
    InvalidWebhookError,
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
    from ._clients._async import AsyncEnterprise, AsyncModelsLab
    from ._clients._sync import Enterprise, ModelsLab
    from ._clients._webhooks import AsyncWebhooks, Webhooks
    from ._clock import Clock, EventLoopClock
    from ._endpoints._blocking import SyncBatch, SyncFetchResource
    from ._endpoints._resource import (
        DEFAULT_WAIT_MANY_CONCURRENCY,
        AsyncFetchResource,
        FetchEndpoint,
        FetchResource,
    )
    from ._endpoints._routing import ForeignFetchURLError
    from ._endpoints.results import ThreeDResult, VoiceResult
    from ._endpoints.table import V7, AsyncV7, endpoint_table
    from ._ids import RequestId
    from ._jobs._batch import AsyncBatch, Batch, Failure, Outcome, Progress, Success
    from ._jobs._deliveries import (
        MAX_KEPT_AGE,
        MAX_KEPT_BYTES,
        MAX_KEPT_DELIVERIES,
        DeliveryIterator,
        DeliveryStream,
        WebhookDelivery,
    )
    from ._jobs._downloads import Downloaded
    from ._jobs._polling import DEFAULT_WAIT_TIMEOUT, PollPolicy
    from ._jobs._updates import PollUpdate
    from ._jobs._webhooks import MAX_DELIVERY_BYTES
    from ._results import FetchResult, Status
    from ._webhook_config import WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV

setup_logging_from_env()

# The clients, results and batches are imported when first asked for (PEP 562), not with
# the package: `import modelslab_fetch` stays cheap for a CLI start, a cold start, or a
# program that only reads a constant or an error class. Type checkers see them above.
_LAZY = {
    "AsyncBatch": "._jobs._batch",
    "AsyncEnterprise": "._clients._async",
    "AsyncFetchResource": "._endpoints._resource",
    "AsyncModelsLab": "._clients._async",
    "AsyncV7": "._endpoints.table",
    "AsyncWebhooks": "._clients._webhooks",
    "Batch": "._jobs._batch",
    "Clock": "._clock",
    "DEFAULT_WAIT_MANY_CONCURRENCY": "._endpoints._resource",
    "DEFAULT_WAIT_TIMEOUT": "._jobs._polling",
    "DeliveryIterator": "._jobs._deliveries",
    "DeliveryStream": "._jobs._deliveries",
    "Downloaded": "._jobs._downloads",
    "Enterprise": "._clients._sync",
    "EventLoopClock": "._clock",
    "Failure": "._jobs._batch",
    "FetchEndpoint": "._endpoints._resource",
    "FetchResource": "._endpoints._resource",
    "FetchResult": "._results",
    "MAX_DELIVERY_BYTES": "._jobs._webhooks",
    "MAX_KEPT_AGE": "._jobs._deliveries",
    "MAX_KEPT_BYTES": "._jobs._deliveries",
    "MAX_KEPT_DELIVERIES": "._jobs._deliveries",
    "ForeignFetchURLError": "._endpoints._routing",
    "ModelsLab": "._clients._sync",
    "Outcome": "._jobs._batch",
    "PollPolicy": "._jobs._polling",
    "PollUpdate": "._jobs._updates",
    "Progress": "._jobs._batch",
    "RequestId": "._ids",
    "Status": "._results",
    "Success": "._jobs._batch",
    "SyncBatch": "._endpoints._blocking",
    "SyncFetchResource": "._endpoints._blocking",
    "ThreeDResult": "._endpoints.results",
    "V7": "._endpoints.table",
    "VoiceResult": "._endpoints.results",
    "WEBHOOK_SECRET_ENV": "._webhook_config",
    "WEBHOOK_URL_ENV": "._webhook_config",
    "WebhookDelivery": "._jobs._deliveries",
    "Webhooks": "._clients._webhooks",
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
    "MAX_DELIVERY_BYTES",
    "MAX_KEPT_AGE",
    "MAX_KEPT_BYTES",
    "MAX_KEPT_DELIVERIES",
    "V7",
    "WEBHOOK_SECRET_ENV",
    "WEBHOOK_URL_ENV",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AccountError",
    "AsyncBatch",
    "AsyncEnterprise",
    "AsyncFetchResource",
    "AsyncModelsLab",
    "AsyncV7",
    "AsyncWebhooks",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "CertificateVerificationError",
    "ClientClosedError",
    "Clock",
    "ConfigurationError",
    "DeliveryIterator",
    "DeliveryStream",
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
    "InvalidWebhookError",
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
    "WebhookDelivery",
    "Webhooks",
    "__version__",
    "endpoint_table",
]
