"""service/api/deps.py, run_admitted: work of a client that disconnects is cancelled, work of a
connected client completes, and past the admission queue the app answers 503 with
Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from service.api.deps import ClientGone, run_admitted
from service.engine import Admission


class FakeServices:
    """The one part of the services run_admitted uses: admission."""

    def __init__(self) -> None:
        self.admission = Admission(1, 1)


def run_while_connected(request, work):
    return run_admitted(request, FakeServices(), lambda: work)  # type: ignore[arg-type]


class FakeRequest:
    def __init__(self, disconnect_after: float | None) -> None:
        self.disconnect_after = disconnect_after

    async def receive(self) -> dict:
        if self.disconnect_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.disconnect_after)
        return {"type": "http.disconnect"}


def test_disconnect_cancels_pending_work():
    state = {"cancelled": False, "finished": False}

    async def work() -> str:
        try:
            await asyncio.sleep(5)
            state["finished"] = True
            return "done"
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    async def main() -> None:
        with pytest.raises(ClientGone):
            await run_while_connected(FakeRequest(0.01), work())  # type: ignore[arg-type]
        await asyncio.sleep(0.01)

    asyncio.run(main())
    assert state == {"cancelled": True, "finished": False}


def test_connected_client_gets_the_result_and_errors_unwrapped():
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def failing() -> str:
        raise ValueError("bad input")

    async def main() -> None:
        assert await run_while_connected(FakeRequest(None), work()) == "done"  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="bad input"):
            await run_while_connected(FakeRequest(None), failing())  # type: ignore[arg-type]

    asyncio.run(main())


def test_overloaded_queue_answers_503_with_retry_after(make_client):
    client = make_client(max_inflight=1, max_queue=0)
    admission = client.app.state.ospo.services.admission
    payload = {"groups": [{"target": {"query_id": "demo-0000"}, "responses": [{"text": "lamp"}]}]}

    async def occupy() -> None:
        await admission._slots.acquire()

    async def release() -> None:
        admission._slots.release()

    # Hold the only work slot from the app's own event loop, then call from this thread.
    client.portal.call(occupy)
    try:
        response = client.post("/attribute", json=payload)
    finally:
        client.portal.call(release)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "overloaded"
    assert "max_queue=0" in response.json()["error"]["message"]
    assert client.post("/attribute", json=payload).status_code == 200
    assert "ospo_queue_depth 0.0" in client.get("/metrics").text
