"""The half-cosine decay that both training's learning rate and refinement's step size follow."""

from __future__ import annotations

import math


def half_cosine(progress: float, final: float) -> float:
    """1 at ``progress`` 0, falling along a half cosine to ``final`` at ``progress`` 1."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
