"""Objective evaluation of the codec against reference codecs (`codec eval`).

- ``align``: delay alignment of decoded signals to their reference.
- ``baselines``: Opus and Codec2 through their command-line tools.
- ``scores``: PESQ-WB, STOI, log-mel L1 and SI-SDR of one decoded signal.
- ``report``: the CSV, the summary table, the rate-distortion plot and the listening page.
- ``run``: ``evaluate``, which ties them together.

Never imports ``codec.train``; PESQ and STOI need ``pip install 'codec[eval]'``.
"""

from __future__ import annotations

from .baselines import BASELINES, Baseline, parse_baselines
from .run import DEFAULT_KBPS, EvalResult, evaluate, parse_kbps

__all__ = ["BASELINES", "Baseline", "DEFAULT_KBPS", "EvalResult", "evaluate", "parse_baselines", "parse_kbps"]
