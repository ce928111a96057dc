"""Training configuration: one dataclass, read from TOML, saved inside every checkpoint."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import intelligibility
from ..model import CodecConfig


@dataclass
class TrainConfig:
    model: CodecConfig = field(default_factory=CodecConfig)

    # data: a folder searched recursively, or a manifest (.tsv; `python -m codec.train.prepare`
    # writes one for LibriSpeech, LibriTTS, VCTK and Common Voice)
    train_data: str = "../shared/corpus/train"
    valid_fraction: float = 0.02          # files held out of train_data for validation
    segment_seconds: float = 1.0
    batch_size: int = 16                  # per process
    preload: bool = True                  # decode the corpus into memory once (small corpora)
    num_workers: int = 0
    # crops are normalised to the model's level, model.input_dbfs (-20 dBFS by default)
    silence_dbfs: float = -50.0           # crops quieter than this are skipped

    # start from the weights and codebooks of an exported model file of the same
    # architecture (fine-tuning, or going on from a shipped model); "" = random weights
    init_from: str = ""
    # train the decoder alone: the encoder and the codebooks keep init_from's weights. The
    # decoder sets this model's ceiling (docs/model_card.md), the encoder's codes are refined
    # at encoding anyway, and a step without the encoder's backward pass costs less. The
    # logged grad_norm is then the decoder's alone; a run cannot switch this on --resume.
    decoder_only: bool = False
    # train the encoder alone: the decoder and the codebooks keep init_from's weights. Refined
    # codes (codec encode's default) decode far better than the encoder's own (docs/model_card.md),
    # so an encoder trained on the decoder's output, with the refinement's measures in the loss,
    # can learn to give codes nearer them: what model.encode, streaming and --refine 0 use, and a
    # better start for refinement. A run cannot switch this on --resume either.
    encoder_only: bool = False

    # optimisation
    steps: int = 100_000
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    warmup_steps: int = 500
    lr_final_fraction: float = 0.05       # cosine decay to this fraction of lr
    # a grown decoder's new residual units (model.decoder_dilations, codec/train/growth.py) learn
    # at this multiple of lr: they start at zero, and Adam moves a weight by about lr a step, so
    # at a fine-tune's small lr they would barely move
    grown_lr_scale: float = 1.0
    grad_clip: float = 1.0
    weight_ema: float = 0.999             # EMA decay of the exported weights, reached after
                                          # a ramp (train.ema_decay); 0 disables the EMA
    quantizer_dropout: float = 0.5        # fraction of each batch coded with 1..levels levels
    # how the dropped items' level counts are drawn: n levels with probability proportional
    # to n ** -skew; 0 is uniform over 1..levels, 1 gives the low bitrates more of the batch
    quantizer_dropout_skew: float = 0.0
    bf16: bool = False
    compile: bool = False
    threads: int = 0                      # torch threads per process; 0 = torch's default

    # losses
    stft_weight: float = 1.0
    mel_weight: float = 1.0
    waveform_weight: float = 0.1
    # window lengths (samples) of the multi-scale log-mel loss; windows of a few
    # milliseconds resolve single pitch pulses, which ties the phases of harmonics
    mel_windows: tuple[int, ...] = (256, 512, 1024, 2048)
    # distance of the STFT below low_band_hz (spectral.LowBandDistance): asks the decoder for
    # the reference's phase where PESQ-WB hears it (benchmarks/phase_oracle.py); every other
    # term compares magnitudes, which leave the phase free. low_band_compare: "phase" (the
    # phases, weighted by the reference's magnitudes) or "complex" (the complex values, which
    # also pulls magnitudes towards zero where the phase is uncertain). Weight 1 lowered
    # held-out PESQ-WB by 0.3 in 200 steps of fine-tuning (docs/experiments.md)
    low_band_weight: float = 0.0
    low_band_hz: float = 1000.0
    low_band_compare: str = "phase"
    # the PESQ-like disturbance (codec/perceptual.py) and 1 - STOI (codec/intelligibility.py),
    # the two measures the encoder's refinement adds to its objective; 0 leaves a term out.
    # Segments must be at least 384 ms long for the STOI term.
    perceptual_weight: float = 0.0
    stoi_weight: float = 0.0
    # adversarial training (adversarial.py): a multi-scale STFT discriminator judges
    # the decoded audio; it trains with the same learning-rate schedule as the codec
    adversarial: bool = False
    adversarial_weight: float = 1.0
    feature_matching_weight: float = 2.0
    discriminator_channels: int = 32
    discriminator_windows: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    # the discriminator sees |X| ** exponent with X's phase. 0.3 lets a discriminator learn ten
    # times faster against a frozen codec (benchmarks/discriminator.py), but fine-tuning the
    # shipped model with it lowered held-out PESQ-WB by 0.2 in 1,200 steps, while the raw
    # spectrum (1) raised it by 0.04 in 2,100 (docs/experiments.md)
    discriminator_magnitude_exponent: float = 1.0
    # periods (samples) of HiFi-GAN's waveform-folding judges, added to the STFT ones; () = none
    discriminator_periods: tuple[int, ...] = ()
    commit_weight: float = 1.0

    # bookkeeping
    run_dir: str = "runs/speech16k"
    seed: int = 0
    log_every: int = 25
    valid_every: int = 1000
    checkpoint_every: int = 500
    checkpoint_minutes: float = 5.0       # also checkpoint at least this often
    valid_kbps: tuple[float, ...] = (1.5, 6.0, 12.0)

    def __post_init__(self) -> None:
        for part in ("decoder", "encoder"):
            if getattr(self, f"{part}_only") and not self.init_from:
                raise ValueError(f"{part}_only=true trains the {part} of a trained model: give init_from")
        if self.decoder_only and self.encoder_only:
            raise ValueError("decoder_only and encoder_only exclude each other: drop both to train the whole model")
        if self.low_band_compare not in ("phase", "complex"):
            raise ValueError(f"low_band_compare is 'phase' or 'complex', not {self.low_band_compare!r}")
        if self.stoi_weight and self.segment_samples < intelligibility.min_samples(self.model.sample_rate):
            raise ValueError(f"stoi_weight needs segments of at least 384 ms; segment_seconds is {self.segment_seconds}")

    @property
    def frozen_part(self) -> str | None:
        """``"encoder"`` or ``"decoder"``: the part that keeps init_from's weights, with the
        codebooks, while the other trains alone; None when the whole model trains."""
        return "encoder" if self.decoder_only else "decoder" if self.encoder_only else None

    @property
    def segment_samples(self) -> int:
        """The length of a training crop in samples at the model's rate."""
        return int(self.segment_seconds * self.model.sample_rate)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        model_dict = dict(d.pop("model", {}))
        if "target_dbfs" in d:       # configs before the model carried its level
            model_dict.setdefault("input_dbfs", d.pop("target_dbfs"))
        model = CodecConfig.from_dict(model_dict)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training config keys: {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(model=model, **d)

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> "TrainConfig":
        """Read a TOML file and apply ``key=value`` overrides (``model.channels=16``)."""
        d = tomllib.loads(Path(path).read_text()) if path else {}
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not key=value")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw                 # a bare string, e.g. run_dir=runs/x
            *parents, leaf = key.split(".")
            node = d
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return cls.from_dict(d)
