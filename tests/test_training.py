"""The trainer end to end on the tiny model: data-parallel agreement, exact resume,
interruption, export, the schedule and quantizer-dropout functions, and the losses.

Training runs are real subprocesses (``python -m codec.train``, torchrun) of a few
steps on audio_samples/ with one thread each, so each test takes seconds.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from codec import intelligibility, perceptual
from codec.cli import main as cli
from codec.model import load_model
from codec.model.files import inference_tensors
from codec.spectral import LowBandDistance
from codec.train.checkpoint import checkpoint_progress, load_checkpoint
from codec.train.config import TrainConfig
from codec.train.distributed import checksums, first_disagreement
from codec.train.export import inference_model, training_model
from codec.train.losses import ReconstructionLoss
from codec.train.train import ema_decay, learning_rate, levels_per_item
from codec.train.train import main as train_main

from .conftest import SAMPLES, tensor, voiced

ROOT = Path(__file__).resolve().parent.parent
CLIP = SAMPLES / "speechocean_1135.flac"

# The tiny model of conftest.tiny_config, half-second crops, batch 2, one thread.
TINY_TOML = f"""
train_data = "{SAMPLES.as_posix()}"
valid_fraction = 0
segment_seconds = 0.5
batch_size = 2
threads = 1
valid_every = 1000
log_every = 1
checkpoint_every = 100000

[model]
name = "tiny"
channels = 4
strides = [2, 4, 5, 8]
dilations = [1]
latent_dim = 16
levels = 8
codebook_bits = 6
"""

RUN_TIMEOUT = 120

# Adversarial training with a discriminator small enough for a test.
ADVERSARIAL = ("adversarial=true", "discriminator_channels=4", "discriminator_windows=[256,128]",
               "discriminator_periods=[2,3]")


@pytest.fixture
def config_file(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def train_command(config: Path, run_dir: Path, *overrides: str, resume: bool = False) -> list[str]:
    # --resume goes between the config and the overrides: it may stand anywhere.
    return [sys.executable, "-m", "codec.train", str(config), *(["--resume"] if resume else []),
            f"run_dir={run_dir}", *overrides]


def run_training(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(train_command(*args, **kwargs), cwd=ROOT, env=child_env(),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def checkpoint_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoint.safetensors"))


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    differ = [name for name in a if a[name].dtype != b[name].dtype or not torch.equal(a[name], b[name])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:5]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env(**extra: str) -> dict[str, str]:
    """Distributed children that talk over the loopback interface only."""
    env = child_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), **extra)
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


# -- data parallel ------------------------------------------------------------------


@pytest.mark.parametrize("adversarial", [False, True], ids=["reconstruction", "adversarial"])
def test_torchrun_two_cpu_ranks_end_with_identical_weights_and_codebooks(tmp_path, config_file, adversarial):
    run_dir, ranks = tmp_path / "run", tmp_path / "ranks"
    env = loopback_env(CODEC_RANK_STATE_DIR=str(ranks))
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               f"--master_addr={env['MASTER_ADDR']}", f"--master_port={env['MASTER_PORT']}",
               "-m", "codec.train", str(config_file), "steps=3", f"run_dir={run_dir}",
               *(ADVERSARIAL if adversarial else ())]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0 = load_file(str(ranks / "rank0.safetensors"))
    rank1 = load_file(str(ranks / "rank1.safetensors"))
    assert_same_tensors(rank0, rank1)
    # The comparison covered weights, weight EMA and trained codebooks.
    assert any(".parametrizations.weight.original1" in name for name in rank0)
    assert any(name.startswith("ema.") for name in rank0)
    embeds = [name for name in rank0 if name.endswith(".embed")]
    assert len(embeds) == 8
    assert all(bool(rank0[name]) for name in rank0 if name.endswith(".initialized"))
    assert any(name.startswith("disc.") for name in rank0) == adversarial
    # Rank 0's final state is what was checkpointed.
    saved = load_checkpoint(run_dir / "checkpoint.safetensors")
    assert saved["step"] == 3
    for name, value in saved["model"].items():
        assert torch.equal(value, rank0[f"model.{name}"]), name
    for name, value in (saved["discriminator"] or {}).items():
        assert torch.equal(value, rank0[f"disc.{name}"]), name


CHECK_SCRIPT = """
import sys, torch, torch.distributed as dist
from codec.train.distributed import check_ranks_agree
dist.init_process_group("gloo")
state = {"encoder.weight": torch.arange(12.0).reshape(3, 4),
         "quantizer.levels.1.embed": torch.ones(4, 2),
         "quantizer.levels.1.initialized": torch.tensor(True)}
