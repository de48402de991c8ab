"""The OSPO plug-in wrapped around the REAL openrlhf 0.11.2 RemoteExperienceMaker.

Hand-built right-padded Experience batches of different lengths go through the wrapped
compute_advantages_and_returns against a live service on loopback (the real app under
uvicorn, and a stdlib fake with known answers); advantages must land exactly on the
action_mask positions and equal what /attribute returned.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest

import trainer_client as tc
from trainer_client import openrlhf_plugin as plugin

pytestmark = pytest.mark.openrlhf
torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def clean_install(experience_maker_module: Any) -> Iterator[None]:
    yield
    plugin.uninstall()


def make_sample(
    experience_class: Any,
    tokenizer: Any,
    prompt: str,
    response: str,
    reward: float,
    label: str,
    pad_id: int,
) -> Any:
    """One rollout sample as OpenRLHF builds it: prompt + response ids, action_mask[t] ->
    token t+1, episode tensors of length 1."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    ]
    ids = p + r
    full_mask = torch.zeros(len(ids), dtype=torch.bool)
    full_mask[len(p) :] = True
    return experience_class(
        sequences=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        action_mask=full_mask[1:].unsqueeze(0),
        kl=torch.zeros(1, len(ids) - 1),
        rewards=torch.tensor([reward]),
        response_length=torch.tensor([float(len(r))]),
        prompts=[prompt],
        labels=[label],
        info={},
    )


