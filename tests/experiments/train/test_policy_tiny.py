"""The tiny query writer: vocabulary, sampling, offsets, log-probs and its untrained behaviour."""

from __future__ import annotations

import torch

from experiments.train.policy_tiny import (
    FILLER_WORDS,
    SPECIAL_TOKENS,
    TinyConfig,
    TinyPolicy,
    TinyVocabulary,
    words_of,
)
from service.retrieval.catalog import Catalog


def _requests(catalog: Catalog, n: int = 6) -> list[str]:
    return [catalog.queries[q] for q in catalog.query_ids("train")[:n]]


def test_vocabulary_is_stable_and_covers_requests_and_filler(demo_catalog: Catalog) -> None:
    first = TinyVocabulary.from_catalog(demo_catalog)
    second = TinyVocabulary.from_catalog(demo_catalog)
    assert first.words == second.words
    assert first.words[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    assert set(FILLER_WORDS) <= set(first.words)
    for text in demo_catalog.queries.values():
        assert all(first.id(w) != first.id("<unk>") for w in words_of(text))
    assert first.id("zzz-not-a-word") == first.id("<unk>")


def test_size_is_a_few_hundred_thousand_parameters(demo_catalog: Catalog) -> None:
    policy = TinyPolicy.from_catalog(demo_catalog)
    assert 100_000 <= policy.num_parameters() <= 1_000_000


def test_samples_are_word_tokens_with_exact_offsets(demo_catalog: Catalog) -> None:
    policy = TinyPolicy.from_catalog(demo_catalog)
    rollouts = policy.sample(_requests(demo_catalog), 4, torch.Generator().manual_seed(0))
    assert len(rollouts) == 24
    vocabulary = policy.vocabulary
    for rollout in rollouts:
        ids = rollout.token_ids.tolist()
        assert 1 <= rollout.length <= policy.config.max_words + 1
        assert len(rollout.token_offsets) == rollout.length == rollout.old_log_probs.numel()
        assert rollout.text.strip() and rollout.span == (0, len(rollout.text))
        words = [rollout.text[a:b] for a, b in rollout.token_offsets]
        if ids[-1] == vocabulary.eos_id:
            assert rollout.token_offsets[-1] == (len(rollout.text), len(rollout.text))
            assert vocabulary.eos_id not in ids[:-1]
            words, ids = words[:-1], ids[:-1]
        else:
            assert rollout.length == policy.config.max_words
        assert words == [vocabulary.words[i] for i in ids]
        assert " ".join(words) == rollout.text
        assert bool((rollout.old_log_probs <= 0).all())


def test_sampling_is_deterministic_under_a_seeded_generator(demo_catalog: Catalog) -> None:
    requests = _requests(demo_catalog)

    def texts(seed: int) -> list[str]:
        torch.manual_seed(seed)
        policy = TinyPolicy.from_catalog(demo_catalog)
        return [r.text for r in policy.sample(requests, 3, torch.Generator().manual_seed(seed))]

    assert texts(1) == texts(1)
    assert texts(1) != texts(2)


def test_recomputed_log_probs_match_sampling_time(demo_catalog: Catalog) -> None:
    policy = TinyPolicy.from_catalog(demo_catalog)
    rollouts = policy.sample(_requests(demo_catalog), 4, torch.Generator().manual_seed(5))
    recomputed = policy.log_probs(rollouts)
    for rollout, values in zip(rollouts, recomputed, strict=True):
        assert values.requires_grad
        torch.testing.assert_close(values.detach(), rollout.old_log_probs, atol=1e-5, rtol=0)


def test_untrained_policy_writes_mostly_filler(demo_catalog: Catalog) -> None:
    config = TinyConfig()
    policy = TinyPolicy.from_catalog(demo_catalog, config)
    rollouts = policy.sample(_requests(demo_catalog, 20), 8, torch.Generator().manual_seed(0))
    words = [w for r in rollouts for w in r.text.split()]
    filler_share = sum(w in FILLER_WORDS for w in words) / len(words)
    assert abs(filler_share - config.init_filler_mass / (1 - config.init_eos_prob)) < 0.15
    assert len({w for w in words if w not in FILLER_WORDS}) > 20  # and random other words


def test_greedy_decoding_is_one_fixed_answer(demo_catalog: Catalog) -> None:
    policy = TinyPolicy.from_catalog(demo_catalog)
    requests = _requests(demo_catalog, 3)
    first = policy.sample(requests, 1, torch.Generator().manual_seed(0), greedy=True)
    second = policy.sample(requests, 1, torch.Generator().manual_seed(99), greedy=True)
    assert [r.text for r in first] == [r.text for r in second]
