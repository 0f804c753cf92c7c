"""modelslab-fetch: an async-first, typed SDK for ModelsLab's queued-image fetch endpoints.

The layers, bottom up:

1. transport (`_transport`): one JSON POST, errors mapped, transient failures retried;
2. polling (`_polling`): `wait` until finished, spaced by the server's `eta`, deadline-bound;
3. endpoints (`_endpoint`, `_endpoints/table.py`): every fetch endpoint one row of data;
4. clients: `AsyncModelsLab`, and `ModelsLab`, which runs it on a private loop thread.
"""

from ._async_client import AsyncEnterprise, AsyncModelsLab
from ._batch import Batch, Outcome, Progress
from ._clock import Clock, EventLoopClock
from ._config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
)
from ._downloads import Downloaded
from ._endpoint import DEFAULT_WAIT_MANY_CONCURRENCY, FetchEndpoint, FetchResource
from ._endpoints.results import ThreeDResult, VoiceResult
from ._endpoints.table import V7, AsyncV7, endpoint_table
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
from ._ids import RequestId
from ._logging import LOG_ENV, setup_logging_from_env
from ._models import FetchResult, Status
from ._polling import DEFAULT_WAIT_TIMEOUT, PollPolicy
from ._retry_policy import DEFAULT_RETRY_STATUSES, RetryPolicy
from ._routing import ForeignFetchURLError
from ._sync_client import Enterprise, ModelsLab, SyncBatch, SyncFetchResource
from ._updates import PollUpdate
from ._version import __version__

setup_logging_from_env()

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
    "AsyncEnterprise",
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
    "SyncBatch",
    "SyncFetchResource",
    "ThreeDResult",
    "VoiceResult",
    "WaitTimeoutError",
    "__version__",
    "endpoint_table",
]
