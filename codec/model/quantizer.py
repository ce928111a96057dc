"""Residual vector quantization with EMA codebooks.

Each level quantizes what the previous levels left over, so decoding with the
first k levels gives a coarser but valid reconstruction: one model serves every
bitrate. Codebooks learn by exponential moving averages of the vectors assigned
to them (no gradient), start from k-means on the first batch, and replace codes
that stop being used.

Gradient design. Level i quantizes ``r_i = x - (q_0 + ... + q_{i-1})`` where the
``q_j`` are codebook vectors and carry no gradient, so every ``r_i`` is a
function of the encoder output ``x`` and each level's commitment loss
``|r_i - q_i|^2`` pulls the encoder towards its codebook. The decoder's gradient
reaches the encoder through one straight-through estimator over the whole sum,
``x + (sum_i q_i - x).detach()``, so it is counted once, whatever the number of
levels (a per-level estimator would multiply it by the level count).

Distributed training: the EMA statistics are all-reduced and the random choices
(k-means seeding, dead-code replacement) are made on rank 0 and broadcast, so
every rank holds the same codebooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from ..errors import whole_number

# Buffers a codebook needs only while training; exported models leave them out.
TRAINING_BUFFERS = ("cluster_size", "embed_sum", "initialized")

# How many code sequences the encoder's search keeps per frame (ResidualVectorQuantizer.encode).
# benchmarks/rvq_search.py, speech16k on 21 dev files: against greedy coding, a beam of 8 raises
# PESQ-WB by 0.03 and STOI by 0.004 at 1.5 kbps, less at 3 kbps and nothing from 6 kbps up
# (the codes there carry all the decoder can use), for at most 14% more encoding time (16 kbps).
# Widths 4 and 16 gain about as much; 8 scored highest.
DEFAULT_BEAM = 8


def check_beam(beam: int) -> int:
    """``beam`` as an int, or ValueError if it is not a whole number of at least 1."""
    return whole_number("beam", beam, 1)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.all_reduce(t)
    return t


def _broadcast(t: torch.Tensor) -> torch.Tensor:
    if _distributed():
        dist.broadcast(t, src=0)
    return t


def _sample_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` rows of ``x [N, D]`` drawn at random (with replacement if N < n)."""
    if x.shape[0] >= n:
        return x[torch.randperm(x.shape[0], device=x.device)[:n]]
    return x[torch.randint(0, x.shape[0], (n,), device=x.device)]


