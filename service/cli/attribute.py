"""`ospo attribute "TEXT" ...`: per-segment credit of one or more responses in the terminal.

Sends one group to /attribute through the trainer client (with word-level token offsets, so
the table can show each segment's token advantage range), asks the retriever for the top
products of each response's query, and prints `service.cli.render`'s report; `--json` prints
the /attribute result instead. With `--url` it talks to a running server; without, it starts
the app in-process on the default settings (the demo catalog).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from service.cli.render import render_report, use_color, word_token_offsets
from service.errors import InvalidRequest, OspoError
from trainer_client import (
    AttributeResult,
    AttributionClient,
    Group,
    Options,
    OspoClientError,
    Response,
    Target,
    TransportError,
)

REMOTE_TIMEOUT_S = 120.0


class ServiceCallFailed(OspoError):
    """The service refused a request or could not be reached (its message, one line)."""

    code = "service_call_failed"


@contextmanager
def open_client(url: str | None, api_key: str | None) -> Iterator[AttributionClient]:
    """A client of the service: a running server at `url`, or (url None) the app served
    in-process from the default Settings (env `OSPO_*`; the demo catalog unless configured)
    for the duration. No retries: a person is waiting at the terminal."""
    if url:
        with AttributionClient(
            url, api_key=api_key, timeout=REMOTE_TIMEOUT_S, max_retries=0
        ) as client:
            yield client
        return
    from service.api.local import serve_in_background
    from service.config import load_settings

    with serve_in_background(load_settings()) as server:
        key = api_key or server.api_key
        with AttributionClient(
            server.url, api_key=key, timeout=REMOTE_TIMEOUT_S, max_retries=0
        ) as client:
            yield client


def parse_relevant(raw: str) -> dict[str, float]:
    """`--relevant` as a JSON object of product id -> gain > 0."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--relevant is not valid JSON: {exc}", field="--relevant") from exc
    if not isinstance(value, dict) or not value:
        raise InvalidRequest(
            '--relevant must be a non-empty JSON object like {"P000123": 1.0}', field="--relevant"
        )
    gains: dict[str, float] = {}
    for product_id, gain in value.items():
        if isinstance(gain, bool) or not isinstance(gain, int | float) or not gain > 0:
            raise InvalidRequest(
                f"--relevant: the gain of {product_id!r} must be a number > 0", field="--relevant"
            )
        gains[str(product_id)] = float(gain)
    return gains


def build_group(args: argparse.Namespace) -> tuple[Group, Options]:
    """The group and options of the command line: one response per TEXT."""
    target = (
        Target(query_id=args.query_id)
        if args.query_id is not None
        else Target(relevant=parse_relevant(args.relevant))
    )
    responses = [Response(text, token_offsets=word_token_offsets(text)) for text in args.texts]
    options = Options(
        retriever=args.retriever,
        explain=bool(args.explain),
        estimator=args.estimator,
        segmenter=args.segmenter,
    )
    return Group("cli", target, responses), options


def as_json(value: Any) -> Any:
    """A client result as plain JSON data (the shape of the HTTP answer)."""
    return json.loads(json.dumps(dataclasses.asdict(value)))


def fetch(
    client: AttributionClient, group: Group, options: Options, top: int
) -> tuple[AttributeResult, list[list[dict[str, Any]] | None]]:
    """The /attribute result and, per response, its query's top products (None when the
    query is empty or top is 0)."""
    result = client.attribute([group], options)
    hits: list[list[dict[str, Any]] | None] = []
    for sent, response in zip(group.responses, result.groups[0].responses, strict=True):
        if top <= 0 or not response.segments:
            hits.append(None)
            continue
        query = sent.text[response.segments[0].start : response.segments[-1].end]
        found = client.search(options.retriever or "default", query, top)
        hits.append([dataclasses.asdict(hit) for hit in found])
    return result, hits


def run(args: argparse.Namespace) -> int:
    group, options = build_group(args)
    api_key = args.api_key or os.environ.get("OSPO_API_KEY") or None
    try:
        with open_client(args.url, api_key) as client:
            if args.json:
                result = client.attribute([group], options)
                sys.stdout.write(json.dumps(as_json(result), indent=2) + "\n")
                return 0
            result, hits = fetch(client, group, options, args.top)
    except TransportError as exc:
        raise ServiceCallFailed(f"cannot reach the service at {args.url}: {exc}") from exc
    except OspoClientError as exc:
        raise ServiceCallFailed(str(exc)) from exc
    report = render_report(
        args.texts,
        as_json(result),
        token_offsets=[list(r.token_offsets or ()) for r in group.responses],
        hits=hits,
        color=use_color(args.no_color, sys.stdout),
        explain=args.explain,
    )
    sys.stdout.write(report)
    return 0


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "attribute",
        help="show which segments of a query earned credit (coloured text + table)",
        description=(
            "Per-segment OSPO credit of one or more responses (one group): the query coloured "
            "by Owen value (blue positive, red negative), a table of segments, the reward and "
            "the top retrieved products. Without --url the app runs in-process on the demo "
            "catalog (the default settings)."
        ),
    )
    parser.add_argument("texts", nargs="+", metavar="TEXT", help="a response (several = a group)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--query-id", help="a catalog query id whose labels are the target")
    target.add_argument("--relevant", metavar="JSON", help='graded labels: {"P000123": 1.0, ...}')
    parser.add_argument("--url", help="a running server (default: in-process on the demo catalog)")
    parser.add_argument("--api-key", help="bearer key for --url (default: env OSPO_API_KEY)")
    parser.add_argument("--retriever", default="default", metavar="NAME", help="retriever name")
    parser.add_argument(
        "--estimator", choices=("owen", "owen-sum", "myerson", "shapley"), default=None
    )
    parser.add_argument("--segmenter", choices=("phrase", "sentence", "word"), default=None)
    parser.add_argument("--top", type=int, default=5, help="top products to list (0: none)")
    parser.add_argument("--explain", action="store_true", help="also list evaluated coalitions")
    parser.add_argument("--json", action="store_true", help="print the /attribute result")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours (also NO_COLOR)")
    parser.set_defaults(handler=run)


__all__ = ["ServiceCallFailed", "add_parser", "build_group", "fetch", "open_client", "run"]
