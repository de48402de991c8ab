"""`ospo attribute`: the terminal view on a fixed request, produced by the real pipeline
(in-process app on the demo catalog, and a live server via --url). The table is checked
row by row against the raw /attribute response of the same request (`--json`), not against
a frozen blob; the colourless output is saved as a snapshot under the test's tmp dir."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.cli.render import word_token_offsets
from service.retrieval.demo import demo_examples

QUERY_ID = "demo-0000"
ROW = re.compile(
    r"^\s+(?P<index>\d+)\s+(?P<text>.+?)\s+(?P<value>[+-]\d+\.\d{4})\s+(?P<credit>\d+\.\d{2})%"
    r"\s+(?P<low>[+-]\d+\.\d{4}) \.\. (?P<high>[+-]\d+\.\d{4})$"
)
TITLE = re.compile(
    r"^response (?P<n>\d+)/(?P<g>\d+)  reward (?P<reward>\d+\.\d{4})  advantage (?P<adv>[+-]\d+\.\d{4})$"
)


def signed(x: float) -> str:
    return f"{x + 0.0:+.4f}"  # the view prints a negative zero as +0.0000


HIT = re.compile(r"^\s+(?P<rank>\d+)\. (?P<id>\S+)  (?P<score>-?\d+\.\d{4})  (?P<title>.*)$")


@pytest.fixture(scope="module")
def fixed_texts(demo_catalog: Any) -> list[str]:
    """A fixed group: the demo query's example responses (deterministic catalog)."""
    return demo_examples(demo_catalog, QUERY_ID)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _token_range(
    advantages: list[float], offsets: list[tuple[int, int]], seg: dict[str, Any]
) -> tuple[float, float]:
    inside = [
        a
        for (s, e), a in zip(offsets, advantages, strict=True)
        if s < seg["end"] and e > seg["start"]
    ]
    return min(inside), max(inside)


def _check_against(out: str, raw: dict[str, Any], texts: list[str]) -> list[list[str]]:
    """Parse the report; assert every number equals the API response's; return the hit ids."""
    lines = out.splitlines()
    responses = raw["groups"][0]["responses"]
    titles: list[tuple[int, re.Match[str]]] = []
    for i, line in enumerate(lines):
        match = TITLE.match(line)
        if match:
            titles.append((i, match))
    assert [int(m["n"]) for _, m in titles] == list(range(1, len(texts) + 1))
    bounds = [i for i, _ in titles] + [len(lines)]
    hits: list[list[str]] = []
    for r, ((start, title), response) in enumerate(zip(titles, responses, strict=True)):
        block = lines[start : bounds[r + 1]]
        assert int(title["g"]) == len(texts)
        assert title["reward"] == f"{response['reward']:.4f}"
        assert title["adv"] == signed(response["advantage"])
        # Colour off: the query with each segment in [brackets].
        assert block[1].startswith("  query: ")
        assert re.findall(r"\[([^\]]*)\]", block[1]) == [s["text"] for s in response["segments"]]
        assert block[3].split() == ["#", "segment", "owen", "value", "credit", "token", "advantage"]
        rows = [ROW.match(line) for line in block[5 : 5 + len(response["segments"])]]
        assert all(rows), block
        offsets = word_token_offsets(texts[r])
        for row, segment in zip(rows, response["segments"], strict=True):
            assert row is not None
            assert row["text"] == segment["text"]
            assert row["value"] == signed(segment["value"])
            assert row["credit"] == f"{100 * segment['credit']:.2f}"
            low, high = _token_range(response["token_advantages"], offsets, segment)
            assert (row["low"], row["high"]) == (signed(low), signed(high))
        hit_lines = [HIT.match(line) for line in block if HIT.match(line)]
        hits.append([m["id"] for m in hit_lines if m])
    return hits


