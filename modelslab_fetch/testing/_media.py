"""Tiny but well-formed output files of each kind the simulator serves, made from scratch.

Valid enough for their extension: a file-type sniffer (and most players) recognise each.
"""

from __future__ import annotations

import json
import struct

from ._png import solid_png

__all__ = ["KIND_FILES", "file_of_kind", "tiny_glb", "tiny_mp4", "tiny_wav"]


def tiny_mp4() -> bytes:
    """An MP4 file: an `ftyp` box (isom brand) and an empty `mdat` box."""
    brands = b"isom" + struct.pack(">I", 512) + b"isomiso2mp41"
    ftyp = struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands
    return ftyp + struct.pack(">I", 8) + b"mdat"


def tiny_wav(samples: int = 800, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of `samples` samples of a quiet square wave."""
    data = b"".join(struct.pack("<h", 1000 if (n // 20) % 2 else -1000) for n in range(samples))
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiny_glb() -> bytes:
    """A binary glTF 2.0 file (GLB) holding one JSON chunk with an empty scene."""
    document = json.dumps({"asset": {"version": "2.0"}, "scenes": [{}], "scene": 0}).encode()
    document += b" " * (-len(document) % 4)  # chunks are 4-byte aligned, JSON padded with spaces
    chunk = struct.pack("<I", len(document)) + b"JSON" + document
    return b"glTF" + struct.pack("<II", 2, 12 + len(chunk)) + chunk


KIND_FILES: dict[str, tuple[str, str]] = {
    "images": ("png", "image/png"),
    "video": ("mp4", "video/mp4"),
    "audio": ("wav", "audio/wav"),
    "3d": ("glb", "model/gltf-binary"),
    "text": ("txt", "text/plain"),
}
"""Each output kind of the endpoint table: the extension and content type served."""


def file_of_kind(kind: str, seed: int) -> bytes:
    """The bytes served for an output of `kind` (`seed` varies the images)."""
    if kind == "video":
        return tiny_mp4()
    if kind == "audio":
        return tiny_wav()
    if kind == "3d":
        return tiny_glb()
    if kind == "text":
        return b"a simulated transcript\n"
    colour = (seed % 200 + 30, seed // 7 % 200 + 30, seed // 49 % 200 + 30)
    return solid_png(64, 64, colour)
