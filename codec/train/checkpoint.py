"""Training checkpoints as safetensors: tensors in the body, everything else as JSON.

A checkpoint holds the model (with its weight-norm parametrisation), the EMA
weights, the optimiser state, the torch RNG state and the step; with adversarial
training also the discriminator and its optimiser. The training config rides
along in the metadata. No pickle is written or read.
On a GPU the CUDA RNG state of the current device is saved as well.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "codec-checkpoint/1"


def _optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """An optimiser's per-parameter state as ``{prefix.index.key: tensor}``, and its param_groups as JSON."""
    opt = optimizer.state_dict()
    tensors = {f"{prefix}.{index}.{key}": torch.as_tensor(value)
               for index, state in opt["state"].items() for key, value in state.items()}
    return tensors, json.dumps(opt["param_groups"])


def save_checkpoint(path: Path, *, step: int, config: dict, model: dict[str, torch.Tensor],
                    ema: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
                    discriminator: dict[str, torch.Tensor] | None = None,
                    discriminator_optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in model.items()})
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    optim_tensors, param_groups = _optimizer_tensors(optimizer, "optim")
    tensors.update(optim_tensors)
    metadata = {"format": FORMAT, "step": str(step), "config": json.dumps(config),
                "param_groups": param_groups}
    if discriminator is not None:
        tensors.update({f"disc.{k}": v for k, v in discriminator.items()})
        optim_tensors, metadata["disc_param_groups"] = _optimizer_tensors(discriminator_optimizer, "doptim")
        tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)     # left only if the write failed


def checkpoint_progress(path: Path) -> tuple[int, int]:
    """``(step reached, steps scheduled)`` of a checkpoint, from its metadata alone: a stopped
    run is told from a finished one without reading its tensors."""
    with safe_open(str(path), framework="pt") as f:
        metadata = _metadata(f, path)
    return int(metadata["step"]), int(json.loads(metadata["config"])["steps"])


def _metadata(f, path: Path) -> dict[str, str]:
    """The metadata of an open checkpoint file; ValueError if it is not one."""
    metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a codec training checkpoint")
    return metadata


def load_checkpoint(path: Path) -> dict:
    """Returns ``{step, config, model, ema, optimizer, rng, rng_cuda, discriminator,
    discriminator_optimizer}``; optimizers are state_dicts; rng_cuda is None for a
    checkpoint written without a GPU, the discriminator entries None without one."""
    with safe_open(str(path), framework="pt") as f:
        metadata = _metadata(f, path)       # before reading the tensors of what may not be one
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    groups: dict[str, dict] = {"model": {}, "ema": {}, "disc": {}}
    states: dict[str, dict[int, dict]] = {"optim": {}, "doptim": {}}
    for name, t in tensors.items():
        kind, _, rest = name.partition(".")
        if kind in groups:
            groups[kind][rest] = t
        elif kind in states:
            index, _, key = rest.partition(".")
            states[kind].setdefault(int(index), {})[key] = t
    has_discriminator = "disc_param_groups" in metadata
    return {"step": int(metadata["step"]), "config": json.loads(metadata["config"]),
            "model": groups["model"], "ema": groups["ema"],
            "optimizer": {"state": states["optim"], "param_groups": json.loads(metadata["param_groups"])},
            "rng": tensors["rng.torch"], "rng_cuda": tensors.get("rng.cuda"),
            "discriminator": groups["disc"] if has_discriminator else None,
            "discriminator_optimizer": {"state": states["doptim"],
                                        "param_groups": json.loads(metadata["disc_param_groups"])}
            if has_discriminator else None}