if dist.get_rank() == 1:
    state["quantizer.levels.1.embed"][3, 1] += 2 ** -20
try:
    check_ranks_agree(state, step=7)
    print("agreed")
except RuntimeError as e:
    print(e)
dist.destroy_process_group()
"""


def test_rank_check_names_the_first_tensor_that_differs():
    env = loopback_env(WORLD_SIZE="2")
    procs = [subprocess.Popen([sys.executable, "-c", CHECK_SCRIPT], cwd=ROOT, text=True,
                              env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(2)]
    try:
        outputs = [p.communicate(timeout=RUN_TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
        assert "ranks disagree at step 7" in out, out + err[-2000:]
        assert "'quantizer.levels.1.embed'" in out and "rank 1" in out, out


def test_checksums_see_moved_values_and_treat_nan_as_equal():
    a = {"w": torch.tensor([1.0, 2.0, 3.0]), "n": torch.tensor([float("nan"), 1.0])}
    moved = {"w": torch.tensor([2.0, 1.0, 3.0]), "n": torch.tensor([float("nan"), 1.0])}
    assert first_disagreement(list(a), [checksums(a), checksums(a)]) is None
    assert first_disagreement(list(a), [checksums(a), checksums(moved)]) == ("w", 1)
    assert first_disagreement(list(a), [checksums(a), checksums(a), checksums(moved)]) == ("w", 2)


# -- exact resume and interruption --------------------------------------------------------


@pytest.mark.parametrize("adversarial", [False, True], ids=["reconstruction", "adversarial"])
def test_resume_is_exact(tmp_path, config_file, adversarial):
    """4 steps straight == 2 steps, then --resume to 4 in a fresh process: model, EMA,
    optimiser, discriminator and RNG state bit-identical. Warmup covers steps 0 and 1,
    so both runs see the same rates there, and steps 2 and 3 run on the cosine decay."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    schedule = ("warmup_steps=2", "lr_final_fraction=0.1", *(ADVERSARIAL if adversarial else ()))
    commands = [train_command(config_file, straight, "steps=4", *schedule),
                train_command(config_file, stopped, "steps=2", *schedule)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for cmd in commands]
    for p in procs:
        _, err = p.communicate(timeout=RUN_TIMEOUT)
        assert p.returncode == 0, err[-3000:]
    assert load_checkpoint(stopped / "checkpoint.safetensors")["step"] == 2

    resumed = run_training(config_file, stopped, "steps=4", *schedule, resume=True)
    assert "resumed from" in resumed.stdout and "at step 2" in resumed.stdout

    a, b = load_checkpoint(straight / "checkpoint.safetensors"), load_checkpoint(stopped / "checkpoint.safetensors")
    assert a["step"] == b["step"] == 4
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    tensors_a, tensors_b = checkpoint_tensors(straight), checkpoint_tensors(stopped)
    kinds = ("model.", "ema.", "optim.", "rng.") + (("disc.", "doptim.") if adversarial else ())
    for kind in kinds:
        assert any(name.startswith(kind) for name in tensors_a), kind
    assert any(name.startswith("disc.") for name in tensors_a) == adversarial
    assert_same_tensors(tensors_a, tensors_b)


