"""ospo trainer client: typed HTTP clients for the OSPO attribution service and token offsets
for a trainer's own tokens (this namespace); the adapter core every trainer adapter shares
(``trainer_client.adapter``); and the trainer adapters built on it, each importing its trainer
only when used: OpenRLHF (``trainer_client.openrlhf``), TRL (``trainer_client.trl``) and verl
(``trainer_client.verl``, loaded by verl's plug-in entry point).

Depends on httpx only; never imports the service. How to train with it: docs/TRAINERS.md.
"""

from __future__ import annotations

from ._client import (
    DEFAULT_MAX_GROUPS_PER_REQUEST,
    DEFAULT_TIMEOUT,
    AsyncAttributionClient,
    AttributionClient,
    RetryPolicy,
)
from ._exceptions import (
    AuthenticationError,
    ClientRequestError,
    ConnectError,
    ConnectTimeout,
    NetworkError,
    OspoClientError,
    PoolTimeout,
    ReadTimeout,
    ResponseFormatError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    WriteTimeout,
)
from ._types import (
    UNSET,
    AttributeResult,
    Coalition,
    Group,
    GroupResult,
    ModelInfo,
    Options,
    Readiness,
    Response,
    ResponseResult,
    RetrieverInfo,
    RewardResult,
    SearchHit,
    Segment,
    Stats,
    Target,
    UnsetType,
)
from .offsets import TokenOffsets, token_offsets

__all__ = [
    "AsyncAttributionClient",
    "AttributeResult",
    "AttributionClient",
    "AuthenticationError",
    "ClientRequestError",
    "Coalition",
    "ConnectError",
    "ConnectTimeout",
    "DEFAULT_MAX_GROUPS_PER_REQUEST",
    "DEFAULT_TIMEOUT",
    "Group",
    "GroupResult",
    "ModelInfo",
    "NetworkError",
    "Options",
    "OspoClientError",
    "PoolTimeout",
    "ReadTimeout",
    "Readiness",
    "Response",
    "ResponseFormatError",
    "ResponseResult",
    "RetrieverInfo",
    "RetryPolicy",
    "RewardResult",
    "SearchHit",
    "Segment",
    "ServerError",
    "ServiceUnavailable",
    "Stats",
    "Target",
    "TokenOffsets",
    "TransportError",
    "UNSET",
    "UnsetType",
    "WriteTimeout",
    "token_offsets",
]
