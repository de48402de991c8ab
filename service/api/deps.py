"""Request-scoped dependencies: the app state, the loaded services (503 until they are
ready), and `run_admitted`, the one way a work route runs engine work: it takes an admission
slot (503 + Retry-After when the queue is full) and is cancelled as soon as the client
disconnects (answered 499)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import Response

from service.engine.services import Services
from service.errors import NotReady

if TYPE_CHECKING:
    from service.api.metrics import ServiceMetrics
    from service.config import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a request whose client went away (logged, never sent)."""


@dataclass
class AppState:
    settings: Settings
    metrics: ServiceMetrics
    status: str = "loading"  # loading | ready | stopping | failed
    services: Services | None = None
    error: str | None = field(default=None)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ospo
    return state


def get_services(request: Request) -> Services:
    state = get_state(request)
    if state.services is None or state.status != "ready":
        raise NotReady(f"the service is {state.status}: models and indexes are not loaded yet")
    return state.services


StateDep = Annotated[AppState, Depends(get_state)]
ServicesDep = Annotated[Services, Depends(get_services)]


class ClientGone(Exception):
    """The client disconnected before its work finished; the work was cancelled."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def run_admitted(request: Request, services: Services, work: Callable[[], Awaitable[T]]) -> T:
    """Await `work()` inside an admission slot, cancelling it (queued or running) as soon as
    the client disconnects: ClientGone then."""

    async def admitted() -> T:
        async with services.admission.slot():
            return await work()

    task = asyncio.ensure_future(admitted())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        return task.result()
    task.cancel()
    task.add_done_callback(_consume)
    raise ClientGone()


def client_gone(route: str) -> Response:
    """What a work route returns once its client has gone (logged as 499)."""
    logger.info("%s cancelled: client disconnected", route)
    return Response(status_code=CLIENT_CLOSED_REQUEST)


__all__ = [
    "AppState",
    "ClientGone",
    "ServicesDep",
    "StateDep",
    "client_gone",
    "get_services",
    "get_state",
    "run_admitted",
]
