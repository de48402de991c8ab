"""Samples built by OpenRLHF's own code path, not by hand: its single-turn executor
(prompt tokenisation, prompt + generated ids, action ranges, the remote reward call) with a
stand-in engine in place of vLLM, then the samples generator's response-to-experience step
(the one-token shift of the action mask), then the experience maker's own micro-batching.

The plug-in must read back exactly the generated tokens: the text it sends to /attribute is
the original response, and a variant without the one-token shift is caught.
"""

from __future__ import annotations

import asyncio
import json
import types
from typing import Any

import pytest

import trainer_client as tc
from trainer_client import openrlhf_plugin as plugin
from trainer_client.openrlhf import core

pytestmark = pytest.mark.openrlhf
torch = pytest.importorskip("torch")

PROMPT = "<|im_start|>user\nWrite a product search query: {}<|im_end|>\n<|im_start|>assistant\n"
RESPONSES = [
    "<think>she wants warmth</think><answer>cotton cardigan for women</answer>",
    "<answer>cardigan</answer>",
    "<answer>blue socks size 9, wool</answer>",
]


@pytest.fixture(scope="module")
def openrlhf_modules(experience_maker_module: Any, openrlhf_stubs: Any) -> types.SimpleNamespace:
    stubs = openrlhf_stubs
    return types.SimpleNamespace(
        agent=stubs.import_with_stubs("openrlhf.utils.agent"),
        samples=stubs.import_with_stubs(stubs.SAMPLES_GENERATOR),
    )


@pytest.fixture(scope="module")
def llm_tokenizer(smollm2_tokenizer: Any) -> Any:
    """SmolLM2's tokenizer as OpenRLHF's get_tokenizer leaves it: pad = eos."""
    import copy

    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class StandInEngine:
    """What the executor needs of a vLLM engine: generate() returning the scripted ids."""

    def __init__(self, outputs: list[list[int]]) -> None:
        self.outputs = list(outputs)

    async def generate(
        self, prompt_token_ids: list[int], params: Any, multi_modal_data: Any = None
    ) -> Any:
        output = types.SimpleNamespace(
            token_ids=self.outputs.pop(0), finish_reason="stop", logprobs=None
        )
        return types.SimpleNamespace(outputs=[output])


def rollout_samples(
    modules: types.SimpleNamespace,
    tokenizer: Any,
    reward_url: str,
    prompts_and_labels: list[tuple[str, Any]],
    responses: list[str],
) -> tuple[list[Any], list[list[int]]]:
    """len(prompts) x len(responses) samples through OpenRLHF's executor and generator."""
    generated = [
        tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for text in responses
    ]
    executor = modules.agent.SingleTurnAgentExecutor(remote_rm_url=[reward_url])
    generator = modules.samples.SamplesGenerator.__new__(modules.samples.SamplesGenerator)
    params = types.SimpleNamespace(max_tokens=64, logprobs=None)
    samples, ids = [], []
    for prompt, label in prompts_and_labels:
        engine = StandInEngine(generated)
        for response_ids in generated:
            output = asyncio.run(executor.execute(prompt, label, params, 512, tokenizer, engine))
            samples.append(generator._process_response_into_experience(output, max_len=512))
            ids.append(response_ids)
    return samples, ids


def experience_batches(maker: Any, samples: list[Any]) -> list[Any]:
    """The maker's own micro-batching; then what make_experience adds without models
    (with --algo.kl.use_loss its per-token KL is zeros)."""
    batches = maker.split_rollout_samples(samples)
    for batch in batches:
        batch.kl = torch.zeros(batch.action_mask.shape, dtype=torch.float32)
    return batches


@pytest.fixture
def reward_file(tmp_path: Any) -> str:
    """A reward function file (OpenRLHF's --reward.remote_url *.py): reward = response length."""
    path = tmp_path / "reward_func.py"
    path.write_text(
        "def reward_func(queries, prompts, labels, **kwargs):\n"
        "    r = [float(len(q) - len(p)) for q, p in zip(queries, prompts)]\n"
        "    return {'rewards': r, 'scores': r, 'extra_logs': {}}\n"
    )
    return str(path)


