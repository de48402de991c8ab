"""ospo: Owen-Shapley Policy Optimization as a service.

Coalition rewards, segment credit and token advantages for GRPO training of search LLMs.
The HTTP service lives in `service.api`, the request path in `service.engine`, the pure
math in `service.attribution`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
