"""From a training checkpoint to an inference model file.

Training wraps every convolution in weight normalisation (it steadies
optimisation without batch statistics); the inference model has plain
convolutions, so export folds the parametrisation into the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from ..errors import ModelError
from ..model import CodecModel, save_model
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .growth import grow_decoder, replaces_decoder


def conv_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]


def training_model(config: TrainConfig, start: CodecModel | None = None) -> CodecModel:
    """A model with weight-normalised convolutions: fresh, or starting from the weights and
    codebooks of ``start``, an inference model of the same architecture (``init_from``),
    one whose decoder this config grows, or one whose decoder it replaces (growth.py). With ``decoder_only`` the encoder's
    weights are frozen, with ``encoder_only`` the decoder's."""
    model = CodecModel(config.model)
    if start is not None:
        # every field must match but the decoder's (decoder, decoder_dilations, istft_...),
        # which may grow or start afresh (growth.py)
        mismatch = {k: (v, getattr(start.config, k)) for k, v in config.model.to_dict().items()
                    if k != "name" and not k.startswith(("decoder", "istft_")) and getattr(start.config, k) != v}
        if mismatch:
            raise ModelError(f"init_from model differs from the config in {sorted(mismatch)}: "
                             + ", ".join(f"{k} {a} (config) vs {b} (model)" for k, (a, b) in mismatch.items()))
        grown = grow_decoder(model, start)
        if config.encoder_only and (grown or replaces_decoder(start.config, model.config)):
            raise ModelError("encoder_only=true freezes the decoder: its new "
                             f"{'units' if grown else 'weights'} would never learn")
        for vq in model.quantizer.levels:   # the file kept no training statistics: start them afresh
            vq.adopt()
    for conv in conv_layers(model):
        normalise(conv)
    if config.frozen_part:      # after weight norm, whose g and v are the weights that train
        getattr(model, config.frozen_part).requires_grad_(False)
    return model


def normalise(conv: nn.Module) -> None:
    """Weight normalisation, ``w = g v / |v|`` per output channel, with g and v computed from
    the weights the layer starts with. An output channel whose weights are all zero (a grown
    unit's output, new or exported before it learned) keeps g = 0 with a random direction v:
    v = 0 would make ``v / |v|`` undefined, and with g = 0 the gradient still reaches g."""
    zero = conv.weight.detach().flatten(1).norm(dim=1) == 0
    weight_norm(conv)
    if zero.any():
        with torch.no_grad():
            v = conv.parametrizations.weight.original1
            v[zero] = torch.randn_like(v[zero])


def fold_weight_norm(model: CodecModel) -> CodecModel:
    """Remove weight normalisation in place, keeping the weights it computes."""
    for conv in conv_layers(model):
        if parametrize.is_parametrized(conv, "weight"):
            parametrize.remove_parametrizations(conv, "weight")
    return model


def inference_model(config: TrainConfig, state: dict[str, torch.Tensor],
                    ema: dict[str, torch.Tensor] | None = None) -> CodecModel:
    """A plain-convolution copy of a training model's ``state`` with the EMA weights (if
    given) in place of its parameters; codebooks are taken from ``state`` as they are."""
    model = training_model(config)
    model.load_state_dict(state)
    if ema:
        with torch.no_grad():
            params = dict(model.named_parameters())
            for name, value in ema.items():
                params[name].copy_(value)
    return fold_weight_norm(model).eval()


def export(checkpoint_path: str | Path, out_path: str | Path, fp16: bool = True,
           name: str | None = None, ema: bool = True) -> str:
    """Write the inference model of a checkpoint, with its EMA weights or (``ema=False``)
    the current ones; returns its fingerprint."""
    checkpoint = load_checkpoint(Path(checkpoint_path))
    model = inference_model(TrainConfig.from_dict(checkpoint["config"]), checkpoint["model"],
                            checkpoint["ema"] if ema else None)
    if name:
        model.config.name = name
    return save_model(model, out_path, dtype=torch.float16 if fp16 else torch.float32)