def build_batches(
    experience_class: Any,
    tokenizer: Any,
    samples: list[tuple[str, str, float, str]],
    micro_batch: int,
) -> list[Any]:
    """Concatenate single samples (right-padded) into micro-batches, indexed like
    split_rollout_samples does."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    singles = [make_sample(experience_class, tokenizer, *s, pad_id=pad_id) for s in samples]
    for i, single in enumerate(singles):
        single.index = [i]
    return [
        experience_class.concat_experiences(singles[i : i + micro_batch], pad_id)
        for i in range(0, len(singles), micro_batch)
    ]


def demo_samples(queries: dict[str, str]) -> list[tuple[str, str, float, str]]:
    qids = sorted(queries)[:2]
    samples = []
    for qid in qids:
        query = queries[qid]
        prompt = f"Write a product search query for: {query[:40]}"
        samples.append((prompt, f"<think>keep it all</think><answer>{query}</answer>", 0.0, qid))
        samples.append((prompt, f"<answer>{' '.join(query.split()[:2])}</answer>", 0.0, qid))
        samples.append((prompt, "<answer>blue socks</answer>", 0.0, qid))
    return samples


def assert_only_action_positions(experience: Any) -> None:
    mask = experience.action_mask.bool()
    assert experience.advantages.shape == mask.shape
    assert experience.advantages[~mask].abs().sum() == 0
    assert torch.equal(experience.returns, experience.advantages)


@pytest.mark.parametrize("estimator", ["group_norm", "dr_grpo", "rloo"])
def test_wrapped_method_against_the_real_service(
    experience_class,
    make_maker,
    smollm2_tokenizer,
    live_service,
    demo_queries,
    require_group_errors,
    estimator,
):
    samples = demo_samples(demo_queries)  # 2 prompts x 3 samples, very different lengths
    batches = build_batches(experience_class, smollm2_tokenizer, samples, micro_batch=4)
    assert len({b.sequences.shape[1] for b in batches}) == 2  # micro-batches of different widths
    require_group_errors(live_service)
    settings = plugin.PluginSettings(url=live_service, send_reward=False, seed=5, clip=None)
    plugin.install(settings)
    maker = make_maker(smollm2_tokenizer, estimator=estimator, n_samples=3)
    out = maker.compute_advantages_and_returns(batches)

    # What /attribute returns for exactly these responses, asked directly (step 0: seed 5).
    members: dict[int, list[tc.Response]] = {}
    labels: dict[int, Any] = {}
    where = []
    for batch in out:
        for i, ids in enumerate(plugin.response_ids(batch.sequences, batch.action_mask)):
            offsets = tc.token_offsets(smollm2_tokenizer, ids)
            g = batch.index[i] // 3
            labels[g] = batch.labels[i]
            where.append((g, len(members.setdefault(g, []))))
            members[g].append(tc.Response(offsets.text, token_offsets=offsets.offsets))
    groups = [
        tc.Group(f"g{g}", tc.Target.from_label(labels[g]), members[g]) for g in sorted(members)
    ]
    options = dataclasses.replace(settings.options(estimator), errors="group", clip=None)
    with tc.AttributionClient(live_service) as client:
        expected = client.attribute(groups, options)

    k = 0
    for batch in out:
        assert_only_action_positions(batch)
        for i in range(len(batch.index)):
            g, j = where[k]
            answer = expected.groups[g].responses[j]
            got = batch.advantages[i][batch.action_mask[i].bool()]
            assert got.tolist() == pytest.approx(list(answer.token_advantages or ()), abs=1e-6)
            assert batch.info["ospo_reward"][i].item() == pytest.approx(answer.reward, abs=1e-6)
            k += 1
        for key in ("ospo_reward", "ospo_advantage", "ospo_segments", "ospo_fallback", "return"):
            assert batch.info[key].shape == (len(batch.index),)
        assert batch.info["ospo_fallback"].sum() == 0
    assert k == len(samples)
    # the full query beats "blue socks" in both groups
    assert expected.groups[0].responses[0].reward > expected.groups[0].responses[2].reward


def test_exact_values_from_a_fake_service(
    experience_class, make_maker, minilm_tokenizer, fake_attribute_service
):
    url, bodies = fake_attribute_service
    samples = [
        ("find boots", "<answer>red boots</answer>", 1.0, "q1"),
        ("find a kettle", "<answer>copper kettle for one cup at a time</answer>", 0.0, '{"P9": 2}'),
        (
            "find boots",
            "<answer>waterproof leather hiking boots for women size 8</answer>",
            0.0,
            "q1",
        ),
        ("find a kettle", "<answer>kettle</answer>", 1.0, '{"P9": 2}'),
    ]
    # Two micro-batches that each mix both prompts; the index says which group a row is in.
    batches = build_batches(experience_class, minilm_tokenizer, samples, micro_batch=2)
    for batch in batches:
        batch.index = [0, 2] if batch is batches[0] else [1, 3]
    plugin.install(plugin.PluginSettings(url=url))
    maker = make_maker(minilm_tokenizer, estimator="group_norm", n_samples=2)
    out = maker.compute_advantages_and_returns(batches)

    (body,) = bodies
    assert [g["target"] for g in body["groups"]] == [{"query_id": "q1"}, {"relevant": {"P9": 2.0}}]
    assert body["options"]["baseline"] == "group_norm"
    # rewards were sent as OpenRLHF had them (send_reward default)
    assert [r["reward"] for g in body["groups"] for r in g["responses"]] == [1.0, 0.0, 0.0, 1.0]
    positions = {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}  # index -> (group, response)
    for batch in out:
        assert_only_action_positions(batch)
        for i, index in enumerate(batch.index):
            g, r = positions[index]
            n = int(batch.action_mask[i].sum())
            expected = [10.0 * g + r + t / 100 for t in range(n)]
            assert batch.advantages[i][batch.action_mask[i].bool()].tolist() == pytest.approx(
                expected
            )
            sent = body["groups"][g]["responses"][r]
            assert len(sent["token_offsets"]) == n
            assert sent["token_offsets"][-1][0] == sent["token_offsets"][-1][1]  # EOS: empty span


def test_install_is_idempotent(experience_maker_module, fake_attribute_service):
    url, _ = fake_attribute_service
    cls = experience_maker_module.RemoteExperienceMaker
    original = cls.compute_advantages_and_returns
    plugin.install(plugin.PluginSettings(url=url))
    wrapped = cls.compute_advantages_and_returns
    plugin.install(plugin.PluginSettings(url=url, on_failure="fallback"))
    assert cls.compute_advantages_and_returns is wrapped
    assert wrapped.__wrapped__ is original
    assert plugin.is_installed()
    plugin.uninstall()
    assert cls.compute_advantages_and_returns is original and not plugin.is_installed()


def test_install_reads_the_environment(
    monkeypatch, experience_maker_module, fake_attribute_service
):
    url, _ = fake_attribute_service
    monkeypatch.setenv("OSPO_ATTRIBUTE_URL", url)
    monkeypatch.setenv("OSPO_ON_FAILURE", "fallback")
    plugin.install()  # as Ray's worker_process_setup_hook calls it
    assert plugin.is_installed()
    monkeypatch.delenv("OSPO_ATTRIBUTE_URL")
    plugin.uninstall()
    with pytest.raises(plugin.OspoPluginError, match="OSPO_ATTRIBUTE_URL"):
        plugin.install()


def test_other_openrlhf_versions_are_refused(monkeypatch, experience_maker_module):
    real_version = importlib.metadata.version
    assert real_version("openrlhf").startswith("0.11.")
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: "0.9.5" if name == "openrlhf" else real_version(name),
    )
    with pytest.raises(plugin.OspoPluginError, match=r"openrlhf 0\.9\.5 is installed"):
        plugin.install(plugin.PluginSettings(url="http://127.0.0.1:1"))
    assert not plugin.is_installed()


def test_gae_is_refused_before_anything_runs(
    experience_class, make_maker, minilm_tokenizer, fake_attribute_service
):
    url, bodies = fake_attribute_service
    batches = build_batches(
        experience_class,
        minilm_tokenizer,
        [("p", "<answer>a</answer>", 1.0, "q"), ("p", "<answer>b</answer>", 0.0, "q")],
        2,
    )
    plugin.install(plugin.PluginSettings(url=url))
    maker = make_maker(minilm_tokenizer, estimator="gae", n_samples=2)
    with pytest.raises(plugin.OspoPluginError, match="gae"):
        maker.compute_advantages_and_returns(batches)
    assert batches[0].advantages is None and bodies == []


def test_fallback_on_a_dead_service_keeps_grpo_advantages(
    experience_class, make_maker, minilm_tokenizer, dead_url, experience_maker_module
):
    samples = [
        ("p", "<answer>red boots</answer>", 1.0, "q"),
        ("p", "<answer>boots for hiking in the rain</answer>", 0.0, "q"),
    ]
    maker = make_maker(minilm_tokenizer, estimator="group_norm", n_samples=2)
    plain = experience_maker_module.RemoteExperienceMaker.compute_advantages_and_returns(
        maker, build_batches(experience_class, minilm_tokenizer, samples, 2)
    )
    plugin.install(plugin.PluginSettings(url=dead_url, on_failure="fallback", max_retries=1))
    (out,) = maker.compute_advantages_and_returns(
        build_batches(experience_class, minilm_tokenizer, samples, 2)
    )
    assert torch.equal(out.advantages, plain[0].advantages)
    mask = out.action_mask.bool()
    assert out.advantages[0][mask[0]].tolist() == pytest.approx(
        [0.7071] * int(mask[0].sum()), abs=1e-3
    )
    assert out.info["ospo_fallback"].tolist() == [1.0, 1.0]


def test_fail_mode_on_a_dead_service_raises(
    experience_class, make_maker, minilm_tokenizer, dead_url
):
    samples = [("p", "<answer>a</answer>", 1.0, "q"), ("p", "<answer>b</answer>", 0.0, "q")]
    plugin.install(plugin.PluginSettings(url=dead_url, max_retries=1, on_failure="fail"))
    maker = make_maker(minilm_tokenizer, estimator="group_norm", n_samples=2)
    with pytest.raises(tc.ConnectError):
        maker.compute_advantages_and_returns(
            build_batches(experience_class, minilm_tokenizer, samples, 2)
        )


TWO_GROUPS = [
    ("find boots", "<answer>red boots</answer>", 1.0, "q1"),
    ("find boots", "<answer>boots for hiking in the rain</answer>", 0.0, "q1"),
    ("find a kettle", "<answer>kettle</answer>", 0.0, "q2"),
    ("find a kettle", "<answer>copper kettle for one cup</answer>", 1.0, "q2"),
]


def plain_advantages(
    experience_maker_module: Any, maker: Any, experience_class: Any, tokenizer: Any, samples: Any
) -> list[Any]:
    """What OpenRLHF's own method gives (the fallback must keep exactly this)."""
    original = experience_maker_module.RemoteExperienceMaker.compute_advantages_and_returns
    method = getattr(original, "__wrapped__", original)
    batches = method(maker, build_batches(experience_class, tokenizer, samples, 2))
    return [b.advantages for b in batches]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda a, m: setattr(a.actor, "policy_loss_type", "gspo"), "policy_loss_type gspo"),
        (
            lambda a, m: (setattr(a.algo.kl, "use_loss", False), setattr(m.kl_ctl, "value", 0.01)),
            "KL in the reward",
        ),
        (lambda a, m: setattr(a.train, "agent_func_path", "/x/agent.py"), "agent mode"),
        (lambda a, m: setattr(a.data, "label_key", None), "--data.label_key is required"),
        (
            lambda a, m: setattr(a, "reward", type(a.reward)(remote_url=["http://h:8000/reward"])),
            "retriever=default but --ospo.retriever is mpnet",
        ),
    ],
    ids=["gspo", "kl-in-reward", "agent", "no-label-key", "reward-url-retriever"],
)
def test_refusals_come_before_anything_runs(
    experience_class, make_maker, minilm_tokenizer, fake_attribute_service, change, needle
):
    url, bodies = fake_attribute_service
    plugin.install(plugin.PluginSettings(url=url, retriever="mpnet"))
    maker = make_maker(minilm_tokenizer)
    maker.strategy.args.reward.remote_url = ["http://h:8000/reward?retriever=mpnet"]
    change(maker.strategy.args, maker)
    batches = build_batches(experience_class, minilm_tokenizer, TWO_GROUPS[:2], 2)
    with pytest.raises(plugin.OspoPluginError) as info:
        maker.compute_advantages_and_returns(batches)
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and needle in lines[1]  # a header and one line for the one problem
    assert batches[0].advantages is None and bodies == []


