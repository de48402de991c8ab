"""The wire format: request bodies as JSON, and answers parsed back into ``_types`` values.

Pure functions over plain JSON values (docs/API.md is the contract): building bodies, splitting
a large batch into chunks and merging the chunks' answers, and parsing every answer. Parsing
is tolerant of additions (unknown fields are ignored) and strict about the documented shape
(a missing required field is a :class:`ResponseFormatError`).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from ._exceptions import ResponseFormatError
from ._retry import _Call
from ._types import (
    UNSET,
    AttributeResult,
    Coalition,
    Group,
    GroupError,
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
)

__all__ = [
    "attribute_body",
    "group_to_json",
    "merge_results",
    "merge_stats",
    "options_to_json",
    "parse_attribute_result",
    "parse_readiness",
    "parse_retrievers",
    "parse_reward_result",
    "parse_search",
    "response_to_json",
    "reward_body",
    "reward_call",
    "search_call",
    "split_groups",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --------------------------------------------------------------------------- request bodies


def response_to_json(response: Response) -> dict[str, Any]:
    body: dict[str, Any] = {"text": response.text}
    if response.span is not None:
        body["span"] = [int(response.span[0]), int(response.span[1])]
    if response.token_offsets is not None:
        body["token_offsets"] = [[int(s), int(e)] for s, e in response.token_offsets]
    if response.reward is not None:
        body["reward"] = float(response.reward)
    return body


def group_to_json(group: Group) -> dict[str, Any]:
    target: dict[str, Any]
    if group.target.query_id is not None:
        target = {"query_id": group.target.query_id}
    elif group.target.reward_model is not None:
        target = {"reward_model": group.target.reward_model}
        if group.target.label is not None:
            target["label"] = group.target.label
    else:
        target = {"relevant": {k: float(v) for k, v in (group.target.relevant or {}).items()}}
    body: dict[str, Any] = {
        "id": group.id,
        "target": target,
        "responses": [response_to_json(r) for r in group.responses],
    }
    if group.pool is not None:
        body["pool"] = list(group.pool)
    if group.prompt is not None:
        body["prompt"] = group.prompt
    return body


def options_to_json(options: Options | None) -> dict[str, Any]:
    if options is None:
        return {}
    body: dict[str, Any] = {}
    for name in Options.__dataclass_fields__:
        value = getattr(options, name)
        if name == "clip":
            if value is not UNSET:
                body["clip"] = value
        elif value is not None:
            body[name] = value
    return body


def attribute_body(groups: Sequence[Group], options: Options | None) -> dict[str, Any]:
    """The JSON body of ``POST /attribute``."""
    return {"groups": [group_to_json(g) for g in groups], "options": options_to_json(options)}


def split_groups(groups: Sequence[Group], max_groups: int) -> list[list[Group]]:
    """Consecutive chunks of at most ``max_groups`` groups, in order."""
    if max_groups < 1:
        raise ValueError("max_groups_per_request must be >= 1")
    return [list(groups[i : i + max_groups]) for i in range(0, len(groups), max_groups)]


# --------------------------------------------------------------------------- answer parsing


def _parse(kind: str, parse: Callable[[], T]) -> T:
    try:
        return parse()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ResponseFormatError(f"unexpected {kind} answer: {exc!r}") from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _segment(raw: Mapping[str, Any]) -> Segment:
    return Segment(
        start=int(raw["start"]),
        end=int(raw["end"]),
        text=str(raw["text"]),
        value=_optional_float(raw.get("value")),  # null: unmeasured
        credit=float(raw["credit"]),
    )


def _response_result(raw: Mapping[str, Any]) -> ResponseResult:
    token_advantages = raw.get("token_advantages")
    coalitions = raw.get("coalitions")
    return ResponseResult(
        reward=float(raw["reward"]),
        advantage=float(raw["advantage"]),
        segments=tuple(_segment(s) for s in raw.get("segments") or ()),
        token_advantages=None
        if token_advantages is None
        else tuple(float(a) for a in token_advantages),
        coalitions=None
        if coalitions is None
        else tuple(
            Coalition(
                members=tuple(int(m) for m in c["members"]),
                query=str(c["query"]),
                value=float(c["value"]),
            )
            for c in coalitions
        ),
        redistributed=None if raw.get("redistributed") is None else bool(raw["redistributed"]),
    )


def _group_result(raw: Mapping[str, Any]) -> GroupResult:
    error = raw.get("error")
    return GroupResult(
        id=str(raw["id"]),
        responses=tuple(_response_result(r) for r in raw.get("responses") or ()),
        error=None
        if error is None
        else GroupError(
            code=str(error.get("code", "error")),
            message=str(error.get("message", "")),
            field=None if error.get("field") is None else str(error["field"]),
        ),
    )


def _stats(raw: Mapping[str, Any]) -> Stats:
    known = ("coalitions", "unique_queries", "cache_hits", "encoded", "timings_ms")
    return Stats(
        coalitions=int(raw.get("coalitions", 0)),
        unique_queries=int(raw.get("unique_queries", 0)),
        cache_hits=int(raw.get("cache_hits", 0)),
        encoded=int(raw.get("encoded", 0)),
        timings_ms={str(k): float(v) for k, v in (raw.get("timings_ms") or {}).items()},
        extra={k: v for k, v in raw.items() if k not in known},
    )


def parse_attribute_result(body: Any, sent: Sequence[Group] | None = None) -> AttributeResult:
    """Parse a ``POST /attribute`` answer; with ``sent``, check it matches the request."""

    def parse() -> AttributeResult:
        groups = tuple(_group_result(g) for g in body["groups"])
        model = body["model"]
        return AttributeResult(
            groups=groups,
            stats=_stats(body.get("stats") or {}),
            model=ModelInfo(
                retriever=str(model["retriever"]),
                encoder=str(model["encoder"]),
                index_version=str(model["index_version"]),
            ),
            clip_bound=_optional_float(body.get("clip_bound")),
        )

    result = _parse("/attribute", parse)
    if sent is not None:
        _check_matches(result, sent)
    return result


def _check_matches(result: AttributeResult, sent: Sequence[Group]) -> None:
    if len(result.groups) != len(sent):
        raise ResponseFormatError(f"sent {len(sent)} groups, got {len(result.groups)} back")
    for group_result, group in zip(result.groups, sent, strict=True):
        if group_result.id != group.id:
            raise ResponseFormatError(f"group {group.id!r} answered as {group_result.id!r}")
        if group_result.error is not None:
            if group_result.responses:
                raise ResponseFormatError(f"group {group.id!r} has both an error and responses")
            continue
        if len(group_result.responses) != len(group.responses):
            raise ResponseFormatError(
                f"group {group.id!r}: sent {len(group.responses)} responses, "
                f"got {len(group_result.responses)}"
            )
        for j, (res, req) in enumerate(zip(group_result.responses, group.responses, strict=True)):
            if req.token_offsets is None:
                continue
            got = None if res.token_advantages is None else len(res.token_advantages)
            if got != len(req.token_offsets):
                raise ResponseFormatError(
                    f"group {group.id!r} response {j}: sent {len(req.token_offsets)} "
                    f"token offsets, got {got} token advantages"
                )


def merge_stats(parts: Sequence[Stats]) -> Stats:
    """Counters and timings summed over chunks (timings: total work, not wall time)."""
    timings: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for part in parts:
        for key, ms in part.timings_ms.items():
            timings[key] = timings.get(key, 0.0) + ms
        for key, value in part.extra.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and isinstance(extra.get(key), (int, float)):
                extra[key] = extra[key] + value
            else:
                extra.setdefault(key, value)
    return Stats(
        coalitions=sum(p.coalitions for p in parts),
        unique_queries=sum(p.unique_queries for p in parts),
        cache_hits=sum(p.cache_hits for p in parts),
        encoded=sum(p.encoded for p in parts),
        timings_ms=timings,
        extra=extra,
    )


def merge_results(parts: Sequence[AttributeResult]) -> AttributeResult:
    """One result from the chunks' results, groups in chunk order."""
    if not parts:
        raise ValueError("nothing to merge")
    if len(parts) == 1:
        return parts[0]
    models = {p.model for p in parts}
    if len(models) > 1:
        # The index was swapped between chunks; the values are still each chunk's own.
        logger.warning("chunks of one batch were answered by different models: %s", models)
    bounds = [p.clip_bound for p in parts if p.clip_bound is not None]
    if len(set(bounds)) > 1:
        # Each chunk was clipped with its own bound; ask for clip=None and clip over the step.
        logger.warning("chunks of one batch were clipped with different bounds: %s", bounds)
    return AttributeResult(
        groups=tuple(g for p in parts for g in p.groups),
        stats=merge_stats([p.stats for p in parts]),
        model=parts[0].model,
        clip_bound=max(bounds) if bounds else None,
    )


