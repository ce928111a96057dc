"""The `codec` command line: encode, decode, info, eval, compare, train, export.

Every user error is reported as one line on stderr with a non-zero exit; output
files appear whole or not at all (see fileio.atomic_output).
"""

from __future__ import annotations

import io
import sys
from typing import NoReturn

import click

from .errors import CodecError

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


# `codec` with no command shows its help; click signals that with a UsageError (click >= 8.2)
SHOW_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def usage_error(e: click.UsageError) -> NoReturn:
    """One line on stderr, where click would print usage, a hint and the error on three."""
    where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
    click.echo(f"codec: error: {e.format_message()}{where}", err=True)
    sys.exit(e.exit_code)


class CodecCommand(click.Group):
    """Turns CodecError, usage errors (and interruptions) into one line on stderr instead of a
    traceback or click's three-line usage message."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:                                   # the top level's own options: `codec --bogus`
            return super().parse_args(ctx, args)
        except SHOW_HELP:
            raise
        except click.UsageError as e:
            usage_error(e)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SHOW_HELP:
            raise
        except click.UsageError as e:          # a command's arguments, or an unknown command
            usage_error(e)
        except CodecError as e:
            click.echo(f"codec: error: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("codec: interrupted; no output was written", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            sys.stderr.close()   # the reader went away: nothing left to say to it
            sys.exit(EXIT_ERROR)


@click.group(cls=CodecCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="codec")
def main() -> None:
    """A neural speech codec: audio to compact .rvq bitstreams and back."""
    from .fileio import install_signal_handlers
    install_signal_handlers()


model_option = click.option("--model", "model_path", default=None, metavar="NAME|FILE",
                            help="A shipped model's name or a model file (default: the model that made the stream, "
                                 "or speech16k for encoding).")
force_option = click.option("--force", "-f", is_flag=True, help="Overwrite an existing output file.")
beam_option = click.option("--beam", type=click.IntRange(1, 64), default=None, metavar="N",
                           help="Code sequences the quantizer's search keeps per frame (default 8): wider finds "
                                "better codes at low bitrates and encodes more slowly; 1 is greedy. "
                                "Decoding is the same.")
refine_option = click.option("--refine", type=click.IntRange(0, 1000), default=None, metavar="STEPS",
                             help="Steps of the search for codes whose decoding sounds nearest the input "
                                  "(default 30): more is better and slower; 0 takes the "
                                  "encoder's codes, 10 to 20 times faster. Decoding is the same.")


def describe(kbps: float, levels: int, seconds: float, size: int, gain_db: float) -> str:
    return (f"{kbps:.2f} kbps, {levels} levels, {seconds:.2f} s, {size} bytes "
            f"({size * 8 / max(seconds, 1e-9) / 1000:.2f} kbps on disk), coded at {gain_db:+g} dB")


@main.command()
@click.argument("input_path", metavar="INPUT")
@click.argument("output_path", metavar="OUTPUT")
@click.option("--kbps", type=float, default=6.0, show_default=True, help="Target bitrate.")
@click.option("--no-normalize", is_flag=True,
              help="Code the audio at its own level instead of the model's (-20 dBFS for speech16k).")
@beam_option
@refine_option
@model_option
@force_option
def encode(input_path: str, output_path: str, kbps: float, no_normalize: bool, beam: int | None,
           refine: int | None, model_path: str | None, force: bool) -> None:
    """Encode an audio file (WAV, FLAC, OGG; '-' for stdin) into a .rvq bitstream ('-' for stdout).

    The audio is scaled to the level the model was trained at, and the gain is
    recorded in the stream for the decoder to undo (see codec.loudness).
    """
    from .audio import open_audio
    from .coding import encode_stream
    from .fileio import atomic_output, refuse_same_file
    from .loudness import gain_db_of_blocks
    from .model import load_model
    from .model.quantizer import DEFAULT_BEAM

    refuse_same_file(input_path, output_path)
    model = load_model(model_path)
    levels = model.levels_for_kbps(kbps)           # a bad bitrate fails before any reading
    counter = _CountingWriter()
    with open_audio(input_path) as audio, atomic_output(output_path, force=force) as f:
        gain = 0.0
        if not no_normalize:                      # a first pass measures the level
            gain = gain_db_of_blocks(audio.blocks(), audio.rate, model.config.input_dbfs)
            audio.rewind()
        counter.inner = f
        with progress(audio.frames and audio.frames / audio.rate, "encode") as bar:
            blocks = (bar.advance(block, audio.rate) for block in audio.blocks())
            header = encode_stream(counter, model, blocks, audio.rate, audio.channels, kbps,
                                   num_samples=audio.frames, reject_silence=True, name=audio.name,
                                   gain_db=gain, beam=DEFAULT_BEAM if beam is None else beam,
                                   refine=refine)
    seconds = header.num_samples / audio.rate
    click.echo(f"{output_path}: {describe(model.kbps_for_levels(levels), levels, seconds, counter.size, header.gain_db)}", err=True)


@main.command()
@click.argument("input_path", metavar="INPUT")
@click.argument("output_path", metavar="OUTPUT")
@click.option("--kbps", type=float, default=None, help="Decode with the first levels only (scalable decoding).")
@click.option("--sample-rate", type=click.IntRange(1000, 384000), default=None,
              help="Output sample rate (default: the original's).")
@click.option("--conceal", is_flag=True,
              help="Replace packets that fail their CRC with silence instead of stopping.")
@model_option
@force_option
def decode(input_path: str, output_path: str, kbps: float | None, sample_rate: int | None,
           conceal: bool, model_path: str | None, force: bool) -> None:
    """Decode a .rvq bitstream ('-' for stdin) to audio (.wav, .flac, .ogg; '-' for WAV on stdout)."""
    from .audio import AudioWriter, format_for_path
    from .coding import DecodedStream
    from .fileio import atomic_output, open_input, refuse_same_file

    refuse_same_file(input_path, output_path)
    audio_format = format_for_path(output_path)
    with open_input(input_path) as source:
        stream = DecodedStream(source, model_path, kbps=kbps, sample_rate=sample_rate, conceal=conceal)
        samples = 0
        total = stream.header.num_samples and stream.header.num_samples / stream.header.original_sample_rate
        with atomic_output(output_path, force=force) as f, \
                AudioWriter(f, stream.rate, stream.channels, format=audio_format) as writer, \
                progress(total, "decode") as bar:
            for block in stream:
                writer.write(bar.advance(block, stream.rate))
                samples += block.shape[-1]
    click.echo(f"{output_path}: {stream.channels} channel(s), {stream.rate} Hz, {samples / stream.rate:.2f} s", err=True)
    if stream.concealed:
        where = ", ".join(f"{i} (at {t:.2f} s)" for i, t, _ in stream.concealed)
        seconds = sum(s for _, _, s in stream.concealed)
        click.echo(f"{output_path}: concealed {seconds:.2f} s of damaged audio with silence: "
                   f"{len(stream.concealed)} packet(s), {where}", err=True)


@main.command()
@click.argument("input_path", metavar="INPUT")
def info(input_path: str) -> None:
    """Show what a .rvq bitstream holds, checking every packet."""
    from .bitstream import HEADER_SIZE, BitstreamReader
    from .fileio import open_input
    from .model.files import find_shipped_model

    with open_input(input_path) as f:
        data = f.read()
    reader = BitstreamReader(io.BytesIO(data))
    h = reader.header
    frames = packets = 0
    for codes in reader:
        frames += codes.shape[2]
        packets += 1
    seconds = reader.num_samples / h.original_sample_rate
    payload_bits = frames * h.channels * h.levels * h.codebook_bits
    shipped = find_shipped_model(h.fingerprint.hex())
    rows = [
        ("model", f"{h.fingerprint.hex()}" + (f" ({shipped.stem}, shipped)" if shipped else " (not a shipped model)")),
        ("duration", f"{seconds:.3f} s ({reader.num_samples} samples at {h.original_sample_rate} Hz)"),
        ("sample rate", f"{h.original_sample_rate} Hz original, {h.sample_rate} Hz coded"),
        ("channels", str(h.channels)),
        ("levels", f"{h.levels} x {h.codebook_bits} bits"),
        ("gain", f"{h.gain_db:+g} dB before coding, undone by the decoder"),
        ("frames", f"{frames} ({h.frame_rate:g}/s, hop {h.hop}), {packets} packets"),
        ("bitrate", f"{h.nominal_kbps:.2f} kbps nominal, {len(data) * 8 / max(seconds, 1e-9) / 1000:.2f} kbps on disk"),
        ("size", f"{len(data)} bytes: {HEADER_SIZE} header, {payload_bits / 8:.0f} codes, "
                 f"overhead {100 * (1 - payload_bits / 8 / max(len(data), 1)):.2f}%"),
    ]
    for key, value in rows:
        click.echo(f"{key:12} {value}")


@main.command("eval")
@click.argument("refs", metavar="REFS")
@click.option("--kbps", "kbps_spec", default="1.5,3,6,12", show_default=True, metavar="LIST",
              help="Our model's bitrates, comma-separated (0.5 to 16 for speech16k).")
@click.option("--baseline", "baseline_spec", default="opus,codec2", show_default=True, metavar="LIST",
              help="Reference codecs to run where installed: opus, codec2, or none.")
@click.option("--out", "out_dir", default="eval_out", show_default=True, metavar="DIR",
              help="Folder for results.csv, rate_distortion.png, index.html and audio/.")
@click.option("--model", "model_path", default=None, metavar="NAME|FILE",
              help="A shipped model's name or a model file (default: speech16k).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N", help="Evaluate the first N files only.")
@click.option("--listen", type=click.IntRange(min=0), default=5, show_default=True, metavar="N",
              help="Files that get audio players on the listening page.")
@click.option("--no-normalize", is_flag=True, help="Code each file at its own level, not the model's.")
@beam_option
@refine_option
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
              help="Files coded at once, each in its own process with 1/N of torch's threads: "
                   "up to N times faster on N cores. Scores match one job's run at that many threads.")
def eval_(refs: str, kbps_spec: str, baseline_spec: str, out_dir: str, model_path: str | None,
          limit: int | None, listen: int, no_normalize: bool, beam: int | None, refine: int | None,
          jobs: int) -> None:
    """Score the codec against Opus and Codec2 on REFS (a folder of audio or a TSV manifest).

    Every file is coded at each bitrate and scored (PESQ-WB, STOI, log-mel L1, SI-SDR) against
    the delay-aligned 16 kHz mono reference; the means are printed, and DIR receives a CSV, a
    rate-distortion plot and an HTML page to listen side by side.
    """
    from .evaluation import evaluate, parse_baselines, parse_kbps
    from .model.quantizer import DEFAULT_BEAM

    result = evaluate(refs, out_dir, kbps=parse_kbps(kbps_spec), baselines=parse_baselines(baseline_spec),
                      model=model_path, limit=limit, listen=listen, normalize=not no_normalize,
                      beam=DEFAULT_BEAM if beam is None else beam,
                      refine=refine, jobs=jobs,
                      log=lambda line: click.echo(f"codec eval: {line}", err=True))
    click.echo(result.summary_text)
    click.echo(f"wrote {result.csv_path}, {result.plot_path} and {result.html_path}", err=True)


@main.command()
@click.argument("base", metavar="BASE")
@click.argument("other", metavar="OTHER")
def compare(base: str, other: str) -> None:
    """Compare two `codec eval` runs file by file: is OTHER better than BASE, beyond noise?

    BASE and OTHER are `codec eval --out` folders (or their results.csv) scored on the same
    files. For each system, bitrate and measure, prints both means and the mean per-file
    difference with its standard error.
    """
    from pathlib import Path

    from .evaluation.compare import format_comparison, paired_differences, read_results

    differences = paired_differences(read_results(base), read_results(other))
    if not differences:
        raise CodecError(f"{base} and {other} share no scored file at any bitrate")

    def label(path: str) -> str:          # an eval folder's name, also when given its results.csv
        p = Path(path)
        return p.parent.name if p.is_file() and p.parent.name else p.name

    click.echo(format_comparison(differences, label(base), label(other)))


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option("--resume", is_flag=True, help="Continue from RUN_DIR/checkpoint.safetensors.")
def train(config: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train a codec: CONFIG is a TOML file (see recipes/), OVERRIDES are key=value."""
    from .train.config import TrainConfig
    from .train.train import main as train_main
    try:
        cfg = TrainConfig.load(config, list(overrides))
    except (OSError, ValueError) as e:
        raise CodecError(f"cannot read training config {config}: {e}") from None
    train_main(cfg, resume=resume)