def sent_texts_are_the_responses(
    openrlhf_modules: Any,
    llm_tokenizer: Any,
    make_maker: Any,
    reward_file: str,
    fake_attribute_service: Any,
) -> bool:
    url, bodies = fake_attribute_service
    bodies.clear()
    samples, _ = rollout_samples(
        openrlhf_modules,
        llm_tokenizer,
        reward_file,
        [(PROMPT.format("a cardigan"), "demo-0000"), (PROMPT.format("socks"), {"P1": 2})],
        RESPONSES,
    )
    maker = make_maker(llm_tokenizer, estimator="group_norm", n_samples=len(RESPONSES))
    plugin.install(plugin.PluginSettings(url=url))
    try:
        maker.compute_advantages_and_returns(experience_batches(maker, samples))
    finally:
        plugin.uninstall()
    (body,) = bodies
    sent = [r["text"] for g in body["groups"] for r in g["responses"]]
    return sent == RESPONSES * 2


def test_the_text_at_the_action_positions_is_the_generated_response(
    openrlhf_modules, llm_tokenizer, make_maker, reward_file
):
    samples, generated = rollout_samples(
        openrlhf_modules,
        llm_tokenizer,
        reward_file,
        [(PROMPT.format("a cardigan"), "demo-0000")],
        RESPONSES,
    )
    maker = make_maker(llm_tokenizer, n_samples=len(RESPONSES))
    batches = experience_batches(maker, samples)
    assert len(batches) == 2  # micro-batches of 2 + 1, right-padded to different widths
    rows = [ids for b in batches for ids in core.response_ids(b.sequences, b.action_mask)]
    assert [list(ids) for ids in rows] == generated
    decoded = [tc.token_offsets(llm_tokenizer, ids).text for ids in rows]
    assert decoded == RESPONSES
    # Without the shift, the same mask reads the prompt's last token and drops the EOS.
    unshifted = [
        tuple(b.sequences[i, :-1][b.action_mask[i].bool()].tolist())
        for b in batches
        for i in range(b.sequences.shape[0])
    ]
    assert [
        llm_tokenizer.decode(list(ids), skip_special_tokens=True) for ids in unshifted
    ] != RESPONSES


def test_the_plugin_sends_the_original_responses_and_a_missing_shift_is_caught(
    openrlhf_modules, llm_tokenizer, make_maker, reward_file, fake_attribute_service, monkeypatch
):
    args = (openrlhf_modules, llm_tokenizer, make_maker, reward_file, fake_attribute_service)
    assert sent_texts_are_the_responses(*args)

    def without_shift(sequences: Any, action_mask: Any) -> list[tuple[int, ...]]:
        width = action_mask.shape[1]
        mask = action_mask.bool()
        return [tuple(sequences[i, :width][mask[i]].tolist()) for i in range(mask.shape[0])]

    monkeypatch.setattr(core, "response_ids", without_shift)
    assert not sent_texts_are_the_responses(*args)


def test_advantages_land_on_the_generated_tokens(
    openrlhf_modules, llm_tokenizer, make_maker, reward_file, fake_attribute_service
):
    url, bodies = fake_attribute_service
    samples, generated = rollout_samples(
        openrlhf_modules,
        llm_tokenizer,
        reward_file,
        [(PROMPT.format("a cardigan"), {"query_id": "demo-0000", "pool": ["P1", "P2"]})],
        RESPONSES,
    )
    maker = make_maker(llm_tokenizer, n_samples=len(RESPONSES))
    plugin.install(plugin.PluginSettings(url=url))
    try:
        out = maker.compute_advantages_and_returns(experience_batches(maker, samples))
    finally:
        plugin.uninstall()
    (body,) = bodies
    (group,) = body["groups"]
    assert group["target"] == {"query_id": "demo-0000"} and group["pool"] == ["P1", "P2"]
    # the reward function's rewards (response length) reached the service
    assert [r["reward"] for r in group["responses"]] == pytest.approx(
        [float(len(llm_tokenizer.decode(ids, skip_special_tokens=False))) for ids in generated]
    )
    k = 0
    for batch in out:
        mask = batch.action_mask.bool()
        for i in range(batch.sequences.shape[0]):
            positions = mask[i].nonzero().flatten()
            # the advantage of token t sits where OpenRLHF scores token sequences[i, t + 1]
            assert batch.sequences[i, positions + 1].tolist() == generated[k]
            expected = [k + t / 100 for t in range(len(generated[k]))]
            assert batch.advantages[i][mask[i]].tolist() == pytest.approx(expected)
            assert batch.advantages[i][~mask[i]].abs().sum() == 0
            k += 1
    assert k == len(RESPONSES)


