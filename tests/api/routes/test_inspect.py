"""GET /inspect (the page and its two assets, self-contained) and GET /v1/demo/queries."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from service.api.routes.inspect import ASSETS, PAGE_PATHS


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(str(values[name]))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_page_and_assets_are_served_self_contained(live_server: Any) -> None:
    with live_server.client() as client:
        page = client.get("/inspect")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        links = _Links()
        links.feed(page.text)
        assert links.inline_scripts == 0
        local = [u for u in links.urls if not u.startswith("data:")]
        assert sorted(local) == ["inspect/inspect.css", "inspect/inspect.js"]
        for url in local:
            asset = client.get("/" + url)
            assert asset.status_code == 200, url
            assert (
                asset.headers["content-type"].split(";")[0]
                == ASSETS[url.split("/")[-1]].split(";")[0]
            )
            # No external URL anywhere (the SVG namespace is a name, never fetched).
            text = asset.text.replace("http://www.w3.org/2000/svg", "")
            assert not re.search(r"https?://|//cdn|@import|url\(", text), url
        assert client.get("/inspect/other.js").status_code == 404
        assert client.get("/inspect/inspect.html").status_code == 404


def test_page_paths_are_the_routes(live_server: Any) -> None:
    with live_server.client() as client:
        for path in PAGE_PATHS:
            assert client.get(path).status_code == 200, path


def test_demo_queries_lists_catalog_queries_with_examples(live_server: Any) -> None:
    with live_server.client() as client:
        body = client.get("/v1/demo/queries", params={"limit": 5}).json()
        assert body["retriever"] == "default" and body["catalog"] == "demo"
        assert len(body["queries"]) == 5 and body["total"] >= 5
        ids = [q["id"] for q in body["queries"]]
        assert len(set(ids)) == 5
        for query in body["queries"]:
            assert query["text"] and len(query["examples"]) >= 3
            # Every id is a real target of /attribute.
            answer = client.post(
                "/attribute",
                json={
                    "groups": [
                        {
                            "target": {"query_id": query["id"]},
                            "responses": [{"text": t} for t in query["examples"]],
                        }
                    ]
                },
            )
            assert answer.status_code == 200, answer.text
            rewards = [r["reward"] for r in answer.json()["groups"][0]["responses"]]
            # The precise example (first) retrieves the labelled products better than the
            # related-category one (last).
            assert rewards[0] > rewards[-1]
        more = client.get("/v1/demo/queries", params={"limit": 8}).json()["queries"]
        assert [q["id"] for q in more[:5]] == ids


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"limit": 0}, 422, "limit"),
        ({"limit": 100000}, 422, "limit"),
        ({"retriever": "nope"}, 404, "retriever"),
    ],
)
def test_demo_queries_refusals(
    live_server: Any, params: dict[str, Any], status: int, field: str
) -> None:
    with live_server.client() as client:
        answer = client.get("/v1/demo/queries", params=params)
    assert answer.status_code == status
    assert answer.json()["error"]["field"] == field


def test_demo_queries_need_the_key_when_auth_is_on(live_server_with_key: Any) -> None:
    import httpx

    with httpx.Client(base_url=live_server_with_key.url) as anonymous:
        assert anonymous.get("/v1/demo/queries").status_code == 401
    with live_server_with_key.client() as client:
        assert client.get("/v1/demo/queries", params={"limit": 1}).status_code == 200
