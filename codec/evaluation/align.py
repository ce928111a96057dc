"""Delay alignment of a decoded signal to its reference.

Our codec is causal and restores the exact timing, but other codecs delay their
output (Codec2 by a few milliseconds, Opus by its look-ahead where the decoder
does not remove it). Scores against a misaligned reference would punish the
delay, not the coding, so every decoded signal is shifted by the lag that
maximises its cross-correlation with the reference before it is scored.
"""

from __future__ import annotations

import numpy as np

MAX_DELAY_SECONDS = 0.05


def estimate_delay(reference: np.ndarray, decoded: np.ndarray, max_shift: int) -> int:
    """The lag ``d`` in ``[-max_shift, max_shift]`` at which ``decoded[n + d]`` best matches ``reference[n]``.

    Args:
        reference: ``[N]`` float samples.
        decoded: ``[M]`` float samples at the same rate.
        max_shift: the largest lag tried, in samples.

    Returns:
        The delay in samples; positive when ``decoded`` lags the reference.
        0 when either signal is silent.
    """
    reference = np.asarray(reference, dtype=np.float64)
    decoded = np.asarray(decoded, dtype=np.float64)
    if not reference.any() or not decoded.any() or max_shift <= 0:
        return 0
    size = 1 << int(np.ceil(np.log2(len(reference) + len(decoded) + 1)))
    # corr[k] = sum_n reference[n] * decoded[n + k]; negative lags wrap to the end.
    corr = np.fft.irfft(np.conj(np.fft.rfft(reference, size)) * np.fft.rfft(decoded, size), size)
    lags = np.arange(-max_shift, max_shift + 1)
    return int(lags[np.argmax(corr[lags % size])])


def shift(decoded: np.ndarray, delay: int, length: int) -> np.ndarray:
    """``decoded`` advanced by ``delay`` samples and cut or zero-padded to ``length``.

    Args:
        decoded: ``[M]`` samples.
        delay: as returned by ``estimate_delay`` (negative delays pad the start).
        length: the length of the result, normally the reference's.

    Returns:
        ``[length]`` float32 with ``out[n] = decoded[n + delay]`` (0 outside ``decoded``).
    """
    decoded = np.asarray(decoded, dtype=np.float32)
    out = np.zeros(length, dtype=np.float32)
    start = max(0, -delay)                     # first output index with a source sample
    source = decoded[max(0, delay):]
    count = max(0, min(length - start, len(source)))
    out[start:start + count] = source[:count]
    return out


def align(reference: np.ndarray, decoded: np.ndarray, sample_rate: int,
          max_delay: float = MAX_DELAY_SECONDS) -> tuple[np.ndarray, int]:
    """Shift ``decoded`` ``[M]`` onto ``reference`` ``[N]`` (same rate) within ``±max_delay`` seconds.

    Returns ``(aligned [N] float32, delay in samples)``.
    """
    delay = estimate_delay(reference, decoded, int(round(max_delay * sample_rate)))
    return shift(decoded, delay, len(reference)), delay