def reward_body(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    if not len(queries) == len(prompts) == len(labels):
        raise ValueError("queries, prompts and labels must have the same length")
    return {"query": list(queries), "prompts": list(prompts), "labels": list(labels)}


def reward_call(
    queries: Sequence[str],
    prompts: Sequence[str],
    labels: Sequence[str],
    *,
    retriever: str | None = None,
    k: int | None = None,
    depth: int | None = None,
    query_tag: str | None = None,
) -> _Call:
    """``POST /reward``; the game's parameters left None take the service's defaults. Pass
    the ones ``/attribute`` uses, so the scalar reward and the coalition values are one game."""
    given = {"retriever": retriever, "k": k, "depth": depth, "query_tag": query_tag}
    params = {name: value for name, value in given.items() if value is not None}
    return _Call(
        "POST", "/reward", json=reward_body(queries, prompts, labels), params=params or None
    )


def parse_reward_result(body: Any) -> RewardResult:
    def parse() -> RewardResult:
        rewards = tuple(float(r) for r in body["rewards"])
        scores = tuple(float(s) for s in body.get("scores", rewards))
        return RewardResult(rewards=rewards, scores=scores, extra_logs=body.get("extra_logs") or {})

    return _parse("/reward", parse)


def parse_retrievers(body: Any) -> list[RetrieverInfo]:
    def parse() -> list[RetrieverInfo]:
        return [
            RetrieverInfo(
                name=str(r["name"]),
                encoder=str(r["encoder"]),
                dim=int(r["dim"]),
                index=str(r["index"]),
                size=int(r["size"]),
                version=str(r["version"]),
            )
            for r in body["retrievers"]
        ]

    return _parse("/v1/retrievers", parse)


def parse_search(body: Any) -> list[SearchHit]:
    def parse() -> list[SearchHit]:
        return [
            SearchHit(id=str(h["id"]), title=str(h.get("title", "")), score=float(h["score"]))
            for h in body["results"]
        ]

    return _parse("search", parse)


def parse_readiness(response: httpx.Response) -> Readiness:
    def parse() -> Readiness:
        body = response.json()
        cache = body.get("cache") or {}
        degraded = cache.get("degraded")
        return Readiness(
            ready=response.status_code == 200,
            status=str(body.get("status", "ready" if response.status_code == 200 else "")),
            cache_backend=None if cache.get("backend") is None else str(cache["backend"]),
            cache_degraded=None if degraded is None else bool(degraded),
        )

    return _parse("/readyz", parse)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ResponseFormatError(f"answer to {response.request.url.path} is not JSON") from exc


def search_call(retriever: str, q: str, k: int) -> _Call:
    path = f"/v1/retrievers/{urllib.parse.quote(retriever, safe='')}/search"
    return _Call("GET", path, params={"q": q, "k": k})
