"""The simulator, driven through the SDK in-process (httpx.ASGITransport, no socket); and
what its routes accept, tested against `modelslab-fetch simulate` served for real."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelslab_fetch import (
    AsyncModelsLab,
    AuthenticationError,
    GenerationFailedError,
    Status,
)
from modelslab_fetch.testing import Faults, Simulator, SimulatorApp, in_process_client
from tests.conftest import API_KEY, FakeClock

BASE = "http://127.0.0.1/api"


@asynccontextmanager
async def wire(app: SimulatorApp) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client into `app`: what the simulator sends, byte for byte."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


@pytest.fixture
def simulator(clock: FakeClock) -> Simulator:
    return Simulator(seed=3, clock=clock.now)


@pytest.fixture
async def sim_client(simulator: Simulator, clock: FakeClock) -> AsyncIterator[AsyncModelsLab]:
    transport = httpx.ASGITransport(app=SimulatorApp(simulator))
    async with (
        httpx.AsyncClient(transport=transport) as http_client,
        AsyncModelsLab(
            api_key=API_KEY, base_url=BASE, http_client=http_client, clock=clock
        ) as client,
    ):
        yield client


async def test_a_job_is_processing_until_ready_then_succeeds(
    simulator: Simulator, sim_client: AsyncModelsLab, clock: FakeClock
) -> None:
    rid = simulator.queue(ready_in=5.0, images=2)
    first = await sim_client.images.fetch(rid)
    assert first.status is Status.PROCESSING
    assert first.eta is not None and 3.0 <= first.eta <= 7.0
    assert first.message == "Try to fetch request after seconds estimated"
    assert len(first.future_links) == 2
    done = await sim_client.images.wait(rid)
    assert done.succeeded
    assert done.id == rid
    assert done.output == first.future_links
    assert clock.elapsed >= 5.0
    assert simulator.jobs[rid].polls >= 2


async def test_many_jobs_with_failures(simulator: Simulator, sim_client: AsyncModelsLab) -> None:
    ids = simulator.queue_many(60, ready_in=(1, 8), failure_rate=0.2)
    outcomes = [o async for o in sim_client.images.wait_many(ids)]
    assert sorted(o.request_id for o in outcomes) == sorted(ids)
    failed = [o for o in outcomes if not o.ok]
    assert failed
    assert all(isinstance(o.error, GenerationFailedError) for o in failed)
    assert {simulator.jobs[o.request_id].final for o in failed} <= {"failed", "error"}
    assert sum(simulator.polls().values()) / len(ids) < 5


async def test_wrong_key_is_an_http_200_invalid_key_body(
    clock: FakeClock,
) -> None:
    app = SimulatorApp(Simulator(api_key="the-right-key", clock=clock.now))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http_client:
        client = AsyncModelsLab(api_key="wrong", base_url=BASE, http_client=http_client)
        with pytest.raises(AuthenticationError, match="Invalid Api Key"):
            await client.images.fetch(1)


async def test_unknown_ids_are_not_found_unless_auto_ready(
    simulator: Simulator, sim_client: AsyncModelsLab
) -> None:
    # As ModelsLab answers an id it does not know: a `failed` status, though no
    # generation failed, with an empty id and output.
    async with wire(SimulatorApp(simulator)) as http:
        answer = await http.post("/api/v6/images/fetch", json={"key": "k", "request_id": 424242})
        by_path = await http.post("/api/v1/enterprise/super_resolution/fetch/9", json={"key": "k"})
    for response in (answer, by_path):
        assert response.status_code == 200
        assert response.json() == {
            "status": "failed",
            "id": "",
            "message": "Request not found",
            "output": "",
        }
    simulator.auto_ready = True
    assert (await sim_client.images.fetch(424242)).succeeded


async def test_super_resolution_route(simulator: Simulator, sim_client: AsyncModelsLab) -> None:
    rid = simulator.queue(ready_in=0.0)
    assert (await sim_client.enterprise.super_resolution.fetch(rid)).succeeded


async def test_control_routes_and_http_errors(simulator: Simulator) -> None:
    transport = httpx.ASGITransport(app=SimulatorApp(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        queued = (await http.post("/_simulator/jobs", json={"count": 3, "ready_in": [1, 2]})).json()
        assert len(queued["ids"]) == 3
        assert set(queued["ready_at"]) == set(queued["ids"])
        rid = queued["ids"][0]
        compat = await http.post(f"/api/v6/images/fetch/{rid}", json={"key": "k"})
        assert compat.json()["status"] == "processing"
        stats = (await http.get("/_simulator/stats")).json()
        assert stats[rid]["polls"] == 1
        assert (await http.get("/api/v6/images/fetch")).status_code == 405
        assert (await http.post("/nowhere")).status_code == 404
        bad = await http.post("/api/v6/images/fetch", content=b"{not json")
        assert bad.status_code == 400
        missing = await http.post("/api/v6/images/fetch", json={"key": "k"})
        assert missing.json()["message"] == {"request_id": ["required"]}


@pytest.mark.parametrize("final", ["failed", "error"])
async def test_final_failures(final: str, simulator: Simulator, sim_client: AsyncModelsLab) -> None:
    rid = simulator.queue(final=final)  # type: ignore[arg-type]
    with pytest.raises(GenerationFailedError):
        await sim_client.images.wait(rid)
    assert "Simulator(jobs=1" in repr(simulator)


def test_fault_plans_are_deterministic_for_a_seed() -> None:
    from modelslab_fetch.testing._faults import FaultPlan

    faults = Faults(error_rate=0.2, edge_page_rate=0.2, rate_limit_every=7, rate_limit_burst=2)
    plans = [FaultPlan(faults, seed=5), FaultPlan(faults, seed=5)]
    runs = [[plan.next() for _ in range(50)] for plan in plans]
    statuses = [[None if f is None else f.status for _, f in run] for run in runs]
    assert statuses[0] == statuses[1]
    assert {429, 500, 502, 503} & set(statuses[0])
    assert statuses[0][6:8] == [429, 429]  # the 7th and 8th fetch: a burst of two


async def test_the_sdk_survives_every_kind_of_fault(clock: FakeClock) -> None:
    simulator = Simulator(seed=1, clock=clock.now)
    faults = Faults(error_rate=0.15, edge_page_rate=0.15, rate_limit_every=9, retry_after=0.5)
    app = SimulatorApp(simulator, faults=faults, seed=1)
    ids = simulator.queue_many(40, ready_in=(0.5, 5))
    async with in_process_client(app, clock=clock) as client:
        outcomes = [o async for o in client.images.wait_many(ids)]
    assert sorted(o.request_id for o in outcomes) == sorted(ids)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert set(app.faults.injected) >= {429, 500}
    assert any(status in app.faults.injected for status in (520, 521, 522, 523, 524))


async def test_images_are_valid_pngs_and_only_for_successes(simulator: Simulator) -> None:
    import struct
    import zlib

    ok = simulator.queue(images=2)
    failed = simulator.queue(final="failed")
    transport = httpx.ASGITransport(app=SimulatorApp(simulator))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        png = (await http.get(f"/generations/{ok}-1.png")).content
        assert (await http.get(f"/generations/{ok}-2.png")).status_code == 404
        assert (await http.get(f"/generations/{failed}-0.png")).status_code == 404
        assert (await http.get("/generations/nope-0.png")).status_code == 404
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (64, 64)
    position = 8
    kinds = []
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        data = png[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", png[position + 8 + length : position + 12 + length])
        assert zlib.crc32(kind + data) & 0xFFFFFFFF == crc
        kinds.append(kind)
        position += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    raw = zlib.decompress(b"".join([]) or png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8])
    assert len(raw) == 64 * (1 + 64 * 3)


# ModelsLab's own ways of saying no, and its odd shapes: the wire form of each.

QUEUE_LIMIT_MESSAGE = "Rate limit exceeded. Maximum 5 queued requests allowed."


async def fetch_once(app: SimulatorApp, request_id: str = "1") -> httpx.Response:
    async with wire(app) as http:
        return await http.post("/api/v6/images/fetch", json={"key": "k", "request_id": request_id})


async def test_a_queue_limit_429_names_its_wait_in_the_body_only(simulator: Simulator) -> None:
    app = SimulatorApp(simulator, faults=Faults(queue_limit_rate=1.0, queue_limit_wait=2))
    response = await fetch_once(app)
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    assert "retry-after" not in response.headers
    assert "x-ratelimit-reset" not in response.headers
    assert response.json() == {"status": "error", "message": QUEUE_LIMIT_MESSAGE, "retry_after": 2}
    assert response.content.endswith(b'"retry_after": 2}')  # an integer, as documented
    assert app.faults.kinds == {"queue limit": 1}
    assert app.faults.injected == {429: 1}
    assert simulator.polls() == {}  # the fetch never reached the queue


async def test_a_queue_limit_names_the_plans_queue_size_and_fractional_waits(
    simulator: Simulator,
) -> None:
    faults = Faults(queue_limit_rate=1.0, queue_limit=15, queue_limit_wait=0.25)
    body = (await fetch_once(SimulatorApp(simulator, faults=faults))).json()
    assert body["message"] == "Rate limit exceeded. Maximum 15 queued requests allowed."
    assert body["retry_after"] == 0.25


@pytest.mark.parametrize(
    ("wait_in", "in_body", "in_header"),
    [("reset_header", False, True), ("both", True, True)],
)
async def test_a_queue_limit_can_name_its_wait_as_an_x_ratelimit_reset_epoch(
    wait_in: str, in_body: bool, in_header: bool, simulator: Simulator
) -> None:
    import math
    import time

    faults = Faults(queue_limit_rate=1.0, queue_limit_wait=30, queue_limit_wait_in=wait_in)  # type: ignore[arg-type]
    before = time.time()
    response = await fetch_once(SimulatorApp(simulator, faults=faults))
    after = time.time()
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    reset = int(response.headers["x-ratelimit-reset"])
    # An absolute epoch second, rounded up so the reset never comes before the wait.
    assert math.ceil(before + 30) <= reset <= math.ceil(after + 30)
    assert ("retry_after" in response.json()) is in_body
    assert response.json()["message"] == QUEUE_LIMIT_MESSAGE


def test_mixed_queue_limits_use_every_form_in_a_repeatable_order() -> None:
    from modelslab_fetch.testing._faults import FaultPlan

    faults = Faults(queue_limit_rate=1.0, queue_limit_wait_in="mixed")

    def forms(seed: int) -> list[tuple[bool, bool]]:
        plan = FaultPlan(faults, seed=seed)
        seen = []
        for _ in range(40):
            _, fault = plan.next()
            assert fault is not None and fault.status == 429
            assert all(name != "retry-after" for name, _ in fault.headers)
            seen.append((b"retry_after" in fault.body, bool(fault.headers)))
        return seen

    assert forms(4) == forms(4)
    assert forms(4) != forms(5)
    assert set(forms(4)) == {(True, False), (False, True), (True, True)}


async def test_the_spam_filter_answers_http_200_with_tips_and_sometimes_messege(
    simulator: Simulator,
) -> None:
    app = SimulatorApp(simulator, faults=Faults(spam_filter_rate=1.0, spam_filter_wait=30), seed=2)
    async with wire(app) as http:
        responses = [
            await http.post("/api/v6/images/fetch", json={"key": "k", "request_id": "1"})
            for _ in range(30)
        ]
    spellings = set()
    for response in responses:
        assert response.status_code == 200
        assert "retry-after" not in response.headers
        body = response.json()
        (spelling,) = set(body) - {"status", "tips"}
        spellings.add(spelling)
        assert body == {
            "status": "error",
            spelling: "Rate limit exceeded",
            "tips": "Rate limit exceeded, please wait for 30 seconds and try again",
        }
    assert spellings == {"message", "messege"}
    assert app.faults.kinds == {"spam filter": 30}
    assert app.faults.injected == {200: 30}


@pytest.mark.parametrize(
    ("account_error", "status", "body", "kind"),
    [
        (
            "no_credits",
            402,
            {
                "status": "error",
                "message": "Insufficient credits. Please add more credits to continue.",
            },
            "no credits",
        ),
        (
            "plan",
            403,
            {"status": "error", "message": "This feature requires a premium subscription"},
            "plan",
        ),
        ("bad_key", 401, {"status": "error", "message": "Invalid API key"}, "bad key"),
        (
            "bad_key_legacy",
            200,
            {"status": "error", "message": "Invalid Api Key"},
            "bad key (HTTP 200)",
        ),
    ],
)
async def test_account_errors_refuse_every_fetch_after_the_first_n(
    account_error: str, status: int, body: dict[str, str], kind: str, simulator: Simulator
) -> None:
    rid = simulator.queue(ready_in=5.0)
    faults = Faults(account_error=account_error, account_error_after=2)  # type: ignore[arg-type]
    app = SimulatorApp(simulator, faults=faults)
    async with wire(app) as http:
        responses = [
            await http.post(f"/api/v6/images/fetch/{rid}", json={"key": "k"}) for _ in range(5)
        ]
        # Only the fetch routes are refused: the control API and the images still work.
        queued = await http.post("/_simulator/jobs", json={"count": 1, "ready_in": [0, 0]})
        assert queued.status_code == 200
        assert (await http.get("/_simulator/stats")).json()[rid]["polls"] == 2
    assert [r.json()["status"] for r in responses[:2]] == ["processing", "processing"]
    for response in responses[2:]:
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json"
        assert response.json() == body
    assert app.faults.kinds == {kind: 3}


async def test_a_wrong_key_can_be_refused_with_the_documented_401(clock: FakeClock) -> None:
    simulator = Simulator(api_key="right", invalid_key_status=401, clock=clock.now)
    rid = simulator.queue()
    async with wire(SimulatorApp(simulator)) as http:
        wrong = await http.post(f"/api/v6/images/fetch/{rid}", json={"key": "wrong"})
        right = await http.post(f"/api/v6/images/fetch/{rid}", json={"key": "right"})
    assert wrong.status_code == 401
    assert wrong.json() == {"status": "error", "message": "Invalid API key"}
    assert right.json()["status"] == "success"
    assert Simulator(api_key="right").answer("1", "wrong") == (
        200,
        {"status": "error", "message": "Invalid Api Key"},
    )
    with pytest.raises(ValueError, match="200 or 401"):
        Simulator(invalid_key_status=403)  # type: ignore[arg-type]


def test_new_faults_are_deterministic_for_a_seed_and_near_their_rates() -> None:
    from modelslab_fetch.testing._faults import FaultPlan

    faults = Faults(queue_limit_rate=0.2, spam_filter_rate=0.1, error_rate=0.1)

    def kinds(seed: int) -> list[str | None]:
        plan = FaultPlan(faults, seed=seed)
        return [None if f is None else f.kind for _, f in (plan.next() for _ in range(1000))]

    first = kinds(11)
    assert first == kinds(11)
    assert first != kinds(12)
    assert 150 <= first.count("queue limit") <= 250
    assert 60 <= first.count("spam filter") <= 140
    assert 60 <= first.count("5xx") <= 140


def test_odd_shapes_leave_which_fetch_meets_which_fault_unchanged() -> None:
    from modelslab_fetch.testing._faults import FaultPlan

    base = Faults(error_rate=0.3, queue_limit_rate=0.2)
    plain = FaultPlan(base, seed=3)
    shaped = FaultPlan(Faults(error_rate=0.3, queue_limit_rate=0.2, odd_shape_rate=1.0), seed=3)
    body = {"status": "processing", "id": 7, "output": [], "eta": 3.0, "future_links": ["u"]}
    for _ in range(50):
        shaped.reshape(body)
    assert [plain.next() for _ in range(50)] == [shaped.next() for _ in range(50)]


async def odd_answers(seed: int, clock: FakeClock) -> tuple[list[dict[str, Any]], SimulatorApp]:
    simulator = Simulator(seed=seed, clock=clock.now)
    app = SimulatorApp(simulator, faults=Faults(odd_shape_rate=1.0), seed=seed)
    ids = [simulator.queue(ready_in=1.0, images=1 + n % 2) for n in range(20)]
    ids += [simulator.queue(final="failed") for _ in range(5)]
    answers = []
    async with wire(app) as http:
        for moment in (0, 2):  # everyone processing, then everyone finished
            clock.time += moment
            for rid in ids:
                response = await http.post(f"/api/v6/images/fetch/{rid}", json={"key": "k"})
                assert response.status_code == 200
                answers.append(response.json())
    return answers, app


async def test_odd_shapes_vary_every_real_answer_and_stay_valid(clock: FakeClock) -> None:
    answers, app = await odd_answers(6, clock)
    assert app.faults.kinds == {"odd shape": len(answers)}
    seen: set[str] = set()
    async with wire(app) as http:
        for body in answers:
            status = body["status"]
            assert status in ("success", "processing", "failed")
            if status == "processing":
                assert body["output"] in ([], "")
                assert body["future_links"] is None or isinstance(body["future_links"], list)
                assert float(body["eta"]) >= 0
                assert str(body["id"]).isdigit()
                seen.add("processing output ''" if body["output"] == "" else "")
                seen.add("future_links null" if body["future_links"] is None else "")
                seen.add("eta text" if isinstance(body["eta"], str) else "")
            elif status == "failed":
                assert body["id"] == "" or str(body["id"]).isdigit()
                assert body["output"] in ([], "")
                seen.add("failed id ''" if body["id"] == "" else "")
            else:
                output, proxies = body["output"], body["proxy_links"]
                urls = [output] if isinstance(output, str) else output
                if isinstance(output, str):
                    seen.add("one URL output")
                if isinstance(proxies, dict):
                    seen.add("indexed proxy_links")
                    assert list(proxies) == [str(n) for n in range(len(proxies))]
                    urls += list(proxies.values())
                elif proxies is None:
                    seen.add("proxy_links null")
                # Whatever the shape, every URL is one the simulator serves.
                for url in urls:
                    image = await http.get(httpx.URL(url).path)
                    assert image.status_code == 200
                    assert image.content.startswith(b"\x89PNG")
            if isinstance(body["id"], str) and body["id"].isdigit():
                seen.add("numeric string id")
            if "tip_1" in body:
                assert isinstance(body["webhook_status"], str)
                assert body["fetch_result"].endswith("/api/v6/images/fetch/" + str(body["id"])) or (
                    body["id"] == ""
                )
                seen.add("extra fields")
    assert seen - {""} == {
        "processing output ''",
        "future_links null",
        "eta text",
        "failed id ''",
        "one URL output",
        "indexed proxy_links",
        "proxy_links null",
        "numeric string id",
        "extra fields",
    }


async def test_odd_shapes_are_deterministic_for_a_seed() -> None:
    first, _ = await odd_answers(9, FakeClock())
    again, _ = await odd_answers(9, FakeClock())
    other, _ = await odd_answers(10, FakeClock())
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"queue_limit_rate": 1.5}, "queue_limit_rate is a share of fetches, from 0 to 1"),
        ({"odd_shape_rate": -0.1}, "odd_shape_rate is a share"),
        ({"spam_filter_wait": -1}, "spam_filter_wait cannot be negative"),
        ({"account_error": "broke"}, "account_error must be one of"),
        ({"queue_limit_wait_in": "footer"}, "queue_limit_wait_in must be one of"),
    ],
)
def test_faults_refuse_impossible_settings(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Faults(**changes)


# The same faults from the command line.


def simulate_args(*argv: str) -> Any:
    from modelslab_fetch.cli import _parser

    return _parser().parse_args(["simulate", *argv])


def test_simulate_options_become_faults() -> None:
    from modelslab_fetch.cli._demo import simulate_faults

    faults = simulate_faults(
        simulate_args(
            "--queue-limit-rate=0.1",
            "--queue-limit-wait=3",
            "--queue-limit-wait-in=reset-header",
            "--spam-filter-rate=0.2",
            "--account-error=no-credits",
            "--account-error-after=4",
            "--odd-shapes",
        )
    )
    assert (faults.queue_limit_rate, faults.queue_limit_wait) == (0.1, 3.0)
    assert faults.queue_limit_wait_in == "reset_header"
    assert faults.spam_filter_rate == 0.2
    assert (faults.account_error, faults.account_error_after) == ("no_credits", 4)
    assert faults.odd_shape_rate == 1.0
    default = simulate_faults(simulate_args())
    assert default == Faults()
    assert simulate_faults(simulate_args("--odd-shapes", "0.3")).odd_shape_rate == 0.3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--queue-limit-rate", "1.5"], "--queue-limit-rate is a share of fetches from 0 to 1"),
        (["--spam-filter-rate", "-0.1"], "--spam-filter-rate is a share"),
        (["--odd-shapes", "2"], "--odd-shapes is a share"),
        (["--error-rate", "0.6", "--queue-limit-rate", "0.6"], "add up to 1.2"),
        (["--queue-limit-wait", "-1"], "--queue-limit-wait cannot be negative"),
        (["--account-error-after", "-3"], "--account-error-after cannot be negative"),
    ],
)
def test_simulate_refuses_impossible_options_before_serving(argv: list[str], message: str) -> None:
    import io

    from modelslab_fetch.cli import main
    from modelslab_fetch.cli._commands import Streams

    out, err = io.StringIO(), io.StringIO()
    assert main(["simulate", *argv], streams=Streams(out=out, err=err)) == 2
    assert message in err.getvalue()
    assert err.getvalue().startswith("modelslab-fetch simulate: error: ")
    assert out.getvalue() == ""


def test_simulate_serves_the_new_faults_on_loopback() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.loopback import free_port

    port = free_port()
    argv = [sys.executable, "-m", "modelslab_fetch", "simulate", "--port", str(port)]
    argv += ["--jobs", "1", "--account-error", "no-credits", "--account-error-after", "1"]
    argv += ["--odd-shapes", "--seed", "4"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as process:
        try:
            assert process.stdout is not None
            rid = process.stdout.readline().strip()
            url = f"http://127.0.0.1:{port}/api/v6/images/fetch/{rid}"
            deadline = time.monotonic() + 10
            while True:
                try:
                    first = httpx.post(url, json={"key": "k"}, timeout=5)
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "the simulator did not start"
                    time.sleep(0.05)
            second = httpx.post(url, json={"key": "k"}, timeout=5)
            faults = httpx.get(f"http://127.0.0.1:{port}/_simulator/faults", timeout=5).json()
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(10)
    assert first.status_code == 200
    assert first.json()["status"] == "processing"
    assert second.status_code == 402
    assert second.json() == {
        "status": "error",
        "message": "Insufficient credits. Please add more credits to continue.",
    }
    assert faults == {"kinds": {"odd shape": 1, "no credits": 1}, "injected": {"402": 1}}


def etas_of(simulator: Simulator, rid: str, clock: FakeClock, times: list[float]) -> list[float]:
    """The factor each answer's eta is off by, fetching `rid` at each of `times`."""
    factors = []
    for at in times:
        clock.time = clock.start + at
        body = simulator.fetch(rid, "k")
        factors.append(float(body["eta"]) / (simulator.jobs[rid].ready_at - clock.now()))
    return factors