def test_a_401_stops_at_once_even_in_fallback_mode(
    experience_class, make_maker, minilm_tokenizer, standin
):
    standin.script.append(("status", 401, None, {"code": "unauthorized", "message": "bad key"}))
    plugin.install(plugin.PluginSettings(url=standin.url, on_failure="fallback"))
    maker = make_maker(minilm_tokenizer)
    with pytest.raises(tc.AuthenticationError, match="bad key"):
        maker.compute_advantages_and_returns(
            build_batches(experience_class, minilm_tokenizer, TWO_GROUPS, 2)
        )
    assert len(standin.bodies) == 1


def test_a_group_error_keeps_openrlhf_advantages_for_that_group_only(
    experience_class, make_maker, minilm_tokenizer, standin, experience_maker_module
):
    maker = make_maker(minilm_tokenizer)
    plain = plain_advantages(
        experience_maker_module, maker, experience_class, minilm_tokenizer, TWO_GROUPS
    )
    standin.script.append(("group_error", {1}, "unknown_query"))
    plugin.install(plugin.PluginSettings(url=standin.url))
    out = maker.compute_advantages_and_returns(
        build_batches(experience_class, minilm_tokenizer, TWO_GROUPS, 2)
    )
    scored, failed = out  # micro-batches of 2: group q1, then group q2
    assert torch.equal(failed.advantages, plain[1])
    assert not torch.equal(scored.advantages, plain[0])
    assert_only_action_positions(scored)
    assert scored.info["ospo_fallback"].tolist() == [0.0, 0.0]
    assert failed.info["ospo_fallback"].tolist() == [1.0, 1.0]
    for batch in out:
        assert batch.info["ospo/fallback_groups"].tolist() == [1.0, 1.0]
        assert batch.info["ospo/service_ms"].shape == (2,)