def test_in_process_table_matches_the_api_response(
    hash_service_env: None,
    fixed_texts: list[str],
    capsys: pytest.CaptureFixture[str],
    live_server: Any,
    tmp_path: Path,
) -> None:
    base = ["attribute", *fixed_texts, "--query-id", QUERY_ID]
    code, raw_out, _ = _run([*base, "--json"], capsys)
    assert code == 0
    raw = json.loads(raw_out)
    assert raw["model"]["retriever"] == "default"
    assert all(r["token_advantages"] for r in raw["groups"][0]["responses"])

    code, out, _ = _run([*base, "--no-color", "--top", "3"], capsys)
    assert code == 0
    (tmp_path / "attribute.txt").write_text(out)  # the snapshot, for a human to look at
    assert "\x1b[" not in out
    assert out.splitlines()[0].startswith("retriever default  encoder hash:256")
    hits = _check_against(out, raw, fixed_texts)

    # The products listed are the retriever's top 3 for each response's query.
    responses = raw["groups"][0]["responses"]
    with live_server.client() as client:
        for text, response, shown in zip(fixed_texts, responses, hits, strict=True):
            query = text[response["segments"][0]["start"] : response["segments"][-1]["end"]]
            top = client.get("/v1/retrievers/default/search", params={"q": query, "k": 3}).json()
            assert shown == [h["id"] for h in top["results"]]

    # The same request against a running server prints the same report.
    code, remote, _ = _run([*base, "--no-color", "--top", "3", "--url", live_server.url], capsys)
    assert code == 0
    assert remote == out


def test_explain_lists_coalitions_and_no_color_env(
    hash_service_env: None,
    fixed_texts: list[str],
    capsys: pytest.CaptureFixture[str],
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = _run(
        [
            "attribute",
            fixed_texts[0],
            "--query-id",
            QUERY_ID,
            "--url",
            live_server.url,
            "--explain",
            "--top",
            "0",
        ],
        capsys,
    )
    assert code == 0
    assert "\x1b[" not in out
    assert "coalitions (members, value, partial query):" in out
    assert "top products" not in out
    assert "group of one" in out
    with live_server.client() as client:
        raw = client.post(
            "/attribute",
            json={
                "groups": [
                    {"target": {"query_id": QUERY_ID}, "responses": [{"text": fixed_texts[0]}]}
                ],
                "options": {"explain": True},
            },
        ).json()
    for coalition in raw["groups"][0]["responses"][0]["coalitions"]:
        members = "{" + ",".join(map(str, coalition["members"])) + "}"
        assert f"{members:<16} {coalition['value']:.4f}" in out


def test_relevant_labels_target(
    capsys: pytest.CaptureFixture[str], live_server: Any, fixed_texts: list[str]
) -> None:
    with live_server.client() as client:
        top = client.get(
            "/v1/retrievers/default/search", params={"q": fixed_texts[0], "k": 2}
        ).json()
    labels = {hit["id"]: 1.0 for hit in top["results"]}
    code, out, _ = _run(
        [
            "attribute",
            fixed_texts[0],
            "--relevant",
            json.dumps(labels),
            "--url",
            live_server.url,
            "--json",
        ],
        capsys,
    )
    assert code == 0
    assert json.loads(out)["groups"][0]["responses"][0]["reward"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--relevant", "{oops"], "--relevant is not valid JSON"),
        (["--relevant", '{"P1": -1}'], "must be a number > 0"),
        (["--query-id", "no-such-query"], "unknown_query"),
        (["--query-id", QUERY_ID, "--retriever", "nope"], "404"),
    ],
)
def test_errors_are_one_line(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str], live_server: Any
) -> None:
    code, out, err = _run(["attribute", "boots", *extra, "--url", live_server.url], capsys)
    assert code == 1
    assert out == ""
    assert err.startswith("ospo: error:") and message in err and err.count("\n") == 1


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        ["attribute", "boots", "--query-id", QUERY_ID, "--url", "http://127.0.0.1:9"], capsys
    )
    assert code == 1
    assert "cannot reach the service" in err


def test_target_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["attribute", "boots"])
    assert exit_info.value.code == 2
    assert "--query-id" in capsys.readouterr().err
