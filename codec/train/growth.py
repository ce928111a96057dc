"""Growing a trained decoder: more residual units per stage, starting as identities.

The model card's open question is whether a bigger decoder would do better (its
"What limits it", point 7). Training a bigger one from scratch costs what the
shipped model cost; growing the shipped one does not. With ``decoder_dilations``
a superset of the trained model's dilations (in the same order, new ones
inserted anywhere), every trained layer keeps its weights, and each new
residual unit's output convolution starts at zero, so the grown decoder starts
as exactly the trained function and training only has to learn what the new
units add (the function-preserving growth of Net2Net, Chen et al. 2016).

A decoder of another kind or shape (``model.decoder``, the ``istft_`` fields) does not
grow from the trained one: it starts afresh behind the trained encoder and codebooks.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelError
from ..model import CodecConfig, CodecModel
from ..model.codec_model import decoder_for
from ..model.seanet import ResidualUnit


def _signature(layer: nn.Module) -> str:
    # the module's repr names its kind, widths, kernel and dilation; its parameters'
    # shapes add what a repr leaves out (Snake's channel count)
    return repr(layer) + repr(sorted((name, tuple(p.shape)) for name, p in layer.named_parameters()))


def layer_map(trained: CodecConfig, grown: CodecConfig) -> list[int]:
    """For each layer of ``trained``'s decoder, the index of the layer of ``grown``'s that takes
    it; ``grown``'s other layers are new. Raises ModelError if ``grown``'s decoder does not
    contain ``trained``'s in order. Compares decoders of the two layouts built on the meta
    device: no weights are drawn (nor the random generator advanced, which would change the
    draws of a seeded run), and weight normalisation in the models themselves does not matter."""
    with torch.device("meta"):
        old, new = decoder_for(trained).net, decoder_for(grown).net
    matched, j = [], 0
    for layer in old:
        want = _signature(layer)
        while j < len(new) and _signature(new[j]) != want:
            j += 1
        if j == len(new):
            raise ModelError(f"the decoder cannot grow from the trained one: its units' dilations "
                             f"{list(grown.decoder_units)} do not contain the trained "
                             f"{list(trained.decoder_units)} in order")
        matched.append(j)
        j += 1
    return matched


def replaces_decoder(trained: CodecConfig, new: CodecConfig) -> bool:
    """Whether ``new``'s decoder is of another kind or shape than ``trained``'s, so that it
    starts afresh rather than growing from it."""
    return trained.decoder_layout != new.decoder_layout


def grow_decoder(model: CodecModel, trained: CodecModel) -> list[ResidualUnit]:
    """Copy ``trained``'s encoder, codebooks and decoder into ``model``, whose decoder has the
    same layers or more residual units, and zero each new unit's output convolution, so that
    ``x + block(x) = x`` and ``model`` decodes exactly as ``trained`` does. Returns the new units
    (none if the layouts are the same). Weight normalisation, applied after, keeps their
    magnitudes ``g`` at zero with a random direction (export.normalise), so the gradient
    still reaches them. A decoder that ``replaces_decoder`` keeps its fresh weights."""
    model.encoder.load_state_dict(trained.encoder.state_dict())
    model.quantizer.load_state_dict(trained.quantizer.state_dict())
    if replaces_decoder(trained.config, model.config):
        return []
    matched = layer_map(trained.config, model.config)
    for i, j in enumerate(matched):
        model.decoder.net[j].load_state_dict(trained.decoder.net[i].state_dict())
    added = _unmatched(model, matched)
    with torch.no_grad():
        for unit in added:
            unit.block[-1].weight.zero_()
            unit.block[-1].bias.zero_()
    return added


def new_units(model: CodecModel, trained: CodecConfig) -> list[ResidualUnit]:
    """The residual units of ``model``'s decoder that a decoder of ``trained``'s layout lacks:
    what growing it from that model added (none if the layouts are the same, or if the
    decoder replaced that model's)."""
    if replaces_decoder(trained, model.config):
        return []
    return _unmatched(model, layer_map(trained, model.config))


def _unmatched(model: CodecModel, matched: list[int]) -> list[ResidualUnit]:
    taken = set(matched)
    added = [layer for j, layer in enumerate(model.decoder.net) if j not in taken]
    if not all(isinstance(layer, ResidualUnit) for layer in added):
        raise ModelError("a grown decoder may add residual units only")
    return added
