"""The /inspect page in a real headless Chromium: load it, submit the demo example, and check
that every segment is shaded and every number shown equals the API's answer to the same
request (sent again, independently, with httpx)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.cli.render import word_token_offsets

pytestmark = pytest.mark.browser

RGB = re.compile(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)")


def _rgb(css: str) -> tuple[int, int, int, float]:
    match = RGB.fullmatch(css)
    assert match, css
    r, g, b, a = match.groups()
    return int(r), int(g), int(b), 1.0 if a is None else float(a)


def _submit_and_capture(page: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Click Attribute; return (the request body the page sent, the JSON it received)."""
    with page.expect_response(lambda r: r.url.endswith("/attribute")) as answer:
        page.click("#submit")
    response = answer.value
    assert response.status == 200, response.text()
    page.wait_for_selector("body[data-rendered='true']")
    return json.loads(response.request.post_data), response.json()


def _fmt_signed(x: float) -> str:
    return f"{x + 0.0:+.4f}"  # -0.0 shows as +0.0000


def _check_rendering(page: Any, expected: dict[str, Any], sent: dict[str, Any]) -> None:
    responses = expected["groups"][0]["responses"]
    texts = [r["text"] for r in sent["groups"][0]["responses"]]
    cards = page.locator("article.response")
    assert cards.count() == len(responses)

    # Group table: rewards and advantages.
    rows = page.locator("#group-table tbody tr")
    assert rows.count() == len(responses)
    for i, expected_response in enumerate(responses):
        row = rows.nth(i)
        reward_cell = row.locator("td.reward")
        advantage_cell = row.locator("td.advantage")
        assert float(reward_cell.get_attribute("data-value")) == expected_response["reward"]
        assert reward_cell.inner_text() == f"{expected_response['reward']:.4f}"
        assert float(advantage_cell.get_attribute("data-value")) == expected_response["advantage"]
        assert advantage_cell.inner_text() == _fmt_signed(expected_response["advantage"])

    scale = max(abs(s["value"]) for r in responses for s in r["segments"])
    for i, expected_response in enumerate(responses):
        card = cards.nth(i)
        segments = expected_response["segments"]
        spans = card.locator(".response-text .seg")
        assert spans.count() == len(segments)
        for j, segment in enumerate(segments):
            span = spans.nth(j)
            assert (
                span.inner_text() == segment["text"] == texts[i][segment["start"] : segment["end"]]
            )
            assert float(span.get_attribute("data-value")) == segment["value"]
            assert float(span.get_attribute("data-credit")) == segment["credit"]
            r, g, b, alpha = _rgb(span.evaluate("e => getComputedStyle(e).backgroundColor"))
            assert alpha > 0 and (r, g, b) != (255, 255, 255), "segment is not shaded"
            if segment["value"] > 0:
                assert b > r, f"positive segment should be blue, got {(r, g, b)}"
            elif segment["value"] < 0:
                assert r > b, f"negative segment should be red, got {(r, g, b)}"
            if scale > 0 and abs(segment["value"]) == scale:
                # The strongest value gets the full colour.
                assert min(r, g, b) < 90
        # The visible text is the response text, nothing dropped or added.
        assert card.locator(".response-text").inner_text() == texts[i]

        table_rows = card.locator("table.segments tbody tr")
        assert table_rows.count() == len(segments)
        for j, segment in enumerate(segments):
            row = table_rows.nth(j)
            assert row.locator("td.value").inner_text() == _fmt_signed(segment["value"])
            assert row.locator("td.credit").inner_text() == f"{100 * segment['credit']:.2f}%"
            assert float(row.locator("td.credit").get_attribute("data-value")) == segment["credit"]

        advantages = expected_response["token_advantages"]
        bars = card.locator("svg rect.bar")
        assert bars.count() == len(advantages) == len(word_token_offsets(texts[i]))
        shown = [float(v) for v in bars.evaluate_all("els => els.map(e => e.dataset.value)")]
        assert shown == advantages
        classes = bars.evaluate_all("els => els.map(e => e.getAttribute('class'))")
        for value, cls in zip(advantages, classes, strict=True):
            assert ("positive" if value >= 0 else "negative") in cls