def kmeans(x: torch.Tensor, k: int, iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``x [N, D]``; returns centroids ``[k, D]`` and cluster sizes ``[k]``."""
    centroids = _sample_rows(x, k)
    for _ in range(iterations):
        codes = torch.cdist(x, centroids).argmin(dim=1)
        counts = torch.bincount(codes, minlength=k).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, codes, x)
        # Empty clusters keep their seed rather than collapsing to zero.
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids, counts


class VectorQuantizer(nn.Module):
    """One codebook of ``codebook_size`` vectors of size ``dim``, learned by EMA.

    Args:
        decay: EMA decay of the cluster sizes and sums.
        epsilon: Laplace smoothing of cluster sizes, so no code divides by zero.
        dead_fraction: a code whose EMA cluster size falls below this fraction
            of the mean cluster size is replaced by a random vector from the
            current batch. Relative, because the absolute count a live code
            gets per step depends on the batch size.
    """

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99,
                 epsilon: float = 1e-5, dead_fraction: float = 0.1) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.dead_fraction = dead_fraction
        self.register_buffer("embed", torch.randn(codebook_size, dim))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", self.embed.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the closest code for each row: ``[N, D] -> [N]`` (int64)."""
        distance = (x.pow(2).sum(1, keepdim=True) - 2 * x @ self.embed.t()
                    + self.embed.pow(2).sum(1)[None])
        return distance.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors for integer codes: ``[...] -> [..., D]``."""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """k-means on the first batch ``x [N, D]``, computed on rank 0 for all ranks.

        At most ``N // 2`` centroids are fitted: with as many centroids as vectors
        every vector would be its own code, the residual would be exactly zero
        and every later level would start from nothing. The codes left over
        start dead and are placed on data by dead-code replacement.
        """
        fitted = min(self.codebook_size, max(1, x.shape[0] // 2))
        centroids, counts = kmeans(x.float(), fitted)
        embed = torch.cat([centroids, _sample_rows(x.float(), self.codebook_size - fitted)])
        sizes = torch.cat([counts, counts.new_zeros(self.codebook_size - fitted)])
        self.embed.copy_(_broadcast(embed))
        self.cluster_size.copy_(_broadcast(sizes))
        self.embed_sum.copy_(self.embed * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def adopt(self) -> None:
        """Go on learning from the codebook in ``embed`` (a trained one, from an exported model,
        which keeps no training statistics): every code starts with the same EMA cluster size,
        so none counts as dead until the data says so."""
        self.cluster_size.fill_(1.0)
        self.embed_sum.copy_(self.embed)
        self.initialized.fill_(True)

    @torch.no_grad()
    def replace_dead_codes(self, x: torch.Tensor) -> None:
        """Move rarely used codes onto random vectors of ``x [N, D]``.

        The replaced code's EMA statistics restart as if it had been assigned
        an average share of copies of its new vector; keeping the old sums would
        drag it straight back to where it died.
        """
        dead = self.dead_codes()
        if not dead.any():
            return
        candidates = _broadcast(_sample_rows(x.float(), self.codebook_size))
        fresh_size = self.cluster_size.mean()
        self.embed[dead] = candidates[dead]
        self.cluster_size[dead] = fresh_size
        self.embed_sum[dead] = candidates[dead] * fresh_size

    def dead_codes(self) -> torch.Tensor:
        """Boolean mask ``[codebook_size]`` of codes used too rarely to keep."""
        return self.cluster_size < self.dead_fraction * self.cluster_size.mean()

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA step from vectors ``x [N, D]`` assigned to ``codes [N]``."""
        counts = torch.bincount(codes, minlength=self.codebook_size).to(self.embed.dtype)
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x.to(self.embed.dtype))
        counts, sums = _all_reduce_sum(counts), _all_reduce_sum(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_sum / smoothed[:, None])

    def usage(self) -> tuple[float, int]:
        """(perplexity of the EMA code distribution, number of dead codes)."""
        p = self.cluster_size / self.cluster_size.sum().clamp_min(1e-9)
        perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()).item()
        return perplexity, int(self.dead_codes().sum())


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor        # [B, D, T], straight-through: gradient flows to the input
    codes: torch.Tensor            # [B, levels, T] int64
    commit_losses: torch.Tensor    # [levels], each level's commitment loss