def test_object_labels_in_fallback_mode_do_not_crash(
    experience_class, make_maker, minilm_tokenizer, dead_url, experience_maker_module
):
    samples = [
        ("p", "<answer>red boots</answer>", 1.0, {"query_id": "q", "pool": ["P1"]}),
        ("p", "<answer>boots for hiking</answer>", 0.0, {"query_id": "q", "pool": ["P1"]}),
    ]
    maker = make_maker(minilm_tokenizer)
    plain = plain_advantages(
        experience_maker_module, maker, experience_class, minilm_tokenizer, samples
    )
    plugin.install(plugin.PluginSettings(url=dead_url, on_failure="fallback", retry_budget_s=0.3))
    (out,) = maker.compute_advantages_and_returns(
        build_batches(experience_class, minilm_tokenizer, samples, 2)
    )
    assert torch.equal(out.advantages, plain[0])
    assert out.info["ospo/fallback_step"].tolist() == [1.0, 1.0]


def test_consecutive_fallback_steps_stop_the_run(
    experience_class, make_maker, minilm_tokenizer, dead_url
):
    plugin.install(
        plugin.PluginSettings(url=dead_url, retry_budget_s=0.2, max_consecutive_fallbacks=1)
    )
    maker = make_maker(minilm_tokenizer)

    def step() -> Any:
        return maker.compute_advantages_and_returns(
            build_batches(experience_class, minilm_tokenizer, TWO_GROUPS[:2], 2)
        )

    step()
    with pytest.raises(plugin.OspoPluginError, match="2 consecutive training steps"):
        step()


def test_reward_model_targets_through_the_plugin(
    experience_class, make_maker, minilm_tokenizer, standin
):
    plugin.install(plugin.PluginSettings(url=standin.url, reward_model="sentiment"))
    maker = make_maker(minilm_tokenizer)
    maker.strategy.args.data.label_key = None  # a reward model needs no label
    samples = [(p, r, w, {"tone": "warm"}) for p, r, w, _ in TWO_GROUPS[:2]]
    maker.compute_advantages_and_returns(
        build_batches(experience_class, minilm_tokenizer, samples, 2)
    )
    ((group,),) = [body["groups"] for body in standin.bodies]
    assert group["target"] == {"reward_model": "sentiment", "label": '{"tone": "warm"}'}
    assert group["prompt"] == "find boots"