def test_demo_example_matches_the_api(page: Any, live_server: Any, tmp_path: Path) -> None:
    page.goto(f"{live_server.url}/inspect")
    page.wait_for_selector("body[data-demo-loaded='true']")
    first_id = page.locator("#demo-query").input_value()
    assert first_id
    page.click("#use-example")
    typed = page.locator("#responses").input_value().splitlines()
    assert len(typed) >= 3, "the demo example should be a group of several responses"

    sent, received = _submit_and_capture(page)
    group = sent["groups"][0]
    assert sent["options"]["explain"] is True
    assert group["target"] == {"query_id": first_id}
    assert [r["text"] for r in group["responses"]] == typed
    # The page's tokenizer (JavaScript) agrees with credit_view.word_token_offsets (Python).
    for response in group["responses"]:
        assert [tuple(o) for o in response["token_offsets"]] == word_token_offsets(response["text"])

    with live_server.client() as client:
        again = client.post("/attribute", json=sent)
    assert again.status_code == 200, again.text
    expected = again.json()
    # Same request, same numbers (seeded coalitions): the page shows the API's answer.
    assert [r["segments"] for r in expected["groups"][0]["responses"]] == [
        r["segments"] for r in received["groups"][0]["responses"]
    ]
    rewards = [r["reward"] for r in expected["groups"][0]["responses"]]
    assert max(rewards) > min(rewards), "the demo example should separate good and bad queries"
    _check_rendering(page, expected, sent)

    # Hover details: value, share and the coalitions that include the segment.
    response0 = expected["groups"][0]["responses"][0]
    segment_index = len(response0["segments"]) - 1
    page.locator("article.response").first.locator(".seg").nth(segment_index).hover()
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    text = tooltip.inner_text()
    segment = response0["segments"][segment_index]
    assert f"Owen value {_fmt_signed(segment['value'])}" in text
    assert f"credit share {100 * segment['credit']:.2f}%" in text
    including = [c for c in response0["coalitions"] if segment_index in c["members"]]
    assert f"coalitions including it: {len(including)}" in text
    assert tooltip.locator("tr.coalition").count() == len(including)
    for row, coalition in zip(tooltip.locator("tr.coalition").all(), including, strict=True):
        assert row.locator(".coalition-query").inner_text() == coalition["query"]

    screenshot = tmp_path / "inspect.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    assert page.console_errors == []
    external = [u for u in page.requested if not u.startswith(live_server.url)]
    assert external == [], f"the page fetched external assets: {external}"


def test_pasted_labels_and_typed_responses(page: Any, live_server: Any, tmp_path: Path) -> None:
    with live_server.client() as client:
        demo = client.get("/v1/demo/queries", params={"limit": 1}).json()["queries"][0]
        top = client.get(
            "/v1/retrievers/default/search", params={"q": demo["examples"][0], "k": 3}
        ).json()["results"]
    labels = {hit["id"]: 1.0 for hit in top}
    responses = [
        demo["examples"][0],
        "something nice",
        "<think>hmm</think><answer>🎒 bag, ünïcode</answer>",
    ]

    page.goto(f"{live_server.url}/inspect")
    page.wait_for_selector("body[data-demo-loaded='true']")
    page.check("input[name='target-kind'][value='labels']")
    assert page.locator("#query-target").is_hidden()
    page.fill("#labels", "{not json")
    page.fill("#responses", "\n".join(responses))
    page.click("#submit")
    assert "not valid JSON" in page.locator("#error").inner_text()

    page.fill("#labels", json.dumps(labels))
    page.select_option("#segmenter", "word")
    sent, _ = _submit_and_capture(page)
    assert sent["groups"][0]["target"] == {"relevant": labels}
    assert sent["options"]["segmenter"] == "word"
    for response in sent["groups"][0]["responses"]:
        assert [tuple(o) for o in response["token_offsets"]] == word_token_offsets(response["text"])
    assert page.locator("#error").is_hidden()
    with live_server.client() as client:
        expected = client.post("/attribute", json=sent).json()
    _check_rendering(page, expected, sent)
    page.screenshot(path=str(tmp_path / "inspect-labels.png"), full_page=True)
    assert page.console_errors == []


def test_api_error_is_shown_not_swallowed(page: Any, live_server: Any) -> None:
    page.goto(f"{live_server.url}/inspect")
    page.wait_for_selector("body[data-demo-loaded='true']")
    page.fill("#retriever", "no-such-retriever")
    page.click("#submit")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "404" in error.inner_text()
    assert "no-such-retriever" in error.inner_text()


def test_api_key_field(page: Any, live_server_with_key: Any) -> None:
    server = live_server_with_key

    # The page's own files carry no data; serve them with the key as a proxy or a public-path
    # rule would. Every API call must then carry the key typed into the page's field.
    def with_key(route: Any) -> None:
        headers = {**route.request.headers, "authorization": f"Bearer {server.api_key}"}
        route.continue_(headers=headers)

    page.route(re.compile(r".*/inspect(/inspect\.(css|js))?$"), with_key)
    page.goto(f"{server.url}/inspect")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "401" in error.inner_text() and "API key" in error.inner_text()

    page.fill("#api-key", server.api_key)
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("body[data-demo-loaded='true']")
    assert page.locator("#error").is_hidden()
    sent, received = _submit_and_capture(page)
    with server.client() as client:
        expected = client.post("/attribute", json=sent).json()
    _check_rendering(page, expected, sent)
    assert (
        received["groups"][0]["responses"][0]["segments"]
        == expected["groups"][0]["responses"][0]["segments"]
    )
