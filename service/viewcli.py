"""`ospo attribute "TEXT" ...`: per-segment credit of one or more responses in the terminal.

Sends one group to /attribute (with word-level token offsets, so the table can show each
segment's token advantage range), asks /v1/retrievers/{name}/search for the top products of
each response's query, and prints `service.credit_view`'s report; `--json` prints the raw
/attribute response instead. With `--url` it talks to a running server; without, it starts
the app in-process on the default settings (the demo catalog) - see `open_client`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from service.credit_view import render_report, use_color, word_token_offsets
from service.errors import InvalidRequest, OspoError

REMOTE_TIMEOUT_S = 120.0


class ServiceCallFailed(OspoError):
    """The service refused a request or could not be reached (its message, one line)."""

    code = "service_call_failed"


@contextmanager
def open_client(url: str | None, api_key: str | None) -> Iterator[httpx.Client]:
    """An HTTP client of the service: a running server at `url`, or (url None) the app built
    in-process from the default Settings (env `OSPO_*`; the demo catalog unless configured),
    its lifespan run for the duration. This is the only place the CLI builds the app."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if url:
        with httpx.Client(base_url=url, headers=headers, timeout=REMOTE_TIMEOUT_S) as client:
            yield client
        return
    with warnings.catch_warnings():
        # Starlette warns that its TestClient will move to httpx2; it works as is.
        warnings.filterwarnings("ignore", message=r".*starlette\.testclient.*deprecated")
        from fastapi.testclient import TestClient

    from service.api import create_app
    from service.config import load_settings

    settings = load_settings()
    if not headers and settings.api_key is not None and settings.api_key.get_secret_value():
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
    with TestClient(create_app(settings), headers=headers) as client:
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


def build_request(args: argparse.Namespace) -> dict[str, Any]:
    """The /attribute body for the command line: one group, a response per TEXT."""
    target: dict[str, Any] = (
        {"query_id": args.query_id}
        if args.query_id is not None
        else {"relevant": parse_relevant(args.relevant)}
    )
    responses = [
        {"text": text, "token_offsets": [list(span) for span in word_token_offsets(text)]}
        for text in args.texts
    ]
    options: dict[str, Any] = {"retriever": args.retriever, "explain": bool(args.explain)}
    if args.estimator is not None:
        options["estimator"] = args.estimator
    if args.segmenter is not None:
        options["segmenter"] = args.segmenter
    return {"groups": [{"id": "cli", "target": target, "responses": responses}], "options": options}


def _checked(response: httpx.Response, what: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            raise ServiceCallFailed(
                f"{what} answered {response.status_code} {error.get('code')}: {error.get('message')}",
                field=error.get("field"),
            )
        raise ServiceCallFailed(f"{what} answered {response.status_code}: {response.text[:200]}")
    if body is None:
        raise ServiceCallFailed(f"{what} did not answer JSON")
    return body


def fetch(client: httpx.Client, request: dict[str, Any], top: int) -> tuple[Any, list[Any]]:
    """The /attribute result and, per response, its query's top products (None when the
    query is empty or top is 0)."""
    result = _checked(client.post("/attribute", json=request), "POST /attribute")
    responses = result["groups"][0]["responses"]
    hits: list[Any] = []
    retriever = request["options"]["retriever"]
    for sent, response in zip(request["groups"][0]["responses"], responses, strict=True):
        segments = response.get("segments") or []
        if top <= 0 or not segments:
            hits.append(None)
            continue
        query = sent["text"][segments[0]["start"] : segments[-1]["end"]]
        found = _checked(
            client.get(f"/v1/retrievers/{retriever}/search", params={"q": query, "k": top}),
            "GET /v1/retrievers/{name}/search",
        )
        hits.append(found["results"])
    return result, hits


def run(args: argparse.Namespace) -> int:
    request = build_request(args)
    api_key = args.api_key or os.environ.get("OSPO_API_KEY") or None
    try:
        with open_client(args.url, api_key) as client:
            if args.json:
                result = _checked(client.post("/attribute", json=request), "POST /attribute")
                sys.stdout.write(json.dumps(result, indent=2) + "\n")
                return 0
            result, hits = fetch(client, request, args.top)
    except httpx.HTTPError as exc:
        raise ServiceCallFailed(f"cannot reach the service at {args.url}: {exc}") from exc
    report = render_report(
        args.texts,
        result,
        token_offsets=[r["token_offsets"] for r in request["groups"][0]["responses"]],
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
    parser.add_argument("--estimator", choices=("owen", "myerson", "shapley"), default=None)
    parser.add_argument("--segmenter", choices=("phrase", "sentence", "word"), default=None)
    parser.add_argument("--top", type=int, default=5, help="top products to list (0: none)")
    parser.add_argument("--explain", action="store_true", help="also list evaluated coalitions")
    parser.add_argument("--json", action="store_true", help="print the raw /attribute response")
    parser.add_argument("--no-color", action="store_true", help="no ANSI colours (also NO_COLOR)")
    parser.set_defaults(handler=run)


__all__ = ["ServiceCallFailed", "add_parser", "build_request", "fetch", "open_client", "run"]
