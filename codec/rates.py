"""The resampling ratio between two sample rates, shared by the resampler and the bitstream.

Resampling from ``a`` to ``b`` Hz uses the reduced fraction ``b / a``, unless its
polyphase kernel would be too large (coprime rates such as 22051 and 16000 would
need hundreds of millions of taps): then the nearest fraction with a small enough
denominator is used, a pitch error far below audibility. The number of frames an
encoder writes follows from this ratio, so a reader checking a stream's length
must use the same one.
"""

from __future__ import annotations

import math
from fractions import Fraction

from .errors import AudioError

MAX_KERNEL_COST = 1 << 22      # kernel taps: new rate x old rate, after reducing the ratio


def resampling_ratio(from_rate: int, to_rate: int) -> Fraction:
    """``to_rate / from_rate``, or the nearest ratio with a kernel of affordable size."""
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"cannot resample from {from_rate} Hz to {to_rate} Hz")
    ratio = Fraction(int(to_rate), int(from_rate))
    if ratio.numerator * ratio.denominator > MAX_KERNEL_COST:
        # cost ~ ratio * denominator^2, so bound the denominator accordingly.
        ratio = ratio.limit_denominator(max(1, math.isqrt(int(MAX_KERNEL_COST / float(ratio)))))
    return ratio


def resampled_length(samples: int, from_rate: int, to_rate: int) -> int:
    """How many samples ``samples`` become: ``ceil(samples * ratio)``."""
    return scaled_length(samples, resampling_ratio(from_rate, to_rate))


def scaled_length(samples: int, ratio: Fraction) -> int:
    """``ceil(samples * ratio)`` in exact integer arithmetic."""
    return -(-samples * ratio.numerator // ratio.denominator)
