"""The request path: validation against the configured limits, admission, micro-batched
encoding and the AttributionEngine that turns a request into rewards and advantages."""

from __future__ import annotations

from service.engine.admission import Admission
from service.engine.attribute import AttributionEngine
from service.engine.batcher import EncodeBatcher
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
