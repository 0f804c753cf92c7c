"""A sender of webhook deliveries over raw keep-alive sockets, run as a process of its own.

`python -m tests.webhook_flood PORT KIND COUNT [--connections N] [--rate R] [--first-id I]`
POSTs COUNT deliveries of one KIND to a receiver on 127.0.0.1:PORT, with the webhook
URL and secret from MODELSLAB_WEBHOOK_URL / MODELSLAB_WEBHOOK_SECRET, and prints one
JSON line: the statuses answered, by count, and the seconds it took. Its own process,
so that the receiver under test has its process (its core, its memory) to itself.

KINDs: `valid` (job ids FIRST-ID..., each its own track_id), `wrong-token`,
`other-track` (the right token of one track_id, a body naming another), `oversized`
(a 70 kB body), `not-json`, `no-length` (a chunked 70 kB body, no Content-Length).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import Counter
from urllib.parse import urlsplit

from modelslab_fetch import AsyncModelsLab

KINDS = ("valid", "wrong-token", "other-track", "oversized", "not-json", "no-length")


def request(client: AsyncModelsLab, kind: str, n: int, host: str) -> bytes:
    """The bytes of delivery number `n` of `kind`."""
    track = f"t{n}"
    url = client.webhooks.fields(track)["webhook"]
    path = urlsplit(url).path
    body = json.dumps(
        {"status": "success", "id": n, "track_id": track, "output": [f"https://cdn/{n}.png"]}
    ).encode()
    chunked = False
    if kind == "wrong-token":
        path = path[:-22] + ("A" * 22 if not path.endswith("A" * 22) else "B" * 22)
    elif kind == "other-track":
        body = body.replace(f'"track_id": "{track}"'.encode(), b'"track_id": "someone-else"')
    elif kind == "oversized":
        body = b'{"pad": "' + b"x" * 70_000 + b'"}'
    elif kind == "not-json":
        body = b"this is not json " * 10
    elif kind == "no-length":
        body = b'{"pad": "' + b"x" * 70_000 + b'"}'
        chunked = True
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    if chunked:
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 8192]), body[i : i + 8192])
            for i in range(0, len(body), 8192)
        )
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + framed + b"0\r\n\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def send_all(
    port: int, kind: str, count: int, *, connections: int, rate: float | None, first: int
) -> dict[str, object]:
    client = AsyncModelsLab(api_key="flood-key-not-real")
    host = f"127.0.0.1:{port}"
    payloads = [request(client, kind, first + n, host) for n in range(count)]
    statuses: Counter[int] = Counter()
    ok_ids: list[int] = []
    next_index = 0
    started = time.monotonic()

    async def worker() -> None:
        nonlocal next_index
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while next_index < count:
            index = next_index
            next_index += 1
            if rate is not None:  # open loop: each request at its own time
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            try:
                writer.write(payloads[index])
                await writer.drain()
            except OSError:
                pass  # refused before the body was read: the answer is still there
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, OSError):
                statuses[0] += 1  # no answer at all
                writer.close()
                writer = None
                continue
            status = int(head.split(b" ", 2)[1])
            statuses[status] += 1
            if status == 200:
                ok_ids.append(first + index)
            lowered = head.lower()
            length = 0
            for line in lowered.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if b"connection: close" in lowered:
                writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.monotonic() - started
    return {
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed": elapsed,
        "ok_ids": len(set(ok_ids)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("count", type=int)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--first-id", type=int, default=1)
    args = parser.parse_args()
    assert os.environ.get("MODELSLAB_WEBHOOK_URL"), "set MODELSLAB_WEBHOOK_URL"
    result = asyncio.run(
        send_all(
            args.port,
            args.kind,
            args.count,
            connections=args.connections,
            rate=args.rate,
            first=args.first_id,
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