@main.command()
@click.argument("checkpoint")
@click.argument("output")
@click.option("--fp32", is_flag=True, help="Store float32 weights (default: float16, half the size).")
@click.option("--name", default=None, help="Model name recorded in the file.")
@click.option("--raw", is_flag=True,
              help="Export the current weights, not their moving average (the default).")
def export(checkpoint: str, output: str, fp32: bool, name: str | None, raw: bool) -> None:
    """Write the inference model of a training CHECKPOINT to OUTPUT (.safetensors)."""
    from .train.export import export as export_model
    digest = export_model(checkpoint, output, fp16=not fp32, name=name, ema=not raw)
    click.echo(f"{output}: fingerprint {digest[:16]}", err=True)


class progress:
    """A progress bar on stderr in seconds of audio, with rate and ETA, shown only on a
    terminal and only for work long enough to need one (``total`` seconds, None if unknown)."""

    def __init__(self, total: float | None, what: str) -> None:
        from tqdm import tqdm
        known = ("{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} s of audio "
                 "[{elapsed}<{remaining}, {rate_fmt}]")
        unknown = "{desc}: {n:.0f} s of audio [{elapsed}, {rate_fmt}]"
        self.bar = tqdm(total=round(total) if total else None, unit="s", desc=what, leave=False,
                        disable=None if total is None or total >= 30 else True,   # None: a terminal only
                        bar_format=known if total else unknown)

    def advance(self, block, rate: int):
        self.bar.update(block.shape[-1] / rate)
        return block

    def __enter__(self) -> "progress":
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()


class _CountingWriter:
    """Counts the bytes written through it (to report the size of a stream on stdout)."""

    def __init__(self) -> None:
        self.inner = None
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()
