"""What does a wider or longer search for codes gain, and what does it cost?

    python benchmarks/rvq_search.py [REFS] [--model NAME|FILE] [--kbps 0.5,1.5,3,6]
        [--beams 1,4,8,16] [--refine 0] [--stoi-weights 2] [--perceptual-weights 3] [--low-band-weights 0]
        [--learning-rates 0.1] [--lr-final-fractions 1]
        [--limit 21] [--seconds 6] [--threads 1]

Codes the first ``--seconds`` of ``--limit`` files of REFS (a folder or manifest; default
../shared/corpus/dev, files spread over the list) through ``codec.compress``/``decompress``
at each bitrate, once per pair of a beam width of the quantizer's search (1 = greedy; see
ResidualVectorQuantizer.encode) and a number of refinement steps (0 = the encoder's
codes; see codec.model.refine), and, for refined codes, each combination of weights of the
intelligibility (STOI), perceptual (PESQ-like) and low-band phase terms in refinement's objective
and of its step sizes (the first, and the last as a fraction of the first). The
decoder and the stream's size are the same for every search. Prints, per bitrate, the
mean PESQ-WB and STOI of each search, their paired difference from the first (mean +/-
standard error over the files), and the encoding time per second of audio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import codec  # noqa: E402
from benchmarks.dev_sample import add_sample_arguments, load_sample, print_paired  # noqa: E402
from codec.evaluation.run import load_reference  # noqa: E402
from codec.evaluation.scores import SCORE_RATE, pesq_wb, stoi  # noqa: E402
from codec.model import refine as refinement  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_sample_arguments(parser, limit=21, threads=1)
    parser.add_argument("--kbps", default="0.5,1.5,3,6", help="bitrates, comma-separated")
    parser.add_argument("--beams", default="1,4,8,16", help="beam widths, comma-separated")
    parser.add_argument("--refine", default="0", help="refinement steps, comma-separated; the first "
                                                      "width with the first step count is the base")
    parser.add_argument("--stoi-weights", default=str(refinement.INTELLIGIBILITY_WEIGHT),
                        help="weights of (1 - STOI) in refinement's objective, comma-separated")
    parser.add_argument("--perceptual-weights", default=str(refinement.PERCEPTUAL_WEIGHT),
                        help="weights of the perceptual disturbance in refinement's objective, comma-separated")
    parser.add_argument("--low-band-weights", default=str(refinement.LOW_BAND_WEIGHT),
                        help="weights of the low band's phase distance in refinement's objective, comma-separated")
    parser.add_argument("--learning-rates", default=str(refinement.LEARNING_RATE),
                        help="refinement's first step sizes (fractions of the latent RMS), comma-separated")
    parser.add_argument("--lr-final-fractions", default=str(refinement.LR_FINAL_FRACTION),
                        help="refinement's last step size as a fraction of its first, comma-separated")
    args = parser.parse_args()

    model, files = load_sample(args)
    references = [load_reference(path)[:int(args.seconds * SCORE_RATE)] for path in files]
    seconds = sum(len(r) for r in references) / SCORE_RATE
    settings = [(float(w), float(p), float(b), float(lr), float(f)) for w in args.stoi_weights.split(",")
                for p in args.perceptual_weights.split(",") for b in args.low_band_weights.split(",")
                for lr in args.learning_rates.split(",") for f in args.lr_final_fractions.split(",")]
    searches = [(int(b), int(r), w) for b in args.beams.split(",") for r in args.refine.split(",")
                for w in (settings if int(r) else settings[:1])]
    print(f"{len(files)} files of {args.refs}, first {args.seconds:g} s ({seconds:.0f} s in all), model "
          f"{model.config.name} ({model.fingerprint[:16]}), {args.threads} thread(s)")
    for kbps in (float(k) for k in args.kbps.split(",")):
        scores: dict[str, list[tuple[float, float]]] = {}
        timing: dict[str, str] = {}
        for beam, refine, (stoi_weight, perceptual_weight, low_band_weight, lr, lr_final) in searches:
            name = f"{kbps:g} kbps, beam {beam}, refine {refine}" + (
                f", STOI weight {stoi_weight:g}, perceptual weight {perceptual_weight:g}, "
                f"low-band weight {low_band_weight:g}, lr {lr:g} to x{lr_final:g}" if refine else "")
            refinement.INTELLIGIBILITY_WEIGHT, refinement.PERCEPTUAL_WEIGHT = stoi_weight, perceptual_weight
            refinement.LOW_BAND_WEIGHT, refinement.LEARNING_RATE = low_band_weight, lr
            refinement.LR_FINAL_FRACTION = lr_final
            scores[name], spent = [], 0.0
            for reference in references:
                start = time.perf_counter()
                data = codec.compress(reference, SCORE_RATE, kbps=kbps, model=model, beam=beam, refine=refine)
                spent += time.perf_counter() - start
                decoded = codec.decompress(data, model=model, sample_rate=SCORE_RATE)[0][0].numpy()
                scores[name].append((pesq_wb(reference, decoded), stoi(reference, decoded)))
            timing[name] = f"{spent / seconds:.3f}"
        print()
        print_paired(scores, base=next(iter(scores)), column="encode s/s", notes=timing)


if __name__ == "__main__":
    main()