@pytest.mark.parametrize("other_judges", ["discriminator_periods=[5,7]", "discriminator_channels=6"],
                         ids=["same-names-other-periods", "same-names-other-widths"])
def test_resuming_with_other_judges_starts_a_fresh_discriminator(tmp_path, config_file, other_judges):
    # Both changes keep every state-dict key, so only the saved config tells the judges apart:
    # loading would silently train the period-2 judge's weights as the period-5 one, or fail on shapes.
    run_training(config_file, tmp_path, "steps=1", *ADVERSARIAL)
    first = load_checkpoint(tmp_path / "checkpoint.safetensors")["discriminator"]
    resumed = run_training(config_file, tmp_path, "steps=2", *ADVERSARIAL, other_judges, resume=True)
    assert "adversarial training starts with a fresh one" in resumed.stdout
    saved = load_checkpoint(tmp_path / "checkpoint.safetensors")
    assert saved["step"] == 2
    assert saved["discriminator"].keys() == first.keys()
    key, value = other_judges.split("=")
    assert str(saved["config"][key]).replace(" ", "") == value


def wait_for_progress(proc: subprocess.Popen, stderr: list[str], timeout: float = 60.0) -> int:
    """The step count tqdm last reported on ``proc``'s stderr, once it is at least 1."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(m) for m in re.findall(r"\|\s*(\d+)/\d+ \[", "".join(stderr))]
        if steps and max(steps) >= 1:
            return max(steps)
        assert proc.poll() is None, "training exited early:\n" + "".join(stderr)[-3000:]
        time.sleep(0.05)
    raise AssertionError("no training progress within the timeout:\n" + "".join(stderr)[-3000:])


def interrupt_training(command: list[str], env: dict, signum: int, timeout: float = 60.0,
                       run_dir: Path | None = None) -> tuple[int, str]:
    """Start ``command``, send ``signum`` once it reports a step, and return (exit status, output).

    With ``run_dir``, also check that no checkpoint existed before the signal (only it writes one).
    """
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(lambda: proc.stderr.read(256), "")), daemon=True)
    reader.start()
    try:
        wait_for_progress(proc, stderr, timeout=timeout)
        if run_dir is not None:
            assert not (run_dir / "checkpoint.safetensors").exists()
        proc.send_signal(signum)
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    return proc.returncode, proc.stdout.read() + "".join(stderr)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_leaves_a_resumable_checkpoint(tmp_path, config_file, signum):
    run_dir = tmp_path / "run"
    returncode, log = interrupt_training(train_command(config_file, run_dir, "steps=100000"), child_env(),
                                         signum, run_dir=run_dir)
    assert returncode == 0, log[-3000:]
    match = re.search(r"interrupted: checkpoint at step (\d+) saved", log)
    assert match, log[-3000:]
    step = int(match.group(1))
    assert step > 0
    assert load_checkpoint(run_dir / "checkpoint.safetensors")["step"] == step
    assert checkpoint_progress(run_dir / "checkpoint.safetensors") == (step, 100000)   # stopped short
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".part")]

    resumed = run_training(config_file, run_dir, f"steps={step + 1}", resume=True)
    assert f"at step {step}" in resumed.stdout
    assert load_checkpoint(run_dir / "checkpoint.safetensors")["step"] == step + 1
    assert checkpoint_progress(run_dir / "checkpoint.safetensors") == (step + 1, step + 1)   # finished


@pytest.mark.slow
def test_sigterm_to_torchrun_saves_one_checkpoint_for_both_ranks(tmp_path, config_file):
    run_dir = tmp_path / "run"
    env = loopback_env()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               f"--master_addr={env['MASTER_ADDR']}", f"--master_port={env['MASTER_PORT']}",
               "-m", "codec.train", str(config_file), "steps=100000", f"run_dir={run_dir}"]
    _, log = interrupt_training(command, env, signal.SIGTERM, timeout=90)   # torchrun passes it on
    match = re.search(r"interrupted: checkpoint at step (\d+) saved", log)
    assert match, log[-3000:]                     # (torchrun itself exits non-zero after a signal)
    assert "ranks disagree" not in log
    step = int(match.group(1))
    assert step > 0 and load_checkpoint(run_dir / "checkpoint.safetensors")["step"] == step
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".part")]


# -- export -------------------------------------------------------------------------


def cli_ok(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_configs_from_before_the_model_carried_its_level_still_load():
    old = TrainConfig.from_dict({"target_dbfs": -23.0, "model": {"channels": 8}})
    assert old.model.input_dbfs == -23.0 and old.model.channels == 8
    assert TrainConfig.from_dict({}).model.input_dbfs == -20.0


def test_export_then_encode_decode_with_the_exported_model(tmp_path, config_file):
    run_dir = tmp_path / "run"
    config = TrainConfig.load(config_file, [f"run_dir={run_dir}", "steps=2", "model.input_dbfs=-23"])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        train_main(config)                              # in-process: the fastest way to a checkpoint
    finally:
        torch.set_num_threads(threads)                  # the config's threads=1 is for the trainer only
    assert {s: signal.getsignal(s) for s in handlers} == handlers   # the trainer put them back
    checkpoint = run_dir / "checkpoint.safetensors"

    model_path = tmp_path / "exported.safetensors"
    cli_ok("export", checkpoint, model_path, "--name", "tiny-export")
    with safe_open(str(model_path), framework="pt") as f:
        fingerprint = f.metadata()["fingerprint"]
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.float16 in dtypes and not dtypes & {torch.float32, torch.float64, torch.bfloat16}

    # The exported weights are the checkpoint's EMA weights with weight norm folded in.
    saved = load_checkpoint(checkpoint)
    expected = inference_tensors(inference_model(config, saved["model"], saved["ema"]), torch.float16)
    model = load_model(model_path)
    assert model.fingerprint == fingerprint and model.config.name == "tiny-export"
    assert model.config.input_dbfs == -23       # the level it trained at travels with it, for the encoder
    exported = inference_tensors(model, torch.float16)
    assert_same_tensors(exported, expected)

    rvq, out = tmp_path / "clip.rvq", tmp_path / "clip.wav"
    cli_ok("encode", CLIP, rvq, "--kbps", "1.8", "--model", model_path)
    info = cli_ok("info", rvq)
    assert re.search(rf"^model\s+{fingerprint[:16]}\b", info, re.M), info
    assert "6 x 6 bits" in info
    cli_ok("decode", rvq, out, "--model", model_path)
    original, original_rate = sf.read(CLIP)
    decoded, rate = sf.read(out)
    assert rate == original_rate and decoded.shape == original.shape
    assert abs(decoded).max() > 0

    # --raw: the current weights instead of their moving average
    raw_path = tmp_path / "raw.safetensors"
    cli_ok("export", checkpoint, raw_path, "--raw")
    raw = inference_tensors(load_model(raw_path), torch.float16)
    assert_same_tensors(raw, inference_tensors(inference_model(config, saved["model"]), torch.float16))
    assert any(not torch.equal(raw[k], exported[k]) for k in raw)

    fp32_path = tmp_path / "exported32.safetensors"
    cli_ok("export", checkpoint, fp32_path, "--fp32")
    with safe_open(str(fp32_path), framework="pt") as f:
        assert torch.float32 in {f.get_tensor(k).dtype for k in f.keys()}


# -- schedule and quantizer dropout ---------------------------------------------------------


def test_learning_rate_warms_up_then_decays_by_cosine_to_the_final_fraction():
    c = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, lr_final_fraction=0.05)
    rates = [learning_rate(s, c) for s in range(c.steps + 5)]
    assert rates[0] == pytest.approx(1e-4)
    assert rates[9] == pytest.approx(1e-3) == rates[10]
    assert all(a < b for a, b in zip(rates[:10], rates[1:10]))                    # warmup rises
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))                    # then never rises
    assert rates[60] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))                 # half way down
    assert rates[35] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert rates[110] == pytest.approx(5e-5) == rates[-1]                         # floor, held after the end
    assert learning_rate(0, TrainConfig(lr=2e-3, warmup_steps=0, steps=100)) == pytest.approx(2e-3)


def test_weight_ema_follows_the_weights_early_then_settles_at_its_decay():
    c = TrainConfig(weight_ema=0.999)
    decays = [ema_decay(s, c) for s in range(10_000)]
    assert decays[0] == pytest.approx(0.1)
    assert all(a <= b for a, b in zip(decays, decays[1:]))
    assert decays[-1] == 0.999                                  # from step 8991 on
    # the share of the starting weights left in the EMA after 500 steps: a fixed
    # 0.999 would keep 61%, so a fine-tune would export mostly what it started from
    assert math.prod(decays[:500]) < 1e-3
    assert ema_decay(0, TrainConfig(weight_ema=0.0)) == 0.0


def test_quantizer_dropout_is_a_fraction_of_items_deterministic_per_step_and_rank():
    c = TrainConfig(batch_size=4000, quantizer_dropout=0.4, seed=3)
    c.model.levels = 8
    levels = levels_per_item(5, 0, c)
    assert levels.shape == (4000,) and levels.dtype == torch.int64
    assert torch.equal(levels, levels_per_item(5, 0, c))                          # reproducible (resume)
    assert not torch.equal(levels, levels_per_item(6, 0, c))                      # new draw each step
    assert not torch.equal(levels, levels_per_item(5, 1, c))                      # and each rank
    assert int(levels.min()) == 1 and int(levels.max()) == 8
    assert set(levels.tolist()) == set(range(1, 9))
    # A dropped item draws uniformly from 1..8, so 7/8 of the dropped ones end below 8.
    assert float((levels < 8).float().mean()) == pytest.approx(0.4 * 7 / 8, abs=0.03)
    c.quantizer_dropout = 0.0
    assert bool((levels_per_item(5, 0, c) == 8).all())


def test_a_skewed_quantizer_dropout_favours_few_levels():
    c = TrainConfig(batch_size=20000, quantizer_dropout=1.0, quantizer_dropout_skew=1.0)
    c.model.levels = 8
    share = torch.bincount(levels_per_item(0, 0, c), minlength=9)[1:].double() / c.batch_size
    expected = 1 / torch.arange(1, 9, dtype=torch.float64)
    torch.testing.assert_close(share, expected / expected.sum(), atol=0.01, rtol=0)


# -- logging and validation ----------------------------------------------------------


def test_validation_and_tensorboard_logs(tmp_path, config_file):
    """Scalars for every loss, the gradient norm, the learning rate, per-level codebook usage,
    validation scores at each bitrate, and audio examples reach TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    # speechocean_1135 (hash bucket 0.27) is held out; the other two clips train.
    run_training(config_file, run_dir, "steps=2", "valid_fraction=0.3", "valid_every=2",
                 "valid_kbps=[0.6,2.4]")
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"audio": 0, "scalars": 0}).Reload()
    scalars, audio = set(events.Tags()["scalars"]), set(events.Tags()["audio"])
    for tag in ("loss/total", "loss/stft", "loss/mel", "loss/waveform", "loss/commit", "train/grad_norm",
                "train/lr", "codebook_perplexity/level00", "codebook_dead/level07",
                "valid/mel_distance/0.6kbps", "valid/si_sdr/2.4kbps", "valid/pesq/0.6kbps", "valid/stoi/2.4kbps"):
        assert tag in scalars, tag
    assert {"audio/reference", "audio/0.6kbps", "audio/2.4kbps"} <= audio
    clip, reference = events.Audio("audio/2.4kbps")[-1], events.Audio("audio/reference")[-1]
    assert clip.step == 2 and clip.sample_rate == 16000
    assert clip.length_frames == reference.length_frames == sf.info(CLIP).frames   # under 4 s: all of it
    pesq, stoi = events.Scalars("valid/pesq/2.4kbps")[-1].value, events.Scalars("valid/stoi/2.4kbps")[-1].value
    assert 1.0 <= pesq <= 4.65 and 0.0 <= stoi <= 1.0


