"""The ``ospo`` advantage estimator, as verl's registry calls it.

verl gives a registered estimator only tensors and the group ids (``index`` = ``uid``), never
the response text, so the OSPO trainer (``trainer_client.verl.trainer``) computes the step's
token advantages first and hands them over through :data:`~.rollouts.PENDING`; this function
checks that verl's rows are the same rows in the same order, computes verl's own GRPO
advantages (``compute_grpo_outcome_advantage``) for the groups that fall back, and returns
``(advantages, returns)`` masked by ``response_mask``, as verl's GRPO does.
"""

from __future__ import annotations

from typing import Any

from .._adapter_types import AdapterError, scatter_advantages
from .rollouts import PENDING
from .settings import TRAINER_MODES

__all__ = ["ospo_advantage"]


def ospo_advantage(
    token_level_rewards: Any,
    response_mask: Any,
    index: Any = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """verl's estimator contract: (bs, T) rewards and mask in, (bs, T) advantages and
    returns out."""
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    pending = PENDING.get()
    if pending is None:
        modes = ", ".join(TRAINER_MODES)
        raise AdapterError(
            "algorithm.adv_estimator=ospo needs the response text, which verl does not pass "
            f"to an estimator: run the v1 trainer (trainer.use_v1=True) with "
            f"trainer.v1.trainer_mode set to one of {modes}"
        )
    uids = [str(u) for u in index] if index is not None else None
    if uids != pending.uids:
        raise AdapterError(
            "the rows verl passed to the ospo estimator are not the rows the OSPO step "
            "attributed (different uids or order)"
        )
    norm = True if config is None else bool(config.get("norm_adv_by_std_in_grpo", True))
    own, _ = compute_grpo_outcome_advantage(
        token_level_rewards, response_mask, index, norm_adv_by_std_in_grpo=norm
    )
    advantages = scatter_advantages(pending.result, response_mask, own) * response_mask
    return advantages, advantages
