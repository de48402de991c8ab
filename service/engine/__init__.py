"""The request path: limits -> plan -> evaluate -> assemble, orchestrated by the
AttributionEngine, with admission, micro-batched encoding and the games (value functions).
Never imports the web framework."""

from __future__ import annotations

from service.engine.admission import Admission
from service.engine.batcher import EncodeBatcher
from service.engine.engine import AttributionEngine
from service.engine.limits import Limits, validate_request
from service.engine.timing import StageTimer

__all__ = [
    "Admission",
    "AttributionEngine",
    "EncodeBatcher",
    "Limits",
    "StageTimer",
    "validate_request",
]