def test_validation_without_the_eval_packages_reports_the_rest(monkeypatch, shared_tiny_model_file):
    import codec.train.train as train_module
    from codec.errors import CodecError

    def missing():
        raise CodecError("codec eval needs the packages pesq and pystoi")
    monkeypatch.setattr(train_module, "metric_packages", missing)
    c = TrainConfig(valid_kbps=(2.4,))
    scores, _ = train_module.validate(load_model(shared_tiny_model_file), [CLIP], c)
    assert sorted(scores) == ["mel_distance/2.4kbps", "si_sdr/2.4kbps"]


# -- starting from an exported model ------------------------------------------------------


def test_init_from_an_exported_model_starts_from_its_weights_and_codebooks(tmp_path, config_file, tiny_model_file):
    from codec.errors import ModelError
    from codec.train.export import training_model

    c = TrainConfig.load(config_file)
    start = load_model(tiny_model_file)
    model = training_model(c, start)
    again = inference_model(c, model.state_dict())             # weight norm folded back out
    for name, value in inference_tensors(start).items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert all(bool(vq.initialized) and not vq.dead_codes().any() for vq in model.quantizer.levels)
    wider = TrainConfig.load(config_file, ["model.channels=8"])
    with pytest.raises(ModelError, match="channels 8 \\(config\\) vs 4 \\(model\\)"):
        training_model(wider, start)

    # and through the trainer: one step from the exported weights
    run_training(config_file, tmp_path / "run", "steps=1", "warmup_steps=1", f"init_from={tiny_model_file}")
    step1 = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert step1["config"]["init_from"] == str(tiny_model_file)
    after = inference_model(c, step1["model"], step1["ema"]).state_dict()
    before = dict(training_model(c, start).named_parameters())
    for name, ema in step1["ema"].items():                       # EMA after step 0: 0.1 old + 0.9 new
        torch.testing.assert_close(ema, torch.lerp(before[name].detach(), step1["model"][name], 0.9), msg=name)
    for name, value in inference_tensors(start).items():         # one step of lr 1e-3 moves little
        torch.testing.assert_close(after[name], value, rtol=0.05, atol=0.05, msg=name)


