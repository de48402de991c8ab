"""A loopback reward server speaking OpenRLHF's remote protocol, with a deterministic
bag-of-words logistic scorer the tests define, and a tiny in-process reward model on disk.

The server counts every query string it scores, so tests can check that each distinct
partial response is sent once; its `mode` switches it to failing or hanging answers.

Fixtures: `reward_server` (factory), `reward_logit`, `tiny_reward_model_dir`.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# The scorer: a logistic model over rewarded and penalised words; its logit is the reward.
WORD_WEIGHTS = {
    "delightful": 3.0,
    "wonderful": 2.5,
    "love": 2.0,
    "great": 1.5,
    "terrible": -3.0,
    "awful": -2.5,
}
BIAS = -1.0
_WORD_RE = re.compile(r"[a-z]+")


def bow_logit(response: str) -> float:
    """BIAS + Σ weight(word) over the response's words (a Bradley-Terry style logit)."""
    return BIAS + sum(WORD_WEIGHTS.get(word, 0.0) for word in _WORD_RE.findall(response.lower()))


@pytest.fixture(scope="session")
def reward_logit() -> Callable[[str], float]:
    """The loopback server's scorer, for computing expected values."""
    return bow_logit


@dataclass
class RewardServer:
    """A reward server on 127.0.0.1 in a thread. `mode`: ok | error | slow | bad | short |
    scores; `seen` counts each query string scored, `batches` the size of each POST."""

    mode: str = "ok"
    delay_s: float = 2.0
    key: str = "rewards"
    seen: Counter[str] = field(default_factory=Counter)
    batches: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, body: dict[str, Any]) -> tuple[int, bytes]:
        with self.lock:
            self.attempts += 1
        if self.mode == "error":
            return 500, b"internal failure of the reward model"
        if self.mode == "slow":
            self.released.wait(self.delay_s)
        if self.mode == "bad":
            return 200, b'{"unexpected": true}'
        queries, prompts = body["query"], body["prompts"]
        scores = []
        for query, prompt in zip(queries, prompts, strict=True):
            assert query.startswith(prompt)
            scores.append(bow_logit(query[len(prompt) :]))
        with self.lock:
            self.seen.update(queries)
            self.batches.append(len(queries))
            self.bodies.append(body)
        if self.mode == "short":
            scores = scores[:-1]
        key = "scores" if self.mode == "scores" else self.key
        return 200, json.dumps({key: scores}).encode()

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.batches.clear()
            self.bodies.clear()
            self.attempts = 0


def _handler(server: RewardServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length", "0"))
            body = json.loads(self.rfile.read(length))
            status, payload = server.answer(body)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def reward_server() -> Iterator[Callable[..., RewardServer]]:
    """Factory: start a loopback reward server (`mode`, `delay_s`); stopped at teardown."""
    started: list[tuple[RewardServer, ThreadingHTTPServer]] = []

    def start(mode: str = "ok", **kwargs: Any) -> RewardServer:
        state = RewardServer(mode=mode, **kwargs)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        httpd.daemon_threads = True
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}/score"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append((state, httpd))
        return state

    yield start
    for state, httpd in started:
        state.released.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer: Any) -> Path:
    """A randomly initialised 2-layer BERT sequence classifier with the packaged MiniLM
    tokenizer, saved to disk (no download)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = minilm_tokenizer
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    out = tmp_path_factory.mktemp("tiny-rm") / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
