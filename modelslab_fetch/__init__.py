"""modelslab-fetch: an async-first, typed SDK for ModelsLab's queued-image fetch endpoints.

Layers as folders, data flowing one way down (README, "How it is built"): the foundation
at the root; `_http/`, one JSON POST; `_jobs/`, one job and many; `_endpoints/`, the
table of endpoints; `_clients/`, `AsyncModelsLab` and `ModelsLab`. `cli/` and `testing/`
use only what this module exports.
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
    ForeignFetchURLError,
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
from ._events import (
    ClientEvent,
    ClientPaused,
    EventCallback,
    FleetRestored,
    FleetUnavailable,
    RequestFailed,
    RequestSent,
    ResponseReceived,
    RetryScheduled,
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
        FetchResource,
    )
    from ._endpoints._row import FetchEndpoint
    from ._endpoints.table import V7, AsyncV7, endpoint_table
    from ._ids import RequestId, normalize_request_id
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
    from ._results import FetchResult, Status, ThreeDResult, VoiceResult
    from ._webhook_config import WEBHOOK_SECRET_ENV, WEBHOOK_URL_ENV

setup_logging_from_env()

# The clients, results and batches are imported when first asked for (PEP 562), not with
# the package: `import modelslab_fetch` stays cheap for a CLI start, a cold start, or a
# program that only reads a constant or an error class. Type checkers see them above.
_LAZY = {
    name: module
    for module, names in {
        "._clients._async": "AsyncEnterprise AsyncModelsLab",
        "._clients._sync": "Enterprise ModelsLab",
        "._clients._webhooks": "AsyncWebhooks Webhooks",
        "._clock": "Clock EventLoopClock",
        "._endpoints._blocking": "SyncBatch SyncFetchResource",
        "._endpoints._resource": "DEFAULT_WAIT_MANY_CONCURRENCY AsyncFetchResource FetchResource",
        "._endpoints._row": "FetchEndpoint",
        "._endpoints.table": "V7 AsyncV7 endpoint_table",
        "._ids": "RequestId normalize_request_id",
        "._jobs._batch": "AsyncBatch Batch Failure Outcome Progress Success",
        "._jobs._deliveries": (
            "DeliveryIterator DeliveryStream MAX_KEPT_AGE MAX_KEPT_BYTES MAX_KEPT_DELIVERIES "
            "WebhookDelivery"
        ),
        "._jobs._downloads": "Downloaded",
        "._jobs._polling": "DEFAULT_WAIT_TIMEOUT PollPolicy",
        "._jobs._updates": "PollUpdate",
        "._jobs._webhooks": "MAX_DELIVERY_BYTES",
        "._results": "FetchResult Status ThreeDResult VoiceResult",
        "._webhook_config": "WEBHOOK_SECRET_ENV WEBHOOK_URL_ENV",
    }.items()
    for name in names.split()
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
    "ClientEvent",
    "ClientPaused",
    "Clock",
    "ConfigurationError",
    "DeliveryIterator",
    "DeliveryStream",
    "DownloadError",
    "Downloaded",
    "Enterprise",
    "EventCallback",
    "EventLoopClock",
    "Failure",
    "FetchEndpoint",
    "FetchResource",
    "FetchResult",
    "FleetRestored",
    "FleetUnavailable",
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
    "RequestFailed",
    "RequestId",
    "RequestNotFoundError",
    "RequestSent",
    "ResponseParseError",
    "ResponseReceived",
    "RetryPolicy",
    "RetryScheduled",
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
    "normalize_request_id",
]
