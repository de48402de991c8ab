"""GET /v1/retrievers and /v1/retrievers/{name}/search (service/api/routes/retrievers.py)."""

from __future__ import annotations


def test_retrievers_and_search(client, demo_catalog):
    body = client.get("/v1/retrievers").json()
    (info,) = body["retrievers"]
    assert info["name"] == "default" and info["encoder"] == "all-MiniLM-L6-v2"
    assert (
        info["dim"] == 384
        and info["index"] == "flat"
        and info["size"] == len(demo_catalog.products)
    )
    assert info["version"]
    qid = list(demo_catalog.queries)[0]
    best = max(demo_catalog.labels[qid], key=demo_catalog.labels[qid].get)
    title = demo_catalog.product(best).title
    results = client.get("/v1/retrievers/default/search", params={"q": title, "k": 5}).json()[
        "results"
    ]
    assert len(results) == 5
    assert results[0]["id"] == best and results[0]["title"] == title
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
