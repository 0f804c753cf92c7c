"""The simulator serves every endpoint of the table, with outputs of the right kind."""

from __future__ import annotations

import io
import json
import struct
import wave
from pathlib import Path

import httpx
import pytest

from modelslab_fetch import ModelsLab, ThreeDResult, VoiceResult, endpoint_table
from modelslab_fetch.testing import Simulator, SimulatorApp, in_process_client
from modelslab_fetch.testing._fixtures import SimulatorServer
from modelslab_fetch.testing._media import tiny_glb, tiny_mp4, tiny_wav

TABLE = endpoint_table()
MAGIC = {
    "images": b"\x89PNG\r\n\x1a\n",
    "video": b"\x00\x00\x00\x1cftyp",
    "audio": b"RIFF",
    "3d": b"glTF",
    "text": b"a simulated",
}


def at(client: object, dotted: str) -> object:
    for part in dotted.split("."):
        client = getattr(client, part)
    return client


@pytest.mark.parametrize("name", list(TABLE))
async def test_every_endpoint_is_served_with_outputs_of_its_kind(name: str, tmp_path: Path) -> None:
    simulator = Simulator(seed=1)
    app = SimulatorApp(simulator)
    queued = simulator.queue_response(name, ready_in=0.0)
    kind = TABLE[name].output
    async with in_process_client(app) as client:
        result = await at(client, name).wait(queued["id"], timeout=5)  # type: ignore[attr-defined]
        done = await client.wait_for(queued, timeout=5)
        paths = await client.download(done, tmp_path)
    assert type(result) is TABLE[name].result_model
    assert type(done) is TABLE[name].result_model
    assert result.output == done.output
    assert len(paths) == 1
    assert paths[0].read_bytes().startswith(MAGIC[kind])
    if isinstance(done, VoiceResult):
        assert done.audio_time is not None
        assert done.links == done.output
    if isinstance(done, ThreeDResult):
        assert done.extra_assets == []


def test_the_media_files_are_valid_for_their_extension() -> None:
    with wave.open(io.BytesIO(tiny_wav())) as audio:
        assert (audio.getnchannels(), audio.getsampwidth(), audio.getnframes()) == (1, 2, 800)
    glb = tiny_glb()
    magic, version, length, chunk_length, chunk_type = struct.unpack("<4sIII4s", glb[:20])
    assert (magic, version, length, chunk_type) == (b"glTF", 2, len(glb), b"JSON")
    assert json.loads(glb[20 : 20 + chunk_length])["asset"]["version"] == "2.0"
    mp4 = tiny_mp4()
    size = struct.unpack(">I", mp4[:4])[0]
    assert mp4[4:8] == b"ftyp" and mp4[8:12] == b"isom" and mp4[size + 4 : size + 8] == b"mdat"


def test_queue_response_refuses_an_unknown_endpoint() -> None:
    with pytest.raises(ValueError, match="one of: images"):
        Simulator().queue_response("holograms")
    with pytest.raises(ValueError, match="kind must be one of"):
        Simulator().queue(kind="smell")


def test_a_file_of_another_kind_is_not_found() -> None:
    simulator = Simulator()
    app = SimulatorApp(simulator)
    queued = simulator.queue_response("video", ready_in=0)

    async def get(url: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            return await http.get(url)

    import anyio

    wrong = f"http://127.0.0.1/generations/{queued['id']}-0.png"
    right = f"http://127.0.0.1/generations/{queued['id']}-0.mp4"
    assert anyio.run(get, wrong).status_code == 404
    answer = anyio.run(get, right)
    assert (answer.status_code, answer.headers["content-type"]) == (200, "video/mp4")


def test_wait_for_offline_against_the_served_simulator(modelslab_server: SimulatorServer) -> None:
    responses = httpx.post(
        f"{modelslab_server.base_url.removesuffix('/api')}/_simulator/responses",
        json={"endpoint": "voice", "count": 2, "ready_in": [0.1, 0.3]},
    ).json()["responses"]
    queued = modelslab_server.simulator.queue_response("enterprise.three_d", ready_in=0.2)
    assert queued["fetch_result"].startswith(modelslab_server.base_url + "/v1/enterprise/3d/")
    with ModelsLab() as client:  # the environment points at the simulator
        model = client.wait_for(queued, timeout=10)
        voices = list(client.wait_for_many(responses, timeout=10))
    assert isinstance(model, ThreeDResult) and model.output[0].endswith(".glb")
    assert [o.ok for o in voices] == [True, True]
    assert all(isinstance(o.result, VoiceResult) for o in voices)
    bad = httpx.post(
        f"{modelslab_server.base_url.removesuffix('/api')}/_simulator/responses",
        json={"endpoint": "nope"},
    )
    assert bad.status_code == 400


async def test_the_simulator_answers_generation_responses_in_process() -> None:
    app = SimulatorApp(Simulator())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
        answer = await http.post(
            "http://127.0.0.1/_simulator/responses", json={"endpoint": "v7.video_fusion"}
        )
    (queued,) = answer.json()["responses"]
    assert queued["fetch_result"] == f"http://127.0.0.1/api/v7/video-fusion/fetch/{queued['id']}"
