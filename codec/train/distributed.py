"""Checks that data-parallel ranks hold the same model.

Every rank must end each step with the same weights and codebooks: gradients
are averaged by DDP, codebook statistics are all-reduced and random codebook
choices are broadcast by the quantizer. A bug in any of these would let the
ranks drift apart silently (only rank 0's model is saved), so the trainer
compares a cheap checksum of every tensor across ranks at each checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

# Debugging aid: when set, every rank writes its final model state (and weight EMA)
# to DIR/rank{R}.safetensors, so that ranks can be compared tensor by tensor.
RANK_STATE_DIR_ENV = "CODEC_RANK_STATE_DIR"


def checksums(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[len(tensors), 3]`` float64: sum, sum of squares and a position-weighted sum
    of each tensor (in the dict's order). The weighted sum catches values that
    moved within a tensor, which the other two cannot see."""
    rows = []
    for t in tensors.values():
        x = t.detach().reshape(-1).to(torch.float64)
        weights = torch.arange(x.numel(), device=x.device, dtype=torch.float64).remainder_(7).add_(1)
        rows.append(torch.stack([x.sum(), x.square().sum(), (x * weights).sum()]))
    if not rows:
        return torch.zeros(0, 3, dtype=torch.float64)
    return torch.stack(rows)


def first_disagreement(names: list[str], gathered: list[torch.Tensor]) -> tuple[str, int] | None:
    """``(tensor name, rank)`` of the first tensor whose checksum on some rank differs
    from rank 0's, or None if all agree. NaN matches NaN: a model broken the same
    way on every rank is not a disagreement."""
    reference = gathered[0].cpu()
    for rank, other in enumerate(gathered[1:], start=1):
        other = other.cpu()
        same = (reference == other) | (reference.isnan() & other.isnan())
        if not same.all():
            return names[int(same.all(dim=1).logical_not().nonzero()[0])], rank
    return None


def check_ranks_agree(tensors: dict[str, torch.Tensor], step: int) -> None:
    """Collective: raise RuntimeError on every rank if any rank's ``tensors`` differ.

    Every rank must call it at the same point with the same names in the same order.
    No-op outside a process group of more than one rank.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    names = list(tensors)
    local = checksums(tensors)
    if dist.get_backend() == "nccl":
        local = local.to(torch.device("cuda", torch.cuda.current_device()))
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    found = first_disagreement(names, gathered)
    if found:
        name, rank = found
        raise RuntimeError(f"data-parallel ranks disagree at step {step}: tensor {name!r} differs "
                           f"between rank 0 and rank {rank} (checked {len(names)} tensors)")


def save_rank_state(tensors: dict[str, torch.Tensor], rank: int) -> Path | None:
    """If ``CODEC_RANK_STATE_DIR`` is set, write ``tensors`` to ``DIR/rank{rank}.safetensors``."""
    directory = os.environ.get(RANK_STATE_DIR_ENV)
    if not directory:
        return None
    from safetensors.torch import save_file
    path = Path(directory) / f"rank{rank}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}, str(path))
    return path
