"""Model files: safetensors weights with the JSON config and fingerprint in the header.

One ``.safetensors`` file holds everything needed to rebuild a model. Its
metadata carries ``format`` (``codec-model/1``), ``config`` (the CodecConfig as
JSON) and ``fingerprint``: the SHA-256 of the stored tensors, recomputed and
checked on every load so that a truncated or tampered file is caught, and
recorded (first 8 bytes) in every bitstream so that codes are decoded only by
the model that made them. Pickles are never read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ModelError
from .codec_model import CodecConfig, CodecModel
from .quantizer import TRAINING_BUFFERS

FORMAT = "codec-model/1"
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_MODEL = "speech16k"


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over names, dtypes, shapes and bytes of ``tensors`` in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")   # hashed in place, not copied
    return h.hexdigest()


def inference_tensors(model: CodecModel, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The state an inference model needs, without codebook training statistics."""
    out = {}
    for name, t in model.state_dict().items():
        if name.rsplit(".", 1)[-1] in TRAINING_BUFFERS:
            continue
        out[name] = t.detach().to(dtype).contiguous() if t.is_floating_point() else t.detach().contiguous()
    return out


def save_model(model: CodecModel, path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> str:
    """Write ``model`` (plain convolutions, no weight norm) to ``path``; returns its fingerprint.

    Written to a temporary file and renamed, so an interrupted save leaves no half file.
    """
    tensors = inference_tensors(model, dtype)
    digest = fingerprint(tensors)
    metadata = {"format": FORMAT, "config": json.dumps(model.config.to_dict()), "fingerprint": digest}
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # an ordinary file, not safetensors' private 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return digest


def resolve(name_or_path: str | os.PathLike | None) -> Path:
    """A shipped model's name (``speech16k``) or a path to a model file."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    path = Path(name_or_path)
    if path.suffix == "" and not path.exists():
        shipped = PRETRAINED_DIR / f"{name_or_path}.safetensors"
        if shipped.exists():
            return shipped
        names = sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))
        raise ModelError(f"no model named {str(name_or_path)!r}; shipped models: {', '.join(names) or 'none'}")
    return path


def load_model(name_or_path: str | os.PathLike | None = None) -> CodecModel:
    """Load a model for inference (eval mode, float32) and verify its fingerprint."""
    path = resolve(name_or_path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise ModelError(f"{path} looks like a pickle; only safetensors model files are loaded")
    try:
        metadata = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path} is not a readable safetensors model file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise ModelError(f"{path} is not a codec model file (format {metadata.get('format')!r})")
    actual = fingerprint(tensors)
    if actual != metadata.get("fingerprint"):
        raise ModelError(f"{path} fails its fingerprint check: the weights were changed or damaged")
    try:
        model = CodecModel(_config(metadata))
        missing, unexpected = model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=False)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path} has a config or weights this codec cannot build ({e})") from None
    missing = [k for k in missing if k.rsplit(".", 1)[-1] not in TRAINING_BUFFERS]
    if missing or unexpected:
        raise ModelError(f"{path} does not match its config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.fingerprint = actual
    return model.eval()


def read_config(name_or_path: str | os.PathLike) -> CodecConfig:
    """A model file's config, without loading its weights."""
    path = resolve(name_or_path)
    try:
        return _config(read_metadata(path))
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as e:
        raise ModelError(f"{path} is not a readable codec model file ({e})") from None


def _config(metadata: dict[str, str]) -> CodecConfig:
    """The config a model file's metadata holds (KeyError, ValueError or TypeError if it holds none)."""
    return CodecConfig.from_dict(json.loads(metadata["config"]))


def read_metadata(path: Path) -> dict[str, str]:
    """The header metadata of a model file, without loading its tensors."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def find_shipped_model(fingerprint_prefix: str) -> Path | None:
    """The shipped model whose fingerprint starts with ``fingerprint_prefix`` (hex), if any."""
    for path in sorted(PRETRAINED_DIR.glob("*.safetensors")):
        if read_metadata(path).get("fingerprint", "").startswith(fingerprint_prefix):
            return path
    return None
