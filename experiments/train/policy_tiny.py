"""The `tiny` policy: a from-scratch query writer over a catalog's vocabulary (~0.4 M parameters).

The prompt is a shopping request; a bag-of-words embedding of it initialises a GRU that emits
words of the catalog vocabulary (attribute, category and filler words) until EOS or
``max_words``. The response text is the words joined by single spaces and each word is one
token, so the token offsets are the word spans (EOS gets an empty span at the end).

Two scalar gates read the decoder state: a copy gate adds a bonus to the words of the request
and a repeat gate to words already written; both are learned, so the policy can learn to
reuse the request's attribute words (which generalises to unseen requests) and to drop filler.
At initialisation the output biases put most of the mass on filler words, a little on every
other word and a small copy bonus on the request's words: the untrained policy writes mostly
filler with some random words, and sampling still explores the request's words often enough
for a group to contain a useful answer.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from experiments.train.rollout import Rollout, Span

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
FILLER_WORDS = (
    "please", "thanks", "thank", "you", "i", "think", "something", "nice", "maybe", "really",
    "good", "great", "just", "kind", "of", "some", "stuff", "thing", "like", "would", "love",
    "hi", "hello", "okay", "well", "very", "perfect", "awesome", "cool", "want",
)  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words_of(text: str) -> list[str]:
    """Lower-cased word tokens of `text` (letters and digits, inner hyphens and apostrophes)."""
    return _WORD.findall(text.lower())


class _ProductLike(Protocol):
    @property
    def title(self) -> str: ...


class CatalogLike(Protocol):
    """The part of `service.retrieval.Catalog` the vocabulary needs."""

    @property
    def products(self) -> Sequence[_ProductLike]: ...

    @property
    def queries(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class TinyVocabulary:
    """Special tokens first, then words in a fixed order (so ids are stable across runs)."""

    words: tuple[str, ...]
    filler: frozenset[str] = frozenset(FILLER_WORDS)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocabulary must start with {SPECIAL_TOKENS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def from_catalog(cls, catalog: CatalogLike, max_title_words: int = 1200) -> TinyVocabulary:
        """Every word of the requests, the `max_title_words` most frequent product-title
        words and the filler words (sorted, so the ids do not depend on catalog order)."""
        request_words = {w for text in catalog.queries.values() for w in words_of(text)}
        counts = Counter(w for p in catalog.products for w in words_of(p.title))
        title_words = {
            w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_title_words]
        }
        return cls.from_words(request_words | title_words | set(FILLER_WORDS))

    @classmethod
    def from_words(cls, words: Iterable[str]) -> TinyVocabulary:
        return cls(SPECIAL_TOKENS + tuple(sorted(set(words) - set(SPECIAL_TOKENS))))

    def __len__(self) -> int:
        return len(self.words)

    def id(self, word: str) -> int:
        return self._index.get(word, self._index[UNK])

    def encode(self, text: str) -> list[int]:
        return [self.id(w) for w in words_of(text)]

    @property
    def eos_id(self) -> int:
        return self._index[EOS]

    @property
    def bos_id(self) -> int:
        return self._index[BOS]

    def filler_ids(self) -> list[int]:
        return [self._index[w] for w in sorted(self.filler) if w in self._index]


@dataclass(frozen=True)
class TinyConfig:
    embed_dim: int = 64
    hidden_dim: int = 128
    max_words: int = 12
    init_filler_mass: float = 0.6
    """Probability mass the untrained policy puts on filler words at each step."""
    init_eos_prob: float = 0.1
    init_copy_prob: float = 0.012
    """Approximate probability of each request word at each step before training."""
    init_repeat_bias: float = 0.0
    """Logit bonus of words already written, before training (negative: discourage repeats)."""


class TinyQueryWriter(nn.Module):  # type: ignore[misc]
    """GRU decoder conditioned on a bag-of-words embedding of the request."""

    def __init__(self, vocabulary: TinyVocabulary, config: TinyConfig) -> None:
        super().__init__()
        size = len(vocabulary)
        self.vocabulary = vocabulary
        self.config = config
        self.prompt_embedding = nn.EmbeddingBag(size, config.hidden_dim, mode="mean")
        self.init_hidden = nn.Linear(config.hidden_dim, config.hidden_dim)
        self.token_embedding = nn.Embedding(size, config.embed_dim)
        self.cell = nn.GRUCell(config.embed_dim, config.hidden_dim)
        self.output = nn.Linear(config.hidden_dim, size)
        self.copy_gate = nn.Linear(config.hidden_dim, 1)
        self.repeat_gate = nn.Linear(config.hidden_dim, 1)
        never = torch.zeros(size)
        never[[vocabulary.id(t) for t in (PAD, BOS, UNK)]] = float("-inf")
        self.register_buffer("never_mask", never, persistent=False)
        self._initialise()

    def _initialise(self) -> None:
        config, vocabulary = self.config, self.vocabulary
        filler = vocabulary.filler_ids()
        n_other = len(vocabulary) - len(SPECIAL_TOKENS) - len(filler)
        other_mass = 1.0 - config.init_filler_mass - config.init_eos_prob
        if not filler or n_other <= 0 or other_mass <= 0:
            raise ValueError("the vocabulary needs filler words, other words and mass for them")
        other_bias = math.log(other_mass / n_other)
        with torch.no_grad():
            nn.init.normal_(self.output.weight, std=0.01)
            self.output.bias.fill_(other_bias)
            self.output.bias[filler] = math.log(config.init_filler_mass / len(filler))
            self.output.bias[vocabulary.eos_id] = math.log(config.init_eos_prob)
            nn.init.zeros_(self.copy_gate.weight)
            self.copy_gate.bias.fill_(max(0.0, math.log(config.init_copy_prob) - other_bias))
            nn.init.zeros_(self.repeat_gate.weight)
            self.repeat_gate.bias.fill_(config.init_repeat_bias)

    def start(self, prompt_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial hidden state (B, H) and request indicator (B, V) for a batch of prompts."""
        flat = torch.tensor([i for ids in prompt_ids for i in ids] or [0], dtype=torch.long)
        offsets = torch.tensor(
            [0] + [len(ids) for ids in prompt_ids[:-1]], dtype=torch.long
        ).cumsum(0)
        bag = self.prompt_embedding(flat, offsets)
        hidden = torch.tanh(self.init_hidden(bag))
        indicator = torch.zeros(len(prompt_ids), len(self.vocabulary))
        for row, ids in enumerate(prompt_ids):
            indicator[row, list(ids)] = 1.0
        indicator[:, [self.vocabulary.id(t) for t in SPECIAL_TOKENS]] = 0.0
        return hidden, indicator

    def step(
        self,
        hidden: torch.Tensor,
        previous: torch.Tensor,
        in_request: torch.Tensor,
        emitted: torch.Tensor,
        position: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: the new hidden state and log-probs over the vocabulary."""
        hidden = self.cell(self.token_embedding(previous), hidden)
        logits = (
            self.output(hidden)
            + self.copy_gate(hidden) * in_request
            + self.repeat_gate(hidden) * emitted
            + self.never_mask
        )
        if position == 0:  # an empty query is useless: EOS cannot come first
            logits = logits.index_fill(1, torch.tensor([self.vocabulary.eos_id]), float("-inf"))
        return hidden, torch.log_softmax(logits, dim=-1)


class TinyPolicy:
    """:class:`TinyQueryWriter` behind the :class:`~experiments.train.rollout.Policy` interface."""

    name = "tiny"

    def __init__(self, vocabulary: TinyVocabulary, config: TinyConfig | None = None) -> None:
        self.vocabulary = vocabulary
        self.config = config or TinyConfig()
        self.model = TinyQueryWriter(vocabulary, self.config)

    @classmethod
    def from_catalog(cls, catalog: CatalogLike, config: TinyConfig | None = None) -> TinyPolicy:
        return cls(TinyVocabulary.from_catalog(catalog), config)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def sample(
        self,
        prompts: Sequence[str],
        group_size: int,
        generator: torch.Generator,
        *,
        greedy: bool = False,
    ) -> list[Rollout]:
        expanded = [p for p in prompts for _ in range(group_size)]
        if not expanded:
            return []
        eos = self.vocabulary.eos_id
        with torch.no_grad():
            hidden, in_request = self.model.start([self.vocabulary.encode(p) for p in expanded])
            batch = len(expanded)
            emitted = torch.zeros_like(in_request)
            previous = torch.full((batch,), self.vocabulary.bos_id, dtype=torch.long)
            active = torch.ones(batch, dtype=torch.bool)
            tokens: list[torch.Tensor] = []
            log_probs: list[torch.Tensor] = []
            for position in range(self.config.max_words):
                hidden, step_log_probs = self.model.step(
                    hidden, previous, in_request, emitted, position
                )
                if greedy:
                    chosen = step_log_probs.argmax(dim=-1)
                else:
                    chosen = torch.multinomial(
                        step_log_probs.exp(), 1, generator=generator
                    ).squeeze(1)
                tokens.append(torch.where(active, chosen, eos))
                log_probs.append(step_log_probs.gather(1, chosen[:, None]).squeeze(1))
                emitted[torch.arange(batch), chosen] = 1.0
                previous = chosen
                active = active & (chosen != eos)
                if not bool(active.any()):
                    break
        token_matrix = torch.stack(tokens, dim=1)
        log_prob_matrix = torch.stack(log_probs, dim=1)
        return [
            self._rollout(prompt, token_matrix[row], log_prob_matrix[row])
            for row, prompt in enumerate(expanded)
        ]

    def _rollout(self, prompt: str, tokens: torch.Tensor, log_probs: torch.Tensor) -> Rollout:
        ids = tokens.tolist()
        length = (
            ids.index(self.vocabulary.eos_id) + 1 if self.vocabulary.eos_id in ids else len(ids)
        )
        words = [self.vocabulary.words[i] for i in ids[:length] if i != self.vocabulary.eos_id]
        offsets: list[Span] = []
        cursor = 0
        for word in words:
            offsets.append((cursor, cursor + len(word)))
            cursor += len(word) + 1
        text = " ".join(words)
        if length > len(words):
            offsets.append((len(text), len(text)))
        return Rollout(
            prompt=prompt,
            text=text,
            token_ids=tokens[:length].clone(),
            token_offsets=tuple(offsets),
            old_log_probs=log_probs[:length].clone(),
            span=(0, len(text)),
        )

    def log_probs(self, rollouts: Sequence[Rollout]) -> list[torch.Tensor]:
        if not rollouts:
            return []
        batch = len(rollouts)
        longest = max(r.length for r in rollouts)
        targets = torch.full((batch, longest), self.vocabulary.eos_id, dtype=torch.long)
        for row, rollout in enumerate(rollouts):
            targets[row, : rollout.length] = rollout.token_ids
        hidden, in_request = self.model.start([self.vocabulary.encode(r.prompt) for r in rollouts])
        emitted = torch.zeros_like(in_request)
        previous = torch.full((batch,), self.vocabulary.bos_id, dtype=torch.long)
        columns: list[torch.Tensor] = []
        for position in range(longest):
            hidden, step_log_probs = self.model.step(
                hidden, previous, in_request, emitted, position
            )
            chosen = targets[:, position]
            columns.append(step_log_probs.gather(1, chosen[:, None]).squeeze(1))
            # Not in place: autograd still needs the previous `emitted` for this step's graph.
            emitted = emitted.index_put((torch.arange(batch), chosen), torch.ones(batch))
            previous = chosen
        matrix = torch.stack(columns, dim=1)
        return [matrix[row, : r.length] for row, r in enumerate(rollouts)]

    def save(self, out_dir: Path) -> None:
        """The weights (``tiny_policy.pt``) and the vocabulary (``tiny_vocabulary.json``)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), out_dir / "tiny_policy.pt")
        meta: dict[str, Any] = {"words": list(self.vocabulary.words), "config": vars(self.config)}
        (out_dir / "tiny_vocabulary.json").write_text(json.dumps(meta) + "\n", encoding="utf-8")


__all__ = [
    "FILLER_WORDS",
    "TinyConfig",
    "TinyPolicy",
    "TinyQueryWriter",
    "TinyVocabulary",
    "words_of",
]
