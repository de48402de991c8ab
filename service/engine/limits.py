"""The configurable request limits and the checks pydantic cannot express statically: sizes,
option ranges, offsets inside their text. Each refusal names the field and the limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.errors import InvalidRequest

if TYPE_CHECKING:
    from service.config import Settings
    from service.schemas import AttributeRequest, Options


@dataclass(frozen=True)
class Limits:
    max_groups: int = 64
    max_responses: int = 64
    max_text_chars: int = 8000
    max_token_offsets: int = 4096
    max_coalitions_limit: int = 512
    max_k: int = 10000
    max_shapley_segments: int = 12

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_groups=settings.max_groups,
            max_responses=settings.max_responses,
            max_text_chars=settings.max_text_chars,
            max_token_offsets=settings.max_token_offsets,
            max_coalitions_limit=settings.max_coalitions_limit,
            max_k=settings.max_k,
            max_shapley_segments=settings.max_shapley_segments,
        )


def fit_defaults(options: Options, limits: Limits) -> None:
    """Options the client left out take their default, lowered to a stricter configured limit
    (a service with max_k=100 must not refuse requests that never mentioned k)."""
    if "k" not in options.model_fields_set:
        options.k = min(options.k, limits.max_k)
    if "max_coalitions" not in options.model_fields_set:
        options.max_coalitions = min(options.max_coalitions, limits.max_coalitions_limit)


def validate_options(options: Options, limits: Limits) -> None:
    if not 1 <= options.k <= limits.max_k:
        raise InvalidRequest(
            f"options.k is {options.k}; it must be between 1 and max_k={limits.max_k}",
            field="options.k",
        )
    if not 2 <= options.max_coalitions <= limits.max_coalitions_limit:
        raise InvalidRequest(
            f"options.max_coalitions is {options.max_coalitions}; it must be between 2 and "
            f"{limits.max_coalitions_limit}",
            field="options.max_coalitions",
        )
    if options.max_width < 1:
        raise InvalidRequest(
            f"options.max_width is {options.max_width}; it must be at least 1",
            field="options.max_width",
        )
    if options.clip is not None and options.clip <= 0:
        raise InvalidRequest(
            f"options.clip is {options.clip}; it must be positive or null", field="options.clip"
        )


def _check_offsets(field: str, offsets: list[tuple[int, int]], length: int, limits: Limits) -> None:
    if len(offsets) > limits.max_token_offsets:
        raise InvalidRequest(
            f"{field} has {len(offsets)} offsets; the limit is max_token_offsets="
            f"{limits.max_token_offsets}",
            field=field,
        )
    previous_end = 0
    for position, (start, end) in enumerate(offsets):
        where = f"{field}[{position}]"
        if start > end:
            raise InvalidRequest(f"{where} is [{start}, {end}): start is after end", field=where)
        if end > length:
            raise InvalidRequest(
                f"{where} is [{start}, {end}) but the text has {length} characters", field=where
            )
        if start == end:
            # Special tokens (EOS, padding) carry empty spans anywhere, e.g. (0, 0).
            continue
        if start < previous_end:
            raise InvalidRequest(
                f"{where} is [{start}, {end}): offsets must be sorted and must not overlap "
                f"(the previous one ends at {previous_end})",
                field=where,
            )
        previous_end = end


def validate_request(request: AttributeRequest, limits: Limits) -> None:
    """Raise InvalidRequest (422) naming the first field over a limit or out of range."""
    fit_defaults(request.options, limits)
    validate_options(request.options, limits)
    if not request.groups:
        raise InvalidRequest("groups is empty; send at least one group", field="groups")
    if len(request.groups) > limits.max_groups:
        raise InvalidRequest(
            f"groups has {len(request.groups)} entries; the limit is max_groups={limits.max_groups}",
            field="groups",
        )
    seen_ids: set[str] = set()
    for g, group in enumerate(request.groups):
        gfield = f"groups[{g}]"
        if group.id is not None:
            # Results are matched back to groups by id; a repeat would make that ambiguous.
            if group.id in seen_ids:
                raise InvalidRequest(
                    f"{gfield}.id {group.id!r} repeats an earlier group's id; ids must be unique",
                    field=f"{gfield}.id",
                )
            seen_ids.add(group.id)
        if not group.responses:
            raise InvalidRequest(f"{gfield}.responses is empty", field=f"{gfield}.responses")
        if len(group.responses) > limits.max_responses:
            raise InvalidRequest(
                f"{gfield}.responses has {len(group.responses)} entries; the limit is "
                f"max_responses={limits.max_responses}",
                field=f"{gfield}.responses",
            )
        if group.pool is not None and not group.pool:
            raise InvalidRequest(
                f"{gfield}.pool is empty; omit it or list product ids", field=f"{gfield}.pool"
            )
        if group.target.relevant is not None and not group.target.relevant:
            raise InvalidRequest(
                f"{gfield}.target.relevant is empty; give at least one product id with a gain > 0",
                field=f"{gfield}.target.relevant",
            )
        for r, response in enumerate(group.responses):
            rfield = f"{gfield}.responses[{r}]"
            length = len(response.text)
            if length > limits.max_text_chars:
                raise InvalidRequest(
                    f"{rfield}.text has {length} characters; the limit is max_text_chars="
                    f"{limits.max_text_chars}",
                    field=f"{rfield}.text",
                )
            if response.span is not None:
                start, end = response.span
                if start > end or end > length:
                    raise InvalidRequest(
                        f"{rfield}.span is [{start}, {end}) but must be a [start, end) range "
                        f"inside the text of {length} characters",
                        field=f"{rfield}.span",
                    )
            if response.token_offsets is not None:
                _check_offsets(f"{rfield}.token_offsets", response.token_offsets, length, limits)


__all__ = ["Limits", "fit_defaults", "validate_options", "validate_request"]
