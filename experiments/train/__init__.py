"""`python -m experiments.train`: a small GRPO/OSPO trainer in plain torch that closes the loop on CPU.

Sample G responses per request from a policy (`tiny`: a from-scratch query writer over the
catalog vocabulary; `smollm2`: SmolLM2-135M-Instruct with LoRA), get rewards and token
advantages from the service over HTTP, and update with the PPO-clipped token-level loss.
Heavy imports (torch, transformers) happen in the submodules, not here.
"""

from __future__ import annotations
