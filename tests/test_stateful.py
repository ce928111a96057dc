"""Layers that keep their past (codec.model.stateful) and refinement's frozen weights."""

from __future__ import annotations

import pytest
import torch

from codec.model import CodecModel
from codec.model.refine import frozen
from codec.model.stateful import Continuation

from .conftest import tiny_config


@pytest.fixture
def snake_model() -> CodecModel:
    """Snake activations and dilated units, as the shipped model has (tiny_config has ELU)."""
    return CodecModel(tiny_config(activation="snake", dilations=(1, 3))).eval()


def test_a_continuation_decodes_what_follows_its_past_again_and_again(snake_model):
    """Refinement decodes many blocks behind one context: each call must start from the
    state the context left, as if the block were appended to it, with the same gradient."""
    model, dim = snake_model, snake_model.config.latent_dim
    past, block = torch.randn(1, dim, 7), torch.randn(1, dim, 5, requires_grad=True)
    whole = model.decoder(torch.cat([past, block], dim=-1))[..., 7 * model.hop:]
    (whole_grad,) = torch.autograd.grad(whole.square().sum(), block)

    continuation = Continuation(model.decoder.net, past)
    first = continuation(block)
    torch.testing.assert_close(first, whole, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(continuation(block), first, rtol=0, atol=0)      # not only the first call
    (grad,) = torch.autograd.grad(first.square().sum(), block)
    torch.testing.assert_close(grad, whole_grad, rtol=1e-4, atol=1e-6)

    fresh = Continuation(model.decoder.net, past[..., :0])                      # no past: the zero state
    with torch.no_grad():
        torch.testing.assert_close(fresh(block), model.decoder(block), rtol=1e-4, atol=1e-6)


def test_frozen_restores_each_weights_flag_even_after_an_error(snake_model):
    decoder = snake_model.decoder
    already = next(iter(decoder.parameters()))
    already.requires_grad_(False)                          # frozen before: must stay frozen
    flags = [p.requires_grad for p in decoder.parameters()]
    with pytest.raises(RuntimeError, match="inside"):
        with frozen(decoder):
            assert not any(p.requires_grad for p in decoder.parameters())
            raise RuntimeError("inside")
    assert [p.requires_grad for p in decoder.parameters()] == flags
    assert not already.requires_grad and sum(flags) == len(flags) - 1
