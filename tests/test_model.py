"""The model: causality, shapes, bitrates, and the quantizer's gradients and dropout."""

from __future__ import annotations

import pytest
import torch

from codec.errors import BitrateError
from codec.model import CodecModel
from codec.model.quantizer import ResidualVectorQuantizer, VectorQuantizer

from .conftest import tiny_config


@pytest.mark.parametrize("strides", [(2, 4, 5, 8), (4, 4), (3, 5), (8,)])
def test_shapes_for_several_stride_sets(strides):
    model = CodecModel(tiny_config(strides=strides)).eval()
    hop = model.hop
    wav = torch.randn(2, 1, 7 * hop - 3)                 # not a whole number of frames
    codes = model.encode_batch(wav, levels=3)
    assert codes.shape == (2, 3, 7)
    assert codes.dtype == torch.int64
    assert model.decode_batch(codes).shape == (2, 1, 7 * hop)
    recon, q = model.train()(wav)
    assert recon.shape == (2, 1, 7 * hop) and q.codes.shape == (2, 8, 7)


def test_changing_the_future_leaves_past_codes_and_audio_unchanged(tiny_model):
    hop = tiny_model.hop
    wav = torch.randn(1, 1, 20 * hop)
    changed = wav.clone()
    changed[..., 12 * hop:] = torch.randn(1, 1, 8 * hop)  # frames 12.. see new input
    latent, latent_changed = tiny_model.encoder(wav), tiny_model.encoder(changed)
    assert torch.equal(latent[..., :12], latent_changed[..., :12])
    assert not torch.allclose(latent[..., 12:], latent_changed[..., 12:])
    codes, codes_changed = tiny_model.encode_batch(wav, 8), tiny_model.encode_batch(changed, 8)
    assert torch.equal(codes[..., :12], codes_changed[..., :12])
    # The decoder, fed codes that differ from frame 12 on, agrees before sample 12 * hop.
    out, out_changed = tiny_model.decode_batch(codes), tiny_model.decode_batch(codes_changed)
    assert torch.equal(out[..., :12 * hop], out_changed[..., :12 * hop])


def test_decoder_is_causal_in_frames(tiny_model):
    codes = torch.randint(0, 64, (1, 8, 10))
    later = codes.clone()
    later[..., 6:] = torch.randint(0, 64, (1, 8, 4))
    hop = tiny_model.hop
    a, b = tiny_model.decode_batch(codes), tiny_model.decode_batch(later)
    assert torch.equal(a[..., :6 * hop], b[..., :6 * hop])
    assert not torch.equal(a[..., 6 * hop:], b[..., 6 * hop:])


@pytest.mark.parametrize("kbps,levels", [(0.5, 1), (1.5, 3), (6, 12), (6.2, 12), (12, 24), (16, 32)])
def test_kbps_selects_the_floor_of_levels(kbps, levels):
    model = CodecModel(tiny_config(levels=32, codebook_bits=10))
    assert model.levels_for_kbps(kbps) == levels
    assert model.kbps_for_levels(levels) == pytest.approx(levels * 0.5)


@pytest.mark.parametrize("kbps", [0.0, 0.4, 16.5, -6, 1e9, float("nan"), float("inf")])
def test_absurd_bitrates_name_the_valid_range(kbps):
    model = CodecModel(tiny_config(levels=32, codebook_bits=10))
    with pytest.raises(BitrateError, match="0.5 to 16 kbps"):
        model.levels_for_kbps(kbps)


def test_every_level_receives_commitment_gradient():
    rvq = ResidualVectorQuantizer(dim=8, levels=6, codebook_size=16).train()
    x = torch.randn(4, 8, 30, requires_grad=True)
    out = rvq(x)
    for level, loss in enumerate(out.commit_losses):
        (grad,) = torch.autograd.grad(loss, x, retain_graph=True)
        assert grad.abs().sum() > 0, f"level {level} sends no gradient to the encoder"


def test_one_straight_through_estimator_spans_the_sum():
    """The decoder's gradient reaches the encoder once, not once per level."""
    rvq = ResidualVectorQuantizer(dim=8, levels=6, codebook_size=16).train()
    x = torch.randn(2, 8, 10, requires_grad=True)
    out = rvq(x)
    upstream = torch.randn_like(out.quantized)
    (grad,) = torch.autograd.grad(out.quantized, x, upstream)
    assert torch.allclose(grad, upstream)


def test_quantized_output_is_the_sum_of_the_first_levels():
    rvq = ResidualVectorQuantizer(dim=8, levels=6, codebook_size=16).train()
    x = torch.randn(3, 8, 10)
    rvq(x)                                    # initialise the codebooks
    rvq.eval()
    out = rvq(x, torch.tensor([1, 3, 6]))
    for item, n in enumerate([1, 3, 6]):
        expected = rvq.decode(out.codes[item:item + 1, :n])
        assert torch.allclose(out.quantized[item:item + 1], expected, atol=1e-5)


def test_quantizer_dropout_masks_losses_of_unused_levels():
    rvq = ResidualVectorQuantizer(dim=8, levels=4, codebook_size=16).train()
    x = torch.randn(2, 8, 10, requires_grad=True)
    out = rvq(x, torch.tensor([1, 1]))
    assert out.commit_losses[0] > 0
    assert torch.all(out.commit_losses[1:] == 0)


def test_more_levels_reconstruct_better():
    rvq = ResidualVectorQuantizer(dim=8, levels=8, codebook_size=32).train()
    x = torch.randn(8, 8, 50)
    for _ in range(20):
        rvq(x)
    rvq.eval()
    errors = [(rvq.decode(rvq.encode(x, n)) - x).pow(2).mean().item() for n in range(1, 9)]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors


def trained_quantizer(levels: int, codebook_size: int, dim: int = 8) -> ResidualVectorQuantizer:
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=dim, levels=levels, codebook_size=codebook_size).train()
    for _ in range(5):
        rvq(torch.randn(4, dim, 50))
    return rvq.eval()


def test_a_beam_of_one_codes_greedily():
    rvq = trained_quantizer(levels=4, codebook_size=16)
    x = torch.randn(2, 8, 30)
    residual, expected = x.transpose(1, 2).reshape(-1, 8), []
    for vq in rvq.levels[:3]:                 # each level's nearest code to what is left over
        codes = vq.nearest(residual)
        residual = residual - vq.lookup(codes)
        expected.append(codes.view(2, 30))
    assert torch.equal(rvq.encode(x, 3, beam=1), torch.stack(expected, dim=1))


def test_a_full_width_beam_finds_the_nearest_pair_of_codes():
    rvq = trained_quantizer(levels=2, codebook_size=8, dim=4)
    x = torch.randn(1, 4, 200)
    frames = x[0].t()                                              # [200, 4]
    first, second = rvq.levels[0].embed, rvq.levels[1].embed
    sums = (first[:, None] + second[None]).reshape(-1, 4)          # all 64 pairs, first-major
    best = torch.cdist(frames, sums).pow(2).min(dim=1).values

    def error(codes: torch.Tensor) -> torch.Tensor:
        return (rvq.decode(codes)[0].t() - frames).pow(2).sum(1)

    # 8 paths through the first level cover every pair: the search is exhaustive
    torch.testing.assert_close(error(rvq.encode(x, 2, beam=8)), best, rtol=1e-5, atol=1e-5)
    greedy = error(rvq.encode(x, 2, beam=1))
    assert bool((greedy >= best - 1e-5).all()) and bool((greedy > best + 1e-4).any())
    narrow = error(rvq.encode(x, 2, beam=2))
    assert best.mean() < narrow.mean() < greedy.mean()


def test_the_search_stays_on_the_device_of_its_input():
    """Validation codes on the GPU in training; the meta device catches a tensor made on the CPU."""
    rvq = ResidualVectorQuantizer(dim=8, levels=3, codebook_size=16).eval().to("meta")
    assert rvq.encode(torch.randn(2, 8, 5, device="meta"), 3, beam=4).shape == (2, 3, 5)


def test_coding_many_frames_at_once_equals_coding_them_one_at_a_time():
    """Wide beams over big codebooks search a few frames at a time: 64 here, so two items of
    65 frames (130 in all) take three searches."""
    rvq = trained_quantizer(levels=3, codebook_size=1024)
    x = torch.randn(2, 8, 65)
    together = rvq.encode(x, 3, beam=64)
    one_by_one = torch.cat([rvq.encode(x[:, :, t:t + 1], 3, beam=64) for t in range(65)], dim=2)
    assert torch.equal(together, one_by_one)
    assert rvq.encode(x[:, :, :0], 3, beam=64).shape == (2, 3, 0)


@pytest.mark.parametrize("beam", [0, -1, 2.5, True])
def test_a_beam_that_is_not_a_whole_number_of_at_least_one_is_refused(tiny_model, beam):
    with pytest.raises(ValueError, match="beam"):
        trained_quantizer(levels=2, codebook_size=8).encode(torch.randn(1, 8, 3), 2, beam=beam)
    with pytest.raises(ValueError, match="beam"):                  # before any audio is coded
        tiny_model.streaming_encoder(levels=2, beam=beam)


def test_kmeans_initialisation_and_dead_code_replacement():
    vq = VectorQuantizer(dim=4, codebook_size=8).train()
    data = torch.randn(200, 4) + 10               # far from the random initial codebook
    vq.initialize(data)
    assert bool(vq.initialized)
    assert vq.embed.mean().item() == pytest.approx(10, abs=1)
    vq.cluster_size.fill_(10.0)
    vq.cluster_size[3] = 0.0                      # code 3 has died
    vq.embed[3] = -100.0
    vq.embed_sum[3] = -1000.0
    vq.replace_dead_codes(data)
    assert vq.embed[3].mean().item() == pytest.approx(10, abs=4)   # moved onto the data
    assert vq.cluster_size[3] > 0
    assert torch.allclose(vq.embed_sum[3], vq.embed[3] * vq.cluster_size[3])
    perplexity, dead = vq.usage()
    assert dead == 0 and 1 <= perplexity <= 8


def test_usage_statistics_report_collapse():
    vq = VectorQuantizer(dim=4, codebook_size=8)
    vq.cluster_size.zero_()
    vq.cluster_size[0] = 100.0
    perplexity, dead = vq.usage()
    assert perplexity == pytest.approx(1.0, abs=1e-3) and dead == 7


def test_snake_backward_matches_autograd_through_its_formula():
    """Snake's hand-written backward (it saves memory) against autograd of the plain formula."""
    from codec.model.seanet import Snake, _SnakeFunction, snake

    act = Snake(6).double()
    with torch.no_grad():
        act.alpha.copy_(torch.rand(1, 6, 1, dtype=torch.float64) * 2 + 0.1)
    x = torch.randn(2, 6, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SnakeFunction.apply, (x, act.alpha))
    assert torch.equal(act(x), snake(x, act.alpha))                       # the same forward
    ours = torch.autograd.grad(act(x).square().sum(), (x, act.alpha))
    plain = torch.autograd.grad(snake(x, act.alpha).square().sum(), (x, act.alpha))
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)
    act.alpha.requires_grad_(False)                     # frozen, as refinement runs it
    (frozen,) = torch.autograd.grad(act(x).square().sum(), x)
    torch.testing.assert_close(frozen, plain[0])