def test_per_job_eta_errors_keep_one_factor_for_every_answer(clock: FakeClock) -> None:
    simulator = Simulator(seed=3, clock=clock.now, eta_error_model="per_job")
    for rid in simulator.queue_many(20, ready_in=(50, 60)):
        factors = etas_of(simulator, rid, clock, [0.0, 10.0, 20.0, 30.0])
        assert max(factors) - min(factors) < 0.01  # rounding to 0.01 s only
        assert 0.6 - 0.01 <= factors[0] <= 1.4 + 0.01
        clock.time = clock.start


def test_per_answer_eta_errors_are_drawn_afresh(clock: FakeClock) -> None:
    simulator = Simulator(seed=3, clock=clock.now)
    assert simulator.eta_error_model == "per_answer"
    rid = simulator.queue(ready_in=60)
    factors = etas_of(simulator, rid, clock, [0.0, 10.0, 20.0, 30.0])
    assert max(factors) - min(factors) > 0.05
    assert all(0.6 - 0.01 <= f <= 1.4 + 0.01 for f in factors)


def test_one_job_can_override_the_error_model(clock: FakeClock) -> None:
    simulator = Simulator(seed=3, clock=clock.now)
    rid = simulator.queue(ready_in=60, eta_error_model="per_job")
    factors = etas_of(simulator, rid, clock, [0.0, 10.0, 20.0])
    assert max(factors) - min(factors) < 0.01


