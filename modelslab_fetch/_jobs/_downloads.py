"""Saving a result's outputs (images, video, audio, 3D) into a folder, safely and atomically.

Files are named from what was asked, never from the answer; written to a locked `.part`
file renamed into place once whole; fetched from public addresses only unless opted in.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import anyio
import httpx

from .._clock import Clock, EventLoopClock
from .._config import DEFAULT_MAX_RETRIES
from .._errors import DecodedTooLarge, DecodingError, DownloadError, DownloadRefused, UnusableURL
from .._http._answers import transient_status
from .._http._backends._contract import overall_deadline
from .._http._decoding import ACCEPT_ENCODING, BodyDecoder, raw_chunks, read_decoded
from .._http._retry_after import parse_retry_after
from .._http._retrying import with_retries
from .._results import FetchResult
from .._retry_policy import RetryPolicy
from .._urls import checked_http_url
from ._addresses import OPT_IN, AddressPolicy
from ._part_files import PartFile, remove_abandoned

__all__ = ["Downloaded", "Downloader", "extension_for_content_type", "file_name_for"]

MAX_IMAGE_BYTES = 64 * 2**20
"""A single image larger than this is refused (ModelsLab outputs are a few MB at most)."""

FILE_TIME_LIMIT = 300.0
"""The most one file may take, retries included, in seconds."""

FILES_AT_ONCE = 8
"""How many files one client downloads at once."""

_FOLDERS_REMEMBERED = 1024

UNQUALIFIED_ENDPOINT = "images"
"""The endpoint whose files are named by id alone (`123-0.png`), as before endpoints were."""

_MAX_REDIRECTS = 20  # as httpx's own default

# The kinds of file ModelsLab's endpoints output: images, video, audio, 3D, archives.
_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".webp", ".gif", ".mp4", ".webm", ".mov", ".wav", ".mp3", ".ogg"}
    | {".flac", ".m4a", ".glb", ".gltf", ".obj", ".fbx", ".stl", ".ply", ".usdz", ".zip", ".txt"}
)
# For a URL whose path names no known kind: the type the server declares.
_CONTENT_TYPES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/ogg": ".ogg",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "model/gltf-binary": ".glb",
    "model/gltf+json": ".gltf",
    "model/obj": ".obj",
    "model/stl": ".stl",
    "model/vnd.usdz+zip": ".usdz",
    "application/zip": ".zip",
    "text/plain": ".txt",
}
_UNKNOWN = ".bin"
# Ids and endpoint names used as they are in file names; anything else is digested. Ids
# never hold a dot and digests a plus, so no two (endpoint, id, index) share a name.
_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SAFE_ENDPOINT = re.compile(r"[A-Za-z0-9_]{1,64}(?:\.[A-Za-z0-9_]{1,64}){0,3}")


@dataclass(frozen=True, slots=True)
class Downloaded:
    """What became of one result's images: the files saved (or already there), or the error."""

    request_id: str
    """The id the result was asked for (`FetchResult.request_id`)."""
    paths: tuple[Path, ...]
    """The files, in the order of `result.output`; complete files found are included."""
    error: Exception | None = None
    """Why not every image was saved, or None."""

    @property
    def ok(self) -> bool:
        """Whether every image of the result is on disk."""
        return self.error is None


def file_name_for(request_id: str, index: int, url: str, *, endpoint: str | None = None) -> str:
    """The file name an output is saved under: `{id}-{index}{ext}`, or `{endpoint}.{id}-...`.

    Built from what the caller asked, never from the URL's path, so no URL can name a file
    outside the folder, a hidden file or a device. The URL's extension is kept only when
    it is a known output type, else `.bin` (the download then names it by content type).
    """
    return f"{_stem(request_id, index, endpoint)}{_extension_in(url) or _UNKNOWN}"


