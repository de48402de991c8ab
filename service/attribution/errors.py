"""Named errors of the pure attribution core (all ValueError subclasses, no HTTP knowledge).

The service maps them to 422 responses; the `field` hint names the request option at fault.
"""

from __future__ import annotations

from collections.abc import Sequence


class AttributionError(ValueError):
    """Base class: bad input to the attribution math."""

    field: str | None = None

    def __init__(self, *args: object, field: str | None = None) -> None:
        super().__init__(*args)
        if field is not None:
            self.field = field


class UnknownOptionError(AttributionError):
    """An option (segmenter, estimator, baseline, redistribution, ...) has an unknown value."""

    def __init__(self, option: str, value: object, choices: Sequence[str]) -> None:
        self.option = option
        self.value = value
        self.choices = tuple(choices)
        self.field = option
        super().__init__(f"unknown {option} {value!r}; expected one of {', '.join(self.choices)}")


class InvalidSpanError(AttributionError):
    """A character span is not a valid half-open range into its text."""

    def __init__(self, span: object, length: int) -> None:
        self.span = span
        self.length = length
        self.field = "span"
        super().__init__(
            f"span {span!r} is not a [start, end) range within a text of {length} chars"
        )


class MissingCoalitionError(AttributionError):
    """An exact estimator needs the value of a coalition that was not evaluated."""

    def __init__(self, coalition: frozenset[int], estimator: str) -> None:
        self.coalition = coalition
        self.estimator = estimator
        super().__init__(f"{estimator} needs v({sorted(coalition)}) but it was not evaluated")


class TooManyCoalitionsError(AttributionError):
    """An exact estimator needs more coalitions than the configured budget allows."""

    def __init__(self, needed: int, limit: int, estimator: str = "myerson") -> None:
        self.needed = needed
        self.limit = limit
        self.estimator = estimator
        self.field = "max_coalitions"
        super().__init__(
            f"{estimator} needs {needed} coalitions but max_coalitions is {limit}; "
            "raise max_coalitions or use estimator=owen"
        )
