"""Peak resident memory of one process, and of one `codec` command run in a fresh process.

    python benchmarks/peak_memory.py encode in.wav out.rvq --kbps 6   # runs `codec ...`, prints MiB

A process reads its own high-water mark from /proc/self/status (VmHWM), not
``ru_maxrss``: Linux carries ``ru_maxrss`` over from the parent across fork and
exec, so a child of a large process would report at least the parent's peak, and
``RUSAGE_CHILDREN`` gives the largest child so far, not the last one.
``ru_maxrss`` is the fallback where /proc is missing.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024            # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024   # bytes on macOS, KiB elsewhere


def command_peak_mib(codec_args: list[str]) -> float:
    """Peak resident memory of ``codec CODEC_ARGS`` run in a fresh process."""
    result = subprocess.run([sys.executable, __file__, *codec_args], check=True, capture_output=True, text=True)
    return float(result.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from codec.cli import main

    try:
        main(sys.argv[1:], standalone_mode=False)
    finally:
        print(f"{peak_rss_mib():.1f}")
