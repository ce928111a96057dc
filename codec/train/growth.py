"""Growing a trained decoder: more residual units per stage, starting as identities.

The model card's open question is whether a bigger decoder would do better (its
"What limits it", point 7). Training a bigger one from scratch costs what the
shipped model cost; growing the shipped one does not. With ``decoder_dilations``
a superset of the trained model's dilations (in the same order, new ones
inserted anywhere), every trained layer keeps its weights, and each new
residual unit's output convolution starts at zero, so the grown decoder starts
as exactly the trained function and training only has to learn what the new
units add (the function-preserving growth of Net2Net, Chen et al. 2016).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ModelError
from ..model import CodecModel
from ..model.seanet import ResidualUnit


def _signature(layer: nn.Module) -> str:
    # the module's repr names its kind, widths, kernel and dilation; its parameters'
    # shapes add what a repr leaves out (Snake's channel count)
    return repr(layer) + repr([tuple(p.shape) for p in layer.parameters()])


def grown_layers(trained: nn.Sequential, grown: nn.Sequential) -> list[int]:
    """Indices of ``grown``'s layers that take ``trained``'s layers, in order; every other
    layer of ``grown`` is new. Raises ModelError if ``grown`` does not contain ``trained``."""
    matched, j = [], 0
    for layer in trained:
        want = _signature(layer)
        while j < len(grown) and _signature(grown[j]) != want:
            j += 1
        if j == len(grown):
            raise ModelError(f"the decoder cannot grow from the trained one: no place for its layer {layer}")
        matched.append(j)
        j += 1
    return matched


def grow_decoder(model: CodecModel, trained: CodecModel) -> list[ResidualUnit]:
    """Copy ``trained``'s encoder, codebooks and decoder into ``model``, whose decoder has the
    same layers and more residual units; returns the new units, for ``start_as_identity``."""
    model.encoder.load_state_dict(trained.encoder.state_dict())
    model.quantizer.load_state_dict(trained.quantizer.state_dict())
    old, new = trained.decoder.net, model.decoder.net
    matched = grown_layers(old, new)
    for i, j in enumerate(matched):
        new[j].load_state_dict(old[i].state_dict())
    added = [layer for j, layer in enumerate(new) if j not in set(matched)]
    if not all(isinstance(layer, ResidualUnit) for layer in added):
        raise ModelError("a grown decoder may add residual units only")
    return added


def start_as_identity(units: list[ResidualUnit]) -> None:
    """Zero each unit's output convolution, so that ``x + block(x) = x``. Under weight
    normalisation the magnitude ``g`` is zeroed and the direction ``v`` kept: ``v = 0`` would
    make ``v / |v|`` undefined, and with ``g = 0`` the gradient still reaches ``g``."""
    with torch.no_grad():
        for unit in units:
            out = unit.block[-1]
            if parametrize.is_parametrized(out, "weight"):
                out.parametrizations.weight.original0.zero_()
            else:
                out.weight.zero_()
            out.bias.zero_()


def new_units(model: CodecModel) -> list[ResidualUnit]:
    """The decoder's residual units beyond those of the encoder's dilations: the units a
    growth added, found from the config alone, so that a resumed run finds the same ones."""
    config = model.config
    if not config.decoder_dilations:
        return []
    plain = CodecModel(dataclasses.replace(config, decoder_dilations=())).decoder.net
    grown = CodecModel(config).decoder.net       # model's own may be weight-normalised
    matched = set(grown_layers(plain, grown))
    return [model.decoder.net[j] for j in range(len(grown)) if j not in matched]
