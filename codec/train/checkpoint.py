"""Training checkpoints as safetensors: tensors in the body, everything else as JSON.

A checkpoint holds the model (with its weight-norm parametrisation), the EMA
weights, the optimiser state, the torch RNG state and the step; the training
config rides along in the metadata. No pickle is written or read.
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


def save_checkpoint(path: Path, *, step: int, config: dict, model: dict[str, torch.Tensor],
                    ema: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"model.{k}": v for k, v in model.items()})
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "step": str(step), "config": json.dumps(config),
                "param_groups": json.dumps(opt["param_groups"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)     # left only if the write failed


def load_checkpoint(path: Path) -> dict:
    """Returns ``{step, config, model, ema, optimizer, rng, rng_cuda}``; optimizer is a
    state_dict; rng_cuda is None for a checkpoint written without a GPU."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a codec training checkpoint")
    groups = {"model": {}, "ema": {}}
    state: dict[int, dict] = {}
    for name, t in tensors.items():
        kind, _, rest = name.partition(".")
        if kind in groups:
            groups[kind][rest] = t
        elif kind == "optim":
            index, _, key = rest.partition(".")
            state.setdefault(int(index), {})[key] = t
    return {"step": int(metadata["step"]), "config": json.loads(metadata["config"]),
            "model": groups["model"], "ema": groups["ema"],
            "optimizer": {"state": state, "param_groups": json.loads(metadata["param_groups"])},
            "rng": tensors["rng.torch"], "rng_cuda": tensors.get("rng.cuda")}
