"""The verl reward function, loaded the way verl loads a custom reward function
(``get_custom_reward_fn`` with a ``pkg://`` path and ``reward_kwargs``), scores a response as
``/attribute`` does (one game)."""

from __future__ import annotations

import trainer_client as tc


def test_verl_loads_compute_score_and_it_is_the_service_ndcg(compose, live_service):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = compose(
        "reward.custom_reward_function.path=pkg://trainer_client.verl.reward",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.url={live_service}",
    )
    score = get_custom_reward_fn(config)
    texts = ["<answer>cotton cardigan for women</answer>", "<answer>wool socks</answer>"]
    rewards = [
        score(data_source="ospo-demo", solution_str=text, ground_truth=label, extra_info={})
        for text, label in zip(texts, ["demo-0000", {"query_id": "demo-0000"}], strict=True)
    ]
    group = tc.Group(
        id="g",
        target=tc.Target(query_id="demo-0000"),
        responses=[tc.Response(text=t) for t in texts],
    )
    with tc.AttributionClient(live_service) as client:
        answer = client.attribute([group])
    assert rewards == [r.reward for r in answer.groups[0].responses]
    assert rewards[0] > 0


def test_compute_score_plays_the_game_of_its_reward_kwargs(compose, live_service):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = compose(
        "reward.custom_reward_function.path=pkg://trainer_client.verl.reward",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.url={live_service}",
        "+reward.custom_reward_function.reward_kwargs.k=3",
        "+reward.custom_reward_function.reward_kwargs.query_tag=search",
    )
    score = get_custom_reward_fn(config)
    text = "<think>hmm</think><search>cotton cardigan for women</search>"
    reward = score(data_source="ospo-demo", solution_str=text, ground_truth="demo-0000")
    group = tc.Group(
        id="g", target=tc.Target(query_id="demo-0000"), responses=[tc.Response(text=text)]
    )
    options = tc.Options(k=3, query_tag="search")
    with tc.AttributionClient(live_service) as client:
        answer = client.attribute([group], options)
    assert reward == answer.groups[0].responses[0].reward > 0