def test_an_unknown_error_model_is_refused() -> None:
    with pytest.raises(ValueError, match="per_answer"):
        Simulator(eta_error_model="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_job"):
        Simulator().queue(eta_error_model="always")  # type: ignore[arg-type]


async def test_the_control_api_queues_jobs_with_a_per_job_bias(clock: FakeClock) -> None:
    simulator = Simulator(seed=3, clock=clock.now)
    async with wire(SimulatorApp(simulator)) as http:
        queued = await http.post(
            "/_simulator/jobs",
            json={"count": 3, "ready_in": [5, 6], "eta_error_model": "per_job"},
        )
    ids = queued.json()["ids"]
    assert all(simulator.jobs[rid].eta_bias is not None for rid in ids)


def test_the_simulate_command_takes_the_error_model() -> None:
    import argparse

    from modelslab_fetch.cli._demo import add_simulate_options

    parser = argparse.ArgumentParser()
    add_simulate_options(parser)
    assert parser.parse_args([]).eta_error_model == "per_answer"
    assert parser.parse_args(["--eta-error-model", "per_job"]).eta_error_model == "per_job"
    with pytest.raises(SystemExit):
        parser.parse_args(["--eta-error-model", "often"])


# --- what the routes accept, served for real --------------------------------------------


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid`, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")  # pragma: no cover - not Linux


REFUSED_CONTROL_BODIES = [
    # (route, body, status, words): each refused at once, with what to do instead.
    ("jobs", {"count": 200_000}, 413, "more than one request may queue (10000)"),
    ("jobs", {"count": 10_001}, 413, "send several requests"),
    ("jobs", {"count": "9"}, 400, "count must be a whole number"),
    ("jobs", {"count": 2.5}, 400, "count must be a whole number"),
    ("jobs", {"count": -1}, 400, "count cannot be negative"),
    ("jobs", {"count": True}, 400, "count must be a whole number"),
    ("jobs", {"ready_in": [0, 1e300]}, 400, "ready_in must be [low, high]"),
    ("jobs", {"ready_in": [5, 1]}, 400, "ready_in must be [low, high]"),
    ("jobs", {"ready_in": 3}, 400, "ready_in must be [low, high]"),
    ("jobs", {"ready_in": ["a", 1]}, 400, "ready_in must be a number"),
    ("jobs", {"failure_rate": 2}, 400, "failure_rate is a share from 0 to 1"),
    ("jobs", {"eta_error_model": "always"}, 400, "eta_error_model must be one of"),
    ("responses", {"count": 200_000}, 413, "more than one request may queue"),
    ("responses", {"endpoint": "holograms"}, 400, "endpoint must name an endpoint"),
    ("responses", {"endpoint": ["video"]}, 400, "endpoint must name an endpoint"),
]

RAW_BODIES = [
    # (route, raw body, status, words)
    ("jobs", b"not json", 400, "not JSON"),
    ("jobs", b"[1, 2]", 400, "must be a JSON object"),
    ("jobs", b'{"count": 1e400}', 400, "count must be a whole number"),
    ("jobs", b'{"ready_in": [0, NaN]}', 400, "ready_in must be a finite number"),
    ("jobs", b'{"ready_in": [0, Infinity]}', 400, "ready_in must be a finite number"),
    ("jobs", b"[" * 100_000 + b"]" * 100_000, 413, "larger than 65536 bytes"),
    ("jobs", b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested more than 64"),
    ("responses", b" " * (2**20), 413, "larger than 65536 bytes"),
]


def test_the_served_simulator_refuses_what_it_cannot_take_at_once_and_stays_small() -> None:
    from tests.cli_support import simulate_command

    with simulate_command() as (root, process), httpx.Client(base_url=root, timeout=5) as http:
        before = rss_mb(process.pid)
        for route, body, status, words in REFUSED_CONTROL_BODIES:
            started = time.monotonic()
            answer = http.post(f"/_simulator/{route}", json=body)
            assert time.monotonic() - started < 0.5, (route, body)
            assert answer.status_code == status, (route, body, answer.text)
            assert words in answer.json()["message"], (route, body, answer.text)
        for route, raw, status, words in RAW_BODIES:
            answer = http.post(f"/_simulator/{route}", content=raw)
            assert answer.status_code == status, (route, raw[:40], answer.text)
            assert words in answer.json()["message"], (route, raw[:40], answer.text)
        grown = rss_mb(process.pid) - before
        assert grown < 20, f"the simulator grew by {grown:.0f} MB"
        # It still does its job, and the bounds are not in the way of ordinary use.
        queued = http.post("/_simulator/jobs", json={"count": 3, "ready_in": [0, 0]}).json()
        assert len(queued["ids"]) == 3
        fetched = http.post(f"/api/v6/images/fetch/{queued['ids'][0]}", json={"key": "k"})
        assert fetched.json()["status"] == "success"


def test_the_served_simulator_bounds_its_fetch_and_file_routes() -> None:
    from tests.cli_support import simulate_command

    with simulate_command() as (root, _process), httpx.Client(base_url=root, timeout=5) as http:
        huge = http.post("/api/v6/images/fetch", json={"key": "k", "request_id": "1" * 100_000})
        assert huge.status_code == 413
        long_id = http.post("/api/v6/images/fetch", json={"key": "k", "request_id": "1" * 300})
        assert long_id.json()["message"] == "Request not found"
        deep = http.post("/api/v6/images/fetch", content=b"[" * 5000 + b"]" * 5000)
        assert deep.status_code == 400
        assert http.get("/generations/13443927-" + "9" * 5000 + ".png").status_code == 404
        assert http.get("/generations/13443927-0.png").status_code in (200, 404)


async def test_the_same_bounds_hold_in_process() -> None:
    # The served test above meets the bounds over a socket; the same app in-process
    # (httpx.ASGITransport, as in_process_client) gives the same answers.
    async with wire(SimulatorApp(Simulator(seed=1))) as http:
        for route, body, status, words in REFUSED_CONTROL_BODIES:
            answer = await http.post(f"/_simulator/{route}", json=body)
            assert (answer.status_code, words in answer.json()["message"]) == (status, True)
        for route, raw, status, words in RAW_BODIES:
            answer = await http.post(f"/_simulator/{route}", content=raw)
            assert (answer.status_code, words in answer.json()["message"]) == (status, True)


async def test_the_jobs_a_simulator_holds_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelslab_fetch.testing import _limits

    monkeypatch.setattr(_limits, "MAX_JOBS_HELD", 10)
    simulator = Simulator(seed=1)
    async with wire(SimulatorApp(simulator)) as http:
        assert (await http.post("/_simulator/jobs", json={"count": 8})).status_code == 200
        refused = await http.post("/_simulator/responses", json={"count": 3})
        assert refused.status_code == 413
        assert "holds 8 jobs and keeps at most 10" in refused.json()["message"]
    assert len(simulator.jobs) == 8  # all or nothing: none of the three was made


def run_simulate_in_process(monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str]:
    """`modelslab-fetch simulate ARGV` with the serving itself left out: what it says first."""
    import io

    from modelslab_fetch.cli import _demo, main
    from modelslab_fetch.cli._commands import Streams

    def serve(app: SimulatorApp, **options: Any) -> None:
        options["before_serving"]()

    monkeypatch.setattr(_demo, "run_simulator", serve)
    monkeypatch.setattr(_demo, "_check_address", lambda host, port: None)  # binds nothing
    err = io.StringIO()
    code = main(["simulate", *argv], streams=Streams(out=io.StringIO(), err=err))
    return code, err.getvalue()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.internal"])  # noqa: S104
def test_simulate_warns_when_it_listens_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    code, err = run_simulate_in_process(monkeypatch, "--host", host)
    assert code == 0
    first = err.splitlines()[0]
    assert first.startswith(f"warning: --host {host} is not a loopback address")
    assert "test server that accepts any key" in first


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_simulate_on_loopback_gives_no_warning(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    code, err = run_simulate_in_process(monkeypatch, "--host", host)
    assert code == 0
    assert "warning" not in err
    assert "13443927" in err  # the docs' example jobs are named


# --- the simulator's server comes with the package ---------------------------------------


def test_a_plain_install_brings_the_simulators_server() -> None:
    from importlib.metadata import metadata, requires

    plain = [r for r in requires("modelslab-fetch") or [] if "extra ==" not in r]
    assert any(r.startswith("uvicorn") for r in plain), plain
    # The old install line keeps working: the extra still exists (and adds nothing).
    assert "simulator" in (metadata("modelslab-fetch").get_all("Provides-Extra") or [])


WITHOUT_UVICORN = (
    "import sys; sys.modules['uvicorn'] = None; "  # import uvicorn now fails, as if missing
    "from modelslab_fetch.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize("argv", [["demo", "--jobs", "3"], ["simulate", "--port", "0"]])
def test_without_uvicorn_the_commands_say_what_to_install(argv: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.cli_support import env_for
    from tests.loopback import free_port

    if argv[0] == "simulate":
        argv = ["simulate", "--port", str(free_port())]
    else:
        argv = [*argv, "--dir", str(tmp_path / "demo")]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_UVICORN, *argv],
        env=env_for(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "unexpected error" not in done.stderr
    assert "Traceback" not in done.stderr
    assert f"modelslab-fetch {argv[0]}: error: " in done.stderr
    assert "needs uvicorn" in done.stderr and "pip install uvicorn" in done.stderr
    assert "ModelsLab simulator on" not in done.stderr  # no banner for a server that cannot run


def test_without_uvicorn_the_fixture_says_what_to_install(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import sys\n\nsys.modules['uvicorn'] = None\n")
    pytester.makepyfile(test_user="def test_it(modelslab_server):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ConfigurationError*needs uvicorn*pip install uvicorn*"])
