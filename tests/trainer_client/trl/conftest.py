"""Fixtures for the TRL adapter tests: real TRL 1.16 ``GRPOTrainer`` runs on CPU with a tiny
randomly initialised Llama (SmolLM2's tokenizer from the packaged GGUF), a client that
records what the service answered, and a recorder of what reaches ``_compute_loss``."""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import trainer_client as tc


def require_trl() -> None:
    """Skip without trl, except under CI=true where a missing stack is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        importlib.import_module("trl")
    else:
        pytest.importorskip("trl", reason="trl 1.16 is not installed (make install)")


@pytest.fixture(scope="session")
def llm_tokenizer(smollm2_tokenizer: Any) -> Any:
    require_trl()
    return copy.deepcopy(smollm2_tokenizer)


class RecordingClient:
    """A real client whose requests and answers are kept, per call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[list[tc.Group], tc.Options | None, tc.AttributeResult]] = []

    def attribute(self, groups: Any, options: Any = None) -> tc.AttributeResult:
        groups = list(groups)
        result = self.inner.attribute(groups, options)
        self.calls.append((groups, options, result))
        return result


@dataclass
class Run:
    """What a training run left behind: the inputs of every ``_compute_loss`` call, the
    advantages TRL computed and the ones the adapter returned (per generation), the client's
    calls, the labels, completion masks and TRL's decoded completions per generation, and TRL's logged history."""

    trainer: Any
    loss_inputs: list[dict[str, Any]] = field(default_factory=list)
    trl_advantages: list[Any] = field(default_factory=list)
    ospo_advantages: list[Any] = field(default_factory=list)
    labels: list[list[Any]] = field(default_factory=list)
    completion_masks: list[Any] = field(default_factory=list)
    completions: list[list[str]] = field(default_factory=list)
    client: RecordingClient | None = None

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.trainer.state.log_history)


def tiny_model(tokenizer: Any, seed: int = 0) -> Any:
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def build(
    llm_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Run]]:
    """``build(rows, settings, reward_funcs=..., **grpo_config)``: an ``OspoGRPOTrainer``
    on ``rows`` (dicts with ``prompt`` and ``label``), instrumented, not trained yet. Every
    connection it opened is closed at the end of the session."""
    import datasets
    import torch
    from trl import GRPOConfig

    from trainer_client.trl import OspoGRPOTrainer

    def run(
        rows: list[dict[str, Any]],
        settings: Any,
        *,
        reward_funcs: list[Any],
        record: bool = True,
        steps: int = 2,
        label_column: str = "label",
        **config: Any,
    ) -> Run:
        tokenizer = copy.deepcopy(llm_tokenizer)
        eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        values: dict[str, Any] = {
            "output_dir": str(tmp_path_factory.mktemp("trl")),
            "per_device_train_batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 10,
            "max_steps": steps,
            "use_cpu": True,
            "report_to": [],
            "logging_steps": 1,
            "save_strategy": "no",
            "learning_rate": 1e-3,
            "seed": 0,
            # A random model almost never samples EOS; this bias gives completions of
            # different lengths, so rows are right-padded.
            "generation_kwargs": {"sequence_bias": [[[eos], 9.0]]},
        }
        values.update(config)
        client = None
        if record and not isinstance(settings, str):
            client = RecordingClient(settings.client())
        trainer = OspoGRPOTrainer(
            model=tiny_model(tokenizer),
            reward_funcs=reward_funcs,
            args=GRPOConfig(**values),
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tokenizer,
            ospo=settings,
            ospo_client=client,
            label_column=label_column,
        )
        out = Run(trainer=trainer, client=client)
        compute_loss = trainer._compute_loss
        advantages = trainer._ospo_advantages

        def recording_loss(model: Any, inputs: dict[str, Any]) -> Any:
            out.loss_inputs.append(
                {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in inputs.items()}
            )
            return compute_loss(model, inputs)

        def recording_advantages(output: dict[str, Any], pending: Any) -> Any:
            out.labels.append(list(pending.labels))
            out.completion_masks.append(output["completion_mask"].clone())
            # TRL's own decoded completions of this generation (its completions table)
            batch = output["completion_ids"].shape[0]
            out.completions.append(list(trainer._logs["completion"])[-batch:])
            out.trl_advantages.append(output["advantages"].clone())
            result = advantages(output, pending)
            out.ospo_advantages.append(result.clone())
            return result

        trainer._compute_loss = recording_loss
        trainer._ospo_advantages = recording_advantages
        made.append(out)
        return out

    made: list[Run] = []
    yield run
    for out in made:
        out.trainer.close_ospo()
        if out.client is not None:
            out.client.inner.close()


@pytest.fixture(scope="session")
def train(build: Callable[..., Run]) -> Callable[..., Run]:
    """``train(...)``: :func:`build`, then ``trainer.train()``."""

    def run(*args: Any, **kwargs: Any) -> Run:
        out = build(*args, **kwargs)
        out.trainer.train()
        return out

    return run
