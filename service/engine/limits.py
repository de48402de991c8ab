"""Every request check beyond the schema: the configurable limits (sizes, option ranges, the
Shapley segment limit), offsets inside their text, what a reward-model target needs, and the
limits of /reward and /search. Each refusal is an InvalidRequest (or TooManyCoalitions)
naming the field and the limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from service.errors import InvalidRequest, TooManyCoalitions

if TYPE_CHECKING:
    from service.config import Settings
    from service.schemas import AttributeRequest, GroupIn, Options


@dataclass(frozen=True)
class Limits:
    max_groups: int = 64
    max_responses: int = 64
    max_text_chars: int = 8000
    max_response_chars: int = 64000
    max_token_offsets: int = 16384
    max_coalitions_limit: int = 512
    max_k: int = 10000
    max_depth: int = 10000
    max_shapley_segments: int = 12

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_groups=settings.max_groups,
            max_responses=settings.max_responses,
            max_text_chars=settings.max_text_chars,
            max_response_chars=settings.max_response_chars,
            max_token_offsets=settings.max_token_offsets,
            max_coalitions_limit=settings.max_coalitions_limit,
            max_k=settings.max_k,
            max_depth=settings.max_depth,
            max_shapley_segments=settings.max_shapley_segments,
        )


def fit_defaults(options: Options, limits: Limits) -> None:
    """Options the client left out take their default, lowered to a stricter configured limit
    (a service with max_k=100 must not refuse requests that never mentioned k)."""
    if "k" not in options.model_fields_set:
        options.k = min(options.k, limits.max_k)
    if "max_coalitions" not in options.model_fields_set:
        options.max_coalitions = min(options.max_coalitions, limits.max_coalitions_limit)
    if "depth" not in options.model_fields_set:
        options.depth = min(options.depth, limits.max_depth)


def validate_options(options: Options, limits: Limits) -> None:
    check_k(options.k, limits, "options.k")
    check_depth(options.depth, limits, "options.depth")
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
    """Request-wide checks (options, group count, unique ids); InvalidRequest (422) naming
    the first field over a limit or out of range. Each group is checked by check_group when
    it is planned."""
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
        if group.id is not None:
            # Results are matched back to groups by id; a repeat would make that ambiguous.
            if group.id in seen_ids:
                raise InvalidRequest(
                    f"groups[{g}].id {group.id!r} repeats an earlier group's id; ids must be "
                    "unique",
                    field=f"groups[{g}].id",
                )
            seen_ids.add(group.id)


def check_group(g: int, group: GroupIn, limits: Limits) -> None:
    """One group's checks: responses, pool, labels, texts, spans, token offsets, and what a
    reward-model target needs."""
    gfield = f"groups[{g}]"
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
        if length > limits.max_response_chars:
            raise InvalidRequest(
                f"{rfield}.text has {length} characters; the limit is max_response_chars="
                f"{limits.max_response_chars}",
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
    if group.target.reward_model is not None:
        check_reward_model_group(g, group, limits)


def check_reward_model_group(g: int, group: GroupIn, limits: Limits) -> None:
    """A reward model scores prompt + response: the prompt is required and bounded, and a
    candidate pool means nothing to it."""
    gfield = f"groups[{g}]"
    if group.prompt is None:
        raise InvalidRequest(
            f"{gfield}.prompt is required with a reward_model target: the reward model "
            'scores prompt + response (send "" for a model that needs no prompt)',
            field=f"{gfield}.prompt",
        )
    if len(group.prompt) > limits.max_response_chars:
        raise InvalidRequest(
            f"{gfield}.prompt has {len(group.prompt)} characters; the limit is "
            f"max_response_chars={limits.max_response_chars}",
            field=f"{gfield}.prompt",
        )
    if group.pool is not None:
        raise InvalidRequest(
            f"{gfield}.pool applies to retrieval targets only; omit it with a reward_model target",
            field=f"{gfield}.pool",
        )


def check_query(length: int, limits: Limits, field: str) -> None:
    """The attributed text (the extracted query, or a reward-model target's span) is what the
    games score: bounded by max_text_chars, whatever the response's reasoning adds."""
    if length > limits.max_text_chars:
        raise InvalidRequest(
            f"{field} has an attributed query of {length} characters; the limit is "
            f"max_text_chars={limits.max_text_chars}",
            field=field,
        )


def check_segments(n: int, options: Options, limits: Limits, field: str) -> None:
    """Exact Shapley enumerates 2^n coalitions: refuse responses with too many segments."""
    if options.estimator == "shapley" and n > limits.max_shapley_segments:
        raise TooManyCoalitions(
            f"{field}.text has {n} segments; estimator=shapley is limited to "
            f"max_shapley_segments={limits.max_shapley_segments}",
            field=f"{field}.text",
        )


def check_k(k: int, limits: Limits, field: str = "k") -> None:
    if not 1 <= k <= limits.max_k:
        raise InvalidRequest(
            f"{field} is {k}; it must be between 1 and max_k={limits.max_k}", field=field
        )


def check_depth(depth: int, limits: Limits, field: str = "depth") -> None:
    if not 1 <= depth <= limits.max_depth:
        raise InvalidRequest(
            f"{field} is {depth}; it must be between 1 and max_depth={limits.max_depth}",
            field=field,
        )


def check_reward_batch(
    count: int, prompts: int | None, labels: int | None, k: int, depth: int, limits: Limits
) -> None:
    """POST /reward: one entry per query, at most max_groups x max_responses of them."""
    limit = limits.max_groups * limits.max_responses
    if count == 0:
        raise InvalidRequest("query is empty", field="query")
    if count > limit:
        raise InvalidRequest(f"query has {count} entries; the limit is {limit}", field="query")
    check_k(k, limits)
    check_depth(depth, limits)
    for name, size in (("prompts", prompts), ("labels", labels)):
        if size is not None and size != count:
            raise InvalidRequest(f"{name} has {size} entries for {count} queries", field=name)


def check_reward_text(i: int, text: str, limits: Limits) -> None:
    if len(text) > limits.max_response_chars:
        raise InvalidRequest(
            f"query[{i}] has a {len(text)}-character response; the limit is "
            f"max_response_chars={limits.max_response_chars}",
            field=f"query[{i}]",
        )


def check_search(q: str, k: int, limits: Limits) -> None:
    """GET /v1/retrievers/{name}/search."""
    if not q.strip():
        raise InvalidRequest("q is empty", field="q")
    if len(q) > limits.max_text_chars:
        raise InvalidRequest(
            f"q has {len(q)} characters; the limit is max_text_chars={limits.max_text_chars}",
            field="q",
        )
    check_k(k, limits)


__all__ = [
    "Limits",
    "check_group",
    "check_depth",
    "check_k",
    "check_query",
    "check_reward_batch",
    "check_reward_model_group",
    "check_reward_text",
    "check_search",
    "check_segments",
    "fit_defaults",
    "validate_options",
    "validate_request",
]