def test_reward_and_coalition_values_are_one_game_with_a_pool(
    openrlhf_modules, llm_tokenizer, make_maker, live_service, demo_queries, require_group_errors
):
    """/reward (called by OpenRLHF's executor) and /attribute (called by the plug-in) score a
    {"query_id", "pool"} label on the same game: the full query's value is the reward."""
    require_group_errors(live_service)
    from service.retrieval.demo import build_demo_catalog

    catalog = build_demo_catalog(seed=0)
    qid = sorted(demo_queries)[0]
    relevant = sorted(catalog.labels[qid])
    others = [p.id for p in catalog.products if p.id not in catalog.labels[qid]][:5]
    label = {"query_id": qid, "pool": [*relevant[:2], *others]}
    query = demo_queries[qid]
    responses = [f"<answer>{query}</answer>", f"<answer>{query.split()[0]} socks</answer>"]
    samples, _ = rollout_samples(
        openrlhf_modules,
        llm_tokenizer,
        f"{live_service}/reward",
        [(PROMPT.format(query[:30]), label)],
        responses,
    )
    rewards = [float(s.rewards[0]) for s in samples]
    # the pool matters: the same texts without it score differently
    with tc.AttributionClient(live_service) as client:
        unpooled = client.reward(
            [llm_tokenizer.decode(s.sequences[0].tolist()) for s in samples],
            [s.prompts[0] for s in samples],
            [qid] * len(samples),
        ).rewards
    assert list(unpooled) != pytest.approx(rewards)

    maker = make_maker(llm_tokenizer, n_samples=len(responses))
    plugin.install(plugin.PluginSettings(url=live_service, send_reward=False))
    try:
        out = maker.compute_advantages_and_returns(experience_batches(maker, samples))
    finally:
        plugin.uninstall()
    scored = [float(x) for batch in out for x in batch.info["ospo_reward"]]
    assert scored == pytest.approx(rewards, abs=1e-6)
    assert json.loads(json.dumps(label)) == label  # the dict label went through unchanged


def test_the_trainer_global_step_seeds_the_coalition_sample(
    openrlhf_modules, openrlhf_stubs, llm_tokenizer, make_maker, reward_file, fake_attribute_service
):
    """OpenRLHF's own train_step -> make_experience_batch -> the wrapped method: the request's
    seed is the plug-in's base seed plus the trainer's global step."""
    trainer_module = openrlhf_stubs.import_with_stubs("openrlhf.trainer.ppo_trainer")
    url, bodies = fake_attribute_service
    samples, _ = rollout_samples(
        openrlhf_modules,
        llm_tokenizer,
        reward_file,
        [(PROMPT.format("a cardigan"), "demo-0000")],
        RESPONSES,
    )
    maker = make_maker(llm_tokenizer, n_samples=len(RESPONSES))

    def make_experience(samples_list: list[Any]) -> list[Any]:  # the model forwards
        for batch in samples_list:
            batch.kl = torch.zeros(batch.action_mask.shape, dtype=torch.float32)
        return samples_list

    class PastTheAdvantageStep(Exception):
        pass

    def actor_append(**kwargs: Any) -> Any:
        raise PastTheAdvantageStep

    maker.make_experience = make_experience
    trainer = trainer_module.BasePPOTrainer.__new__(trainer_module.BasePPOTrainer)
    trainer.experience_maker = maker
    trainer.tokenizer = llm_tokenizer
    trainer.args = maker.args
    trainer.actor_model_group = types.SimpleNamespace(async_run_method_batch=actor_append)
    plugin.install(plugin.PluginSettings(url=url, seed=100))
    try:
        for global_step in (41, 42):
            with pytest.raises(PastTheAdvantageStep):
                trainer.train_step(list(samples), global_step)
    finally:
        plugin.uninstall()
    assert [b["options"]["seed"] for b in bodies] == [141, 142]
