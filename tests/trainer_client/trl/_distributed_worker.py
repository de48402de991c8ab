"""One rank of a 2-process CPU GRPO run (``torch.distributed.run``, gloo), for
test_distributed.py: builds ``OspoGRPOTrainer`` with 3 completions per process and groups of
2, so the second group straddles the processes; trains 2 steps; writes what reached each
rank's ``_compute_loss`` (and, on rank 0, what the service answered) to ``OUT/rank{r}.json``.

Usage: python -m torch.distributed.run --nproc_per_node 2 _distributed_worker.py URL TOKENIZER_DIR OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(url: str, tokenizer_dir: str, out: str) -> None:
    import datasets
    import torch
    import transformers
    from trl import GRPOConfig

    import trainer_client as tc
    from trainer_client.adapter import AdapterSettings
    from trainer_client.trl import OspoGRPOTrainer

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    calls: list[dict[str, Any]] = []

    class Recording:
        def __init__(self) -> None:
            self.inner = tc.AttributionClient(url)

        def attribute(self, groups: Any, options: Any = None) -> Any:
            groups = list(groups)
            result = self.inner.attribute(groups, options)
            calls.append(
                {
                    "seed": options.seed,
                    "groups": [[r.text for r in g.responses] for g in groups],
                    "labels": [g.target.query_id for g in groups],
                    "answers": {
                        r.text: list(a.token_advantages)
                        for g, gr in zip(groups, result.groups, strict=True)
                        for r, a in zip(g.responses, gr.responses, strict=True)
                    },
                }
            )
            return result

    recording = Recording()
    rows = [
        {"prompt": "Write a product search query: a cardigan", "label": "demo-0000"},
        {"prompt": "Write a product search query: a coffee grinder", "label": "demo-0001"},
        {"prompt": "Write a product search query: a rain jacket", "label": "demo-0002"},
    ]
    args = GRPOConfig(
        output_dir=str(Path(out) / "trainer"),
        per_device_train_batch_size=3,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        generation_kwargs={"sequence_bias": [[[eos], 9.0]]},
    )
    trainer = OspoGRPOTrainer(
        model=model,
        reward_funcs=[lambda prompts, completions, **kw: [len(c) / 10 for c in completions]],
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        ospo=AdapterSettings(url=url, seed=10, options=tc.Options(segmenter="word")),
        ospo_client=recording,
    )
    seen: list[dict[str, Any]] = []
    adapter_seen: list[bool] = []
    compute_loss = trainer._compute_loss

    def recording_loss(model: Any, inputs: dict[str, Any]) -> Any:
        # The adapter is made on first use and closed when train() ends: look during training.
        adapter_seen.append(trainer._ospo_adapter is not None)
        for ids, mask, adv in zip(
            inputs["completion_ids"], inputs["completion_mask"], inputs["advantages"], strict=True
        ):
            keep = mask.bool()
            seen.append(
                {
                    "text": tokenizer.decode(
                        ids[keep].tolist(),
                        skip_special_tokens=True,
                        clean_up_tokenization_spaces=False,
                    ),
                    "advantages": adv[keep].tolist(),
                    "outside": float(adv[~keep].abs().sum()),
                }
            )
        return compute_loss(model, inputs)

    trainer._compute_loss = recording_loss
    trainer.train()
    rank = trainer.accelerator.process_index
    payload = {
        "rank": rank,
        "processes": trainer.accelerator.num_processes,
        "has_adapter": any(adapter_seen),
        "rows": seen,
        "calls": calls,
        "logged": [e for e in trainer.state.log_history if "ospo/groups" in e],
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(payload))
    recording.inner.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