def extension_for_content_type(content_type: str | None) -> str | None:
    """The file extension for a response's `Content-Type`, if it is a known output type."""
    if not content_type:
        return None
    return _CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def _stem(request_id: str, index: int, endpoint: str | None) -> str:
    safe_id = request_id if _SAFE_ID.fullmatch(request_id) else _digest_name("id", request_id)
    if endpoint is None or endpoint == UNQUALIFIED_ENDPOINT:
        return f"{safe_id}-{index}"
    prefix = endpoint if _SAFE_ENDPOINT.fullmatch(endpoint) else _digest_name("ep", endpoint)
    return f"{prefix}.{safe_id}-{index}"


def _extension_in(url: str) -> str | None:
    try:
        suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
    except (ValueError, TypeError):  # a malformed URL: _save refuses it with a DownloadError
        return None
    return suffix if suffix in _EXTENSIONS else None


def _digest_name(kind: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{kind}+{digest}"


class Downloader:
    """Downloads outputs with one httpx client, a few at a time, retried as `fetch()` is.

    Each attempt must arrive whole within the client's timeout, the file (retries
    included) within `FILE_TIME_LIMIT`, decoded to at most `MAX_IMAGE_BYTES`.
    `lookup_names` checks host names by a lookup first, for an `http_client` of yours.
    """

    def __init__(
        self,
        http_client: httpx.AsyncClient,
        *,
        addresses: AddressPolicy | None = None,
        lookup_names: bool = False,
        retry_policy: RetryPolicy | None = None,
        retries: int = DEFAULT_MAX_RETRIES,
        clock: Clock | None = None,
    ) -> None:
        self._http = http_client
        self._limiter = anyio.CapacityLimiter(FILES_AT_ONCE)
        self._addresses = addresses if addresses is not None else AddressPolicy(True)
        self._lookup_names = lookup_names
        self._policy = retry_policy if retry_policy is not None else RetryPolicy()
        self._retries = retries
        self._clock = clock if clock is not None else EventLoopClock()
        self._cleared: dict[Path, anyio.Event] = {}

    def __repr__(self) -> str:
        return f"Downloader(concurrency={self._limiter.total_tokens})"

    async def _clear_abandoned_once(self, folder: Path) -> None:
        """Remove the `.part` files killed runs left in `folder`, the first time it is used."""
        key = folder  # as given: the same folder named two ways is only cleared twice
        cleared = self._cleared.get(key)
        if cleared is not None:
            await cleared.wait()  # cleared, or being cleared by a download that came first
            return
        if len(self._cleared) >= _FOLDERS_REMEMBERED:
            self._cleared.clear()  # a folder per result, endlessly: clear one again later
        cleared = self._cleared[key] = anyio.Event()
        try:
            await anyio.to_thread.run_sync(remove_abandoned, folder)
        except OSError:
            pass  # a folder that cannot be listed: saving into it says what is wrong
        finally:
            cleared.set()

    async def download(self, result: FetchResult, directory: str | os.PathLike[str]) -> list[Path]:
        """Save every output of `result` into `directory`; return their paths.

        Files already there are complete and not fetched again. Raises `DownloadError`
        for the first output that fails.
        """
        folder = Path(directory)
        await anyio.Path(folder).mkdir(parents=True, exist_ok=True)
        await self._clear_abandoned_once(folder)
        request_id, endpoint = result.request_id, result.endpoint_name
        paths = []
        for index, url in enumerate(result.output):
            if _extension_in(url) is not None:
                target = folder / file_name_for(request_id, index, url, endpoint=endpoint)
                paths.append(await self._save(request_id, url, target))
                continue
            # No kind in the URL: a file saved under any extension counts, else by type.
            stem = _stem(request_id, index, endpoint)
            found = [
                folder / f"{stem}{ext}"
                for ext in (*sorted(_EXTENSIONS), _UNKNOWN)
                if await anyio.Path(folder / f"{stem}{ext}").exists()
            ]
            if found:
                paths.append(found[0])
            else:
                paths.append(await self._save(request_id, url, folder / stem, by_type=True))
        return paths

    async def download_many(
        self, results: Iterable[FetchResult], directory: str | os.PathLike[str]
    ) -> list[Downloaded]:
        """Save the images of many results, concurrently; one `Downloaded` per result, in order."""
        ordered = list(results)
        done: list[Downloaded | None] = [None] * len(ordered)

        async def one(position: int, result: FetchResult) -> None:
            try:
                paths = await self.download(result, directory)
            except Exception as exc:
                done[position] = Downloaded(result.request_id, (), exc)
            else:
                done[position] = Downloaded(result.request_id, tuple(paths))

        async with anyio.create_task_group() as tg:
            for position, result in enumerate(ordered):
                tg.start_soon(one, position, result)
        assert all(outcome is not None for outcome in done)  # noqa: S101 - one per result
        return [outcome for outcome in done if outcome is not None]

    async def _save(
        self, request_id: str, url: str, target: Path, *, by_type: bool = False
    ) -> Path:
        if not by_type and await anyio.Path(target).exists():
            return target
        self._checked(url, url, request_id)  # before any file is made
        async with self._limiter:
            part = PartFile(target)
            try:
                content_type = await self._fetch_within_limit(url, part, request_id)
                if by_type:
                    ext = extension_for_content_type(content_type) or _UNKNOWN
                    target = target.with_name(target.name + ext)
                return part.commit(target)
            except BaseException:
                part.discard()
                raise

    async def _fetch_within_limit(self, url: str, part: PartFile, request_id: str) -> str | None:
        """Download `url` into `part`, retries included; return the response's content type."""
        content_type: str | None = None
        with anyio.move_on_after(FILE_TIME_LIMIT) as scope:
            content_type = await self._fetch_with_retries(url, part, request_id)
        if scope.cancelled_caught:
            raise DownloadError(
                f"could not download {url} within {FILE_TIME_LIMIT:g} s (the per-file limit, "
                "retries included): the server sent it too slowly or not at all; try again "
                "later (files already saved are not fetched again)",
                url=url,
                request_id=request_id,
            )
        return content_type

    async def _fetch_with_retries(self, url: str, part: PartFile, request_id: str) -> str | None:
        attempts = 0

        async def attempt() -> str | None:
            nonlocal attempts
            attempts += 1
            return await self._attempt(url, part, request_id)

        try:
            return await with_retries(
                attempt,
                transient=lambda error: getattr(error, "_transient", False),
                retries=self._retries,
                policy=self._policy,
                clock=self._clock,
            )
        except DownloadError as exc:
            if attempts < 2:
                raise
            error = DownloadError(
                f"{exc.message} (gave up after {attempts} attempts)",
                url=exc.url,
                request_id=exc.request_id,
                status_code=exc.status_code,
                retry_after=exc.retry_after,
            )
        raise error

    async def _attempt(self, url: str, part: PartFile, request_id: str) -> str | None:
        deadline = overall_deadline(self._http.timeout)
        content_type: str | None = None
        with anyio.move_on_after(deadline if deadline is not None else float("inf")) as scope:
            content_type = await self._fetch_to(url, part, request_id)
        if scope.cancelled_caught:
            raise _transient(
                DownloadError(
                    f"could not download {url} within {deadline:g} s (the client's timeout, "
                    "for the whole download); the server sent it too slowly or not at all",
                    url=url,
                    request_id=request_id,
                )
            )
        return content_type

    def _checked(self, url: str, first: str, request_id: str) -> httpx.URL:
        """`url` (the output URL `first`, or a redirect from it), if it may be fetched."""
        hop = "" if url == first else f" (redirected to {url!r})"
        try:
            checked = checked_http_url(url)
            self._addresses.check_host(checked.raw_host.decode("ascii"))
        except UnusableURL as exc:
            raise DownloadError(
                f"refusing to download {first!r}{hop}: {exc}", url=first, request_id=request_id
            ) from None
        except DownloadRefused as exc:
            raise _refused(first, hop, exc, request_id) from None
        if checked.userinfo:  # nothing of ours to send; a disguise (`https://cdn@evil/`)
            raise DownloadError(
                f"refusing to download {first!r}{hop}: it carries a user name or password",
                url=first,
                request_id=request_id,
            )
        return checked

    async def _fetch_to(self, url: str, part: PartFile, request_id: str) -> str | None:
        headers = {"accept-encoding": ACCEPT_ENCODING}
        try:
            checked = self._checked(url, url, request_id)
            request = self._http.build_request("GET", checked, headers=headers)
            for _ in range(_MAX_REDIRECTS + 1):
                if self._lookup_names:
                    await self._addresses.check_by_lookup(request.url.raw_host.decode("ascii"))
                # Redirects are followed here: httpx inflates each redirect's body without
                # a bound, and each hop must pass the address check.
                response = await self._http.send(request, stream=True, follow_redirects=False)
                try:
                    if response.next_request is None:
                        await self._write(url, response, part, request_id)
                        content_type: str | None = response.headers.get("content-type")
                        return content_type
                    request = response.next_request
                    self._checked(str(request.url), url, request_id)
                finally:
                    await response.aclose()
        except DownloadRefused as exc:
            raise _refused(url, "", exc, request_id) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, ValueError) as exc:
            # ValueError: a Location no URL parser takes (IDNAError, UnicodeError...).
            raise _transient(
                DownloadError(
                    f"could not download {url} ({type(exc).__name__}: {exc})",
                    url=url,
                    request_id=request_id,
                ),
                isinstance(exc, httpx.TransportError)
                and not isinstance(exc, httpx.UnsupportedProtocol),
            ) from None
        raise DownloadError(
            f"could not download {url}: more than {_MAX_REDIRECTS} redirects",
            url=url,
            request_id=request_id,
        )

    async def _write(
        self, url: str, response: httpx.Response, part: PartFile, request_id: str
    ) -> None:
        if response.status_code != 200:
            raise self._status_error(url, response, request_id)
        try:
            part.restart()  # a retry starts the file afresh
            encoding, chunks = raw_chunks(response)
            decoder = BodyDecoder(encoding, MAX_IMAGE_BYTES)
            await read_decoded(chunks, decoder, anyio.wrap_file(part.file).write)
        except DecodedTooLarge:
            raise DownloadError(
                f"{url} is larger than {MAX_IMAGE_BYTES // 2**20} MB; refused",
                url=url,
                request_id=request_id,
            ) from None
        except DecodingError as exc:
            raise DownloadError(
                f"could not download {url} ({exc})", url=url, request_id=request_id
            ) from None

    def _status_error(self, url: str, response: httpx.Response, request_id: str) -> DownloadError:
        status = response.status_code
        policy = self._policy
        transient = status == 429 or transient_status(
            status, response.headers, b"", policy.statuses, policy.retry_edge_pages
        )
        retry_after = parse_retry_after(response.headers.get("retry-after"), now=time.time())
        return _transient(
            DownloadError(
                f"HTTP {status} for {url}",
                url=url,
                request_id=request_id,
                status_code=status,
                retry_after=retry_after,
            ),
            transient,
        )


def _transient(error: DownloadError, transient: bool = True) -> DownloadError:
    error._transient = transient  # type: ignore[attr-defined]
    return error


def _refused(url: str, hop: str, refusal: DownloadRefused, request_id: str) -> DownloadError:
    return DownloadError(
        f"refusing to download {url!r}{hop}: {refusal.detail}; downloads reach only "
        f"public addresses by default: {OPT_IN}",
        url=url,
        request_id=request_id,
        refused_address=refusal.detail,
    )