class ResidualVectorQuantizer(nn.Module):
    """A stack of ``levels`` codebooks, each coding the residual of those before it."""

    def __init__(self, dim: int, levels: int, codebook_size: int, decay: float = 0.99,
                 dead_fraction: float = 0.1) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, decay=decay, dead_fraction=dead_fraction)
            for _ in range(levels))

    def forward(self, x: torch.Tensor, n_levels: torch.Tensor | int | None = None) -> QuantizerOutput:
        """Quantize ``x [B, D, T]`` with ``n_levels`` levels per item (int or ``[B]``).

        Every level is computed for every item (so all codebooks keep learning),
        but an item's output and commitment losses use only its first
        ``n_levels[b]`` levels: this is how quantizer dropout is applied.
        In training mode the codebooks are updated.
        """
        batch, dim, frames = x.shape
        n_total = len(self.levels)
        if n_levels is None:
            n_levels = n_total
        n_levels = torch.as_tensor(n_levels, device=x.device).expand(batch)

        residual = x.transpose(1, 2).reshape(-1, dim)           # [B*T, D]
        quantized_sum = torch.zeros_like(residual)
        codes, losses = [], []
        for i, vq in enumerate(self.levels):
            target = residual.detach()
            if self.training and not vq.initialized:
                vq.initialize(target)
            level_codes = vq.nearest(target)
            q = vq.lookup(level_codes)
            if self.training:
                vq.update(target, level_codes)
                # After this batch is coded, so that no vector of it is coded by a
                # copy of itself (which would zero the residual for deeper levels).
                vq.replace_dead_codes(target)
            active = (i < n_levels).to(x.dtype).repeat_interleave(frames)[:, None]  # [B*T, 1]
            error = (residual - q).pow(2).mean(dim=1, keepdim=True)
            losses.append((error * active).sum() / active.sum().clamp_min(1.0))
            quantized_sum = quantized_sum + q * active
            residual = residual - q
            codes.append(level_codes.view(batch, frames))

        flat_x = x.transpose(1, 2).reshape(-1, dim)
        quantized = flat_x + (quantized_sum - flat_x).detach()
        return QuantizerOutput(
            quantized=quantized.view(batch, frames, dim).transpose(1, 2),
            codes=torch.stack(codes, dim=1),
            commit_losses=torch.stack(losses))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_levels: int, beam: int = DEFAULT_BEAM) -> torch.Tensor:
        """Codes for ``x [B, D, T]`` with the first ``n_levels`` levels: ``[B, n_levels, T]``.

        ``beam=1`` codes greedily: each level takes the code nearest to what the levels
        before it left over, as training does. A wider beam keeps, for each frame, the
        ``beam`` code sequences that leave the smallest residual after each level, and
        returns the one whose sum lies nearest ``x`` after the last: a code that is not the
        nearest can leave a residual that the next levels fit better. The codes decode
        with the same decoder and fill the same bitstream; only the encoder searches more.
        Frames are coded independently, so the codes of a frame do not depend on its
        neighbours (streaming stays equal to whole-file coding).
        """
        beam = check_beam(beam)
        batch, dim, frames = x.shape
        vectors = x.transpose(1, 2).reshape(-1, dim)
        # frames at a time, so that each [frames, beam, codebook] distance tensor stays
        # within 16 MB; with no frames at all, one empty chunk gives torch.cat its input
        chunk = max(1, 2 ** 22 // (beam * self.levels[0].codebook_size))
        codes = torch.cat([self._search(vectors[i:i + chunk], n_levels, beam)
                           for i in range(0, max(1, vectors.shape[0]), chunk)])
        return codes.view(batch, frames, n_levels).transpose(1, 2)

    def _search(self, x: torch.Tensor, n_levels: int, beam: int) -> torch.Tensor:
        """Beam search over the levels for vectors ``x [N, D]``: codes ``[N, n_levels]``."""
        n, dim = x.shape
        residuals = x[:, None]                                   # [N, paths, D]: one path to start
        paths = torch.zeros(n, 1, 0, dtype=torch.int64, device=x.device)   # [N, paths, levels so far]
        for i, vq in enumerate(self.levels[:n_levels]):
            embed = vq.embed                                     # [K, D]
            # the squared residual each path would leave with each code: [N, paths, K]
            error = residuals.pow(2).sum(-1, keepdim=True) - 2 * residuals @ embed.t() + embed.pow(2).sum(1)
            kept = 1 if i == n_levels - 1 else min(beam, error.shape[1] * error.shape[2])
            best = error.flatten(1).topk(kept, dim=1, largest=False).indices      # [N, kept]
            path, code = best // vq.codebook_size, best % vq.codebook_size
            residuals = residuals.gather(1, path[..., None].expand(-1, -1, dim)) - embed[code]
            paths = torch.cat([paths.gather(1, path[..., None].expand(-1, -1, i)), code[..., None]], dim=2)
        return paths[:, 0]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Sum of code vectors: ``[B, n, T] -> [B, D, T]`` for any ``n`` up to ``levels``."""
        out = 0
        for i in range(codes.shape[1]):
            out = out + self.levels[i].lookup(codes[:, i])
        return out.transpose(1, 2)

    def usage(self) -> list[tuple[float, int]]:
        """Per level: (perplexity, dead codes)."""
        return [vq.usage() for vq in self.levels]