@pytest.mark.parametrize("trained, frozen", [("decoder", "encoder"), ("encoder", "decoder")])
def test_training_one_part_leaves_the_other_and_the_codebooks_as_loaded(tmp_path, config_file, tiny_model_file,
                                                                        trained, frozen):
    only = [f"init_from={tiny_model_file}", f"{trained}_only=true"]
    model = training_model(TrainConfig.load(config_file, [*only, "model.activation=snake"]))
    assert all(not p.requires_grad for p in getattr(model, frozen).parameters())     # no backward pass into it
    assert all(p.requires_grad for p in getattr(model, trained).parameters())

    run_training(config_file, tmp_path / "run", "steps=2", "warmup_steps=1", "lr=1e-2", *only)
    after = checkpoint_tensors(tmp_path / "run")
    c = TrainConfig.load(config_file)
    start = dict(training_model(c, load_model(tiny_model_file)).state_dict())
    kept = [k for k in start if k.startswith(f"{frozen}.")]
    codebooks = [k for k in start if k.startswith("quantizer.")]
    learned = [k for k in start if k.startswith(f"{trained}.") and start[k].is_floating_point()]
    assert kept and codebooks and learned
    for name in kept + codebooks:
        assert torch.equal(after[f"model.{name}"], start[name]), name
    assert sum(not torch.equal(after[f"model.{name}"], start[name]) for name in learned) > len(learned) // 2
    for name in kept:                                              # what export and validation use
        assert torch.equal(after[f"ema.{name}"], start[name]), name
    with pytest.raises(ValueError, match="give init_from"):
        TrainConfig.load(config_file, [f"{trained}_only=true"])
    # its optimizer holds one part's weights only: a resume cannot switch to all of them
    result = subprocess.run(train_command(config_file, tmp_path / "run", "steps=3", f"init_from={tiny_model_file}",
                                          resume=True), cwd=ROOT, env=child_env(), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"was trained with {trained}_only=true" in result.stderr


def test_a_grown_decoder_trains_and_resumes_with_its_new_units_at_their_own_rate(tmp_path, config_file,
                                                                                 tiny_model_file):
    grow = [f"init_from={tiny_model_file}", "decoder_only=true", "model.decoder_dilations=[1,3]",
            "grown_lr_scale=10", "warmup_steps=1"]
    run_training(config_file, tmp_path / "run", "steps=1", *grow)
    run_training(config_file, tmp_path / "run", "steps=2", *grow, resume=True)
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    assert saved["step"] == 2
    groups = saved["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [1.0, 10.0]
    assert groups[1]["lr"] == pytest.approx(10 * groups[0]["lr"])
    # the new units (dilation 3, after each stage's unit of dilation 1) moved from their zero start
    for i in (4, 8, 12, 16):
        magnitude = saved["model"][f"decoder.net.{i}.block.3.parametrizations.weight.original0"]
        assert 0 < magnitude.abs().max() < 0.1, i


def test_one_part_or_the_whole_model_not_both_parts_alone(tiny_model_file):
    with pytest.raises(ValueError, match="exclude each other"):
        TrainConfig.from_dict({"init_from": str(tiny_model_file), "decoder_only": True, "encoder_only": True})


# -- losses -----------------------------------------------------------------------------------


def test_short_mel_windows_hear_the_phase_of_harmonics_that_long_ones_miss():
    # The same 69 harmonics of 110 Hz, once in phase (a pulse train) and once with
    # random phases: equal long-window spectra, different waveforms. Only windows
    # shorter than a pitch period tell them apart, which is why mel_windows goes
    # down to a few milliseconds.
    t = torch.arange(16000) / 16000
    harmonics = torch.arange(1, 70)[:, None]
    phases = torch.rand(69, 1, generator=torch.Generator().manual_seed(0)) * 2 * math.pi
    pulses = torch.cos(2 * math.pi * 110 * harmonics * t).mean(0)[None, None]
    scrambled = torch.cos(2 * math.pi * 110 * harmonics * t + phases).mean(0)[None, None]

    def mel_loss(windows: tuple[int, ...]) -> float:
        return float(ReconstructionLoss(TrainConfig(mel_windows=windows)).mel(scrambled, pulses))

    long_windows = max(mel_loss((w,)) for w in (512, 1024, 2048))
    assert min(mel_loss((w,)) for w in (32, 64, 128)) > 20 * long_windows
    assert mel_loss((32, 2048)) == pytest.approx((mel_loss((32,)) + mel_loss((2048,))) / 2)


def test_the_low_band_term_hears_phase_below_its_cutoff_and_nothing_above():
    speech = tensor(voiced(1.0, seed=0))
    spectrum = torch.fft.rfft(speech)
    above_2k = torch.fft.rfftfreq(speech.shape[-1], 1 / 16000) >= 2000
    noise_above_2k = torch.fft.irfft(torch.fft.rfft(torch.randn(speech.shape, generator=torch.Generator().manual_seed(1)))
                                     * above_2k * spectrum.abs().mean(), speech.shape[-1])
    # the same magnitudes below 1 kHz with other phases: what the spectral terms cannot tell apart
    random_phase = torch.exp(2j * math.pi * torch.rand(spectrum.shape, generator=torch.Generator().manual_seed(2)))
    rephased = torch.fft.irfft(spectrum.abs() * random_phase, speech.shape[-1])

    for compare in ("phase", "complex"):
        distance = LowBandDistance(16000, 1000, compare)
        assert distance(speech, speech).item() < 1e-4         # the phase floor leaves a trace
        assert distance(speech + noise_above_2k, speech).item() < 0.01
        assert distance(torch.roll(speech, 8, -1), speech).item() > 0.3            # half a millisecond late
        assert distance(rephased, speech).item() > 1.0
        assert distance(3 * rephased, 3 * speech).item() == pytest.approx(distance(rephased, speech).item(), rel=1e-4)
    # the phase comparison leaves magnitudes to the other terms; the complex one does not
    assert LowBandDistance(16000, 1000, "phase")(0.5 * speech, speech).item() < 1e-3
    assert LowBandDistance(16000, 1000, "complex")(0.5 * speech, speech).item() == pytest.approx(0.5, rel=1e-4)

    loss = ReconstructionLoss(TrainConfig(low_band_weight=2.0, low_band_hz=1000))
    total, parts = loss(rephased, speech)
    base, base_parts = ReconstructionLoss(TrainConfig())(rephased, speech)
    assert "low_band" not in base_parts                                            # off by default
    assert total.item() == pytest.approx(base.item() + 2 * parts["low_band"].item(), rel=1e-5)


def test_the_perceptual_and_stoi_terms_join_the_loss_at_their_weights_item_by_item():
    # two different items, each decoded with noise of its own level: a measure that mixed the
    # items (scored the batch as one signal) would give other values
    clean = torch.cat([tensor(voiced(1.0, seed=0)), tensor(voiced(1.0, seed=1) * 0.3)])
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    decoded = (clean + noise * torch.tensor([0.002, 0.02])[:, None, None]).requires_grad_(True)

    base, base_parts = ReconstructionLoss(TrainConfig())(decoded, clean)
    assert "perceptual" not in base_parts and "stoi" not in base_parts      # off by default
    total, parts = ReconstructionLoss(TrainConfig(perceptual_weight=3.0, stoi_weight=2.0))(decoded, clean)

    def each(measure) -> list[float]:
        return [measure(clean[b:b + 1], 16000)(decoded[b:b + 1]).item() for b in range(2)]

    disturbances, scores = each(perceptual.PerceptualDisturbance), each(intelligibility.Intelligibility)
    assert disturbances[1] > 2 * disturbances[0] and scores[1] < scores[0]   # the noisier item scores worse
    assert parts["perceptual"].item() == pytest.approx(sum(disturbances) / 2, rel=1e-5)
    assert parts["stoi"].item() == pytest.approx(sum(scores) / 2, rel=1e-5)
    assert total.item() == pytest.approx(base.item() + 3 * parts["perceptual"].item() + 2 * (1 - parts["stoi"].item()),
                                         rel=1e-5)
    (gradient,) = torch.autograd.grad(parts["perceptual"] - parts["stoi"], decoded)
    assert gradient[0].abs().sum() > 0 and gradient[1].abs().sum() > 0     # both items are trained


def test_the_stoi_term_refuses_crops_shorter_than_one_stoi_segment():
    with pytest.raises(ValueError, match="384 ms"):
        TrainConfig(stoi_weight=1.0, segment_seconds=0.25)
    TrainConfig(stoi_weight=1.0, segment_seconds=0.5)
    TrainConfig(perceptual_weight=1.0, segment_seconds=0.25)      # the perceptual term needs 32 ms


def test_decoder_training_with_the_perceptual_and_stoi_terms_logs_them(tmp_path, config_file, tiny_model_file):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_training(config_file, tmp_path / "run", "steps=2", "warmup_steps=1", f"init_from={tiny_model_file}",
                 "decoder_only=true", "perceptual_weight=3", "stoi_weight=2")
    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"scalars": 0}).Reload()
    perceptual_loss, stoi = events.Scalars("loss/perceptual"), events.Scalars("loss/stoi")
    assert [e.step for e in perceptual_loss] == [e.step for e in stoi] == [1, 2]
    assert all(e.value > 0 for e in perceptual_loss) and all(0 < e.value < 1 for e in stoi)
