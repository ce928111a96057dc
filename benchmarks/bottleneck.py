"""Where quality is lost: in the quantizer, or in the encoder and decoder?

    python benchmarks/bottleneck.py [REFS] [--model NAME|FILE] [--kbps 1.5,3,6,16] [--limit 24]

Decodes each file of REFS (a folder or manifest; default ../shared/corpus/dev) twice
over: from the encoder's continuous latents, with no quantizer at all, and from the
codes of each bitrate in ``--kbps``. Prints the mean PESQ-WB, STOI, log-mel L1 and
SI-SDR of each against the reference (first ``--seconds`` of each file).

If the continuous latents score no better than the codes, more bits cannot help:
the encoder and decoder are the limit (their size, their training, or the losses).
SI-SDR near -20 dB or below says the decoded waveform's phase is unrelated to the
reference's, which spectral losses alone permit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.dev_sample import add_sample_arguments, load_sample  # noqa: E402
from codec.evaluation.run import load_reference, parse_kbps  # noqa: E402
from codec.evaluation.scores import score  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=24, threads=2)
    parser.add_argument("--kbps", default="1.5,3,6,16")
    args = parser.parse_args()

    model, files = load_sample(args)
    kbps = parse_kbps(args.kbps)
    rows: dict[str, list] = {"continuous": []} | {f"{k:g} kbps": [] for k in kbps}
    for path in files:
        reference = torch.from_numpy(load_reference(path)[:int(args.seconds * model.sample_rate)])
        with torch.no_grad():
            latent = model.encoder(model.pad_to_hop(reference[None, None]))
            decoded = {"continuous": model.decoder(latent)}
            for k in kbps:
                codes = model.quantizer.encode(latent, model.levels_for_kbps(k))
                decoded[f"{k:g} kbps"] = model.decoder(model.quantizer.decode(codes))
        for name, out in decoded.items():
            s = score(reference.numpy(), out[0, 0, :len(reference)].numpy())
            rows[name].append((s.pesq, s.stoi, s.mel_l1, s.si_sdr))

    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s, model {model.config.name} "
          f"({model.fingerprint[:16]})")
    print(f"{'decoded from':>14} {'PESQ-WB':>8} {'STOI':>7} {'mel L1':>7} {'SI-SDR':>7}")
    for name, values in rows.items():
        pesq, stoi, mel, sdr = np.nanmean(np.array(values), axis=0)
        print(f"{name:>14} {pesq:8.2f} {stoi:7.3f} {mel:7.3f} {sdr:7.1f}")


if __name__ == "__main__":
    main()
