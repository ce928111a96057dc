"""Manifests of speech corpora: a TSV of ``path  speaker  seconds`` that ``train_data`` can name.

    prepare_manifest("librispeech", "/data", "runs/librispeech/train-clean-100.tsv",
                     subset="train-clean-100")

Files are found by walking each corpus's published directory layout; audio is
never decoded, only its header read (``soundfile.info``) for the duration.
torchaudio's dataset classes are used for one thing, downloading, and only when
asked (``download=True``). Paths under the manifest's folder are written relative
to it, others absolute, so ``codec.datasets.list_audio`` finds them either way.
"""

from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import soundfile as sf

from ..datasets import AUDIO_SUFFIXES

LIBRI_SUBSETS = ("dev-clean", "dev-other", "test-clean", "test-other",
                 "train-clean-100", "train-clean-360", "train-other-500")
VCTK_FOLDER = "VCTK-Corpus-0.92"
COMMONVOICE_SITE = "https://commonvoice.mozilla.org"


@dataclass(frozen=True)
class Entry:
    """One audio file of a corpus and who speaks in it."""
    path: Path
    speaker: str


def _subsets(subset: str | None, default: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; ``None`` -> ``[default]``."""
    return [s.strip() for s in (subset or default).split(",") if s.strip()]


def _corpus_dir(root: Path, folder: str, subset: str, fetch: Callable[[], None] | None = None) -> Path:
    """``ROOT/FOLDER/SUBSET``, also accepting ROOT as FOLDER itself. If it is absent, ``fetch``
    (a torchaudio dataset's download) is run to get it; without one, FileNotFoundError."""
    for candidate in (root / folder / subset, root / subset if root.name == folder else None):
        if candidate is not None and candidate.is_dir():
            return candidate
    if fetch is None:
        raise FileNotFoundError(f"no {folder}/{subset} under {root}; pass --download to fetch it")
    root.mkdir(parents=True, exist_ok=True)
    try:
        fetch()
    except Exception as e:          # network, disk or checksum: report it in one line
        raise RuntimeError(f"could not download {folder}/{subset} to {root}: {e}") from e
    if not (root / folder / subset).is_dir():
        raise RuntimeError(f"downloaded {folder}/{subset} but found no {root / folder / subset}")
    return root / folder / subset


def _check_libri_subset(name: str, subset: str) -> None:
    if subset not in LIBRI_SUBSETS:
        raise ValueError(f"unknown {name} subset {subset!r}; one of {', '.join(LIBRI_SUBSETS)}")


def librispeech(root: Path, subset: str | None, download: bool) -> list[Entry]:
    """``ROOT/LibriSpeech/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac`` (16 kHz)."""
    entries = []
    for s in _subsets(subset, "train-clean-100"):
        _check_libri_subset("LibriSpeech", s)

        def fetch() -> None:
            from torchaudio.datasets import LIBRISPEECH
            LIBRISPEECH(str(root), url=s, download=True)
        folder = _corpus_dir(root, "LibriSpeech", s, fetch if download else None)
        entries += [Entry(p, p.parent.parent.name) for p in sorted(folder.glob("*/*/*.flac"))]
    return entries


def libritts(root: Path, subset: str | None, download: bool) -> list[Entry]:
    """``ROOT/LibriTTS/SUBSET/SPEAKER/CHAPTER/*.wav`` (24 kHz)."""
    entries = []
    for s in _subsets(subset, "train-clean-100"):
        _check_libri_subset("LibriTTS", s)

        def fetch() -> None:
            from torchaudio.datasets import LIBRITTS
            LIBRITTS(str(root), url=s, download=True)
        folder = _corpus_dir(root, "LibriTTS", s, fetch if download else None)
        entries += [Entry(p, p.parent.parent.name) for p in sorted(folder.glob("*/*/*.wav"))]
    return entries


def vctk(root: Path, subset: str | None, download: bool) -> list[Entry]:
    """``ROOT/VCTK-Corpus-0.92/wav48_silence_trimmed/SPEAKER/SPEAKER_UTT_MIC.flac`` (48 kHz);
    ``subset`` is the microphone, ``mic1`` (default) or ``mic2``."""
    mics = _subsets(subset, "mic1")
    for mic in mics:
        if mic not in ("mic1", "mic2"):
            raise ValueError(f"VCTK subset is the microphone, mic1 or mic2, not {mic!r}")

    def fetch() -> None:
        from torchaudio.datasets import VCTK_092
        VCTK_092(str(root), mic_id=mics[0], download=True)
    folder = _corpus_dir(root, VCTK_FOLDER, "wav48_silence_trimmed", fetch if download else None)
    return [Entry(p, p.parent.name) for mic in mics
            for p in sorted(folder.glob(f"*/*_{mic}.flac"))]


def commonvoice(root: Path, subset: str | None, download: bool) -> list[Entry]:
    """``ROOT/SUBSET.tsv`` (columns ``client_id  path  sentence ...``) and ``ROOT/clips/*.mp3``;
    ROOT is one language of one release, e.g. ``cv-corpus-VERSION/en``."""
    if download:
        raise ValueError(f"Common Voice cannot be downloaded by this tool: get it by hand from "
                         f"{COMMONVOICE_SITE} after accepting its terms, then pass its language folder")
    entries = []
    for s in _subsets(subset, "train"):
        tsv = root / (s if s.endswith(".tsv") else f"{s}.tsv")
        if not tsv.is_file() or not (root / "clips").is_dir():
            raise FileNotFoundError(f"no {tsv.name} and clips/ under {root}; Common Voice is downloaded "
                                    f"by hand from {COMMONVOICE_SITE} (pass the language folder)")
        with open(tsv, newline="", encoding="utf-8") as f:
            # Sentences may hold quote characters: the files are plain tab-separated, never quoted.
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(rows, [])
            if "path" not in header or "client_id" not in header:
                raise ValueError(f"{tsv} has no client_id and path columns; is it a Common Voice TSV?")
            path_col, speaker_col = header.index("path"), header.index("client_id")
            for row in rows:
                if len(row) > max(path_col, speaker_col) and row[path_col]:
                    entries.append(Entry(root / "clips" / row[path_col], row[speaker_col]))
    if any(e.path.suffix.lower() == ".mp3" for e in entries) and "MP3" not in sf.available_formats():
        raise RuntimeError(f"this soundfile (libsndfile {sf.__libsndfile_version__}) cannot read MP3, which "
                           "Common Voice clips are: install a soundfile with libsndfile >= 1.1 (PyPI's "
                           "soundfile>=0.12 wheels bundle one) or convert the clips to FLAC")
    return entries


def folder(root: Path, subset: str | None, download: bool) -> list[Entry]:
    """Every audio file under ROOT, recursively; the speaker is the top-level subfolder's name
    (``-`` for files directly in ROOT)."""
    if subset or download:
        raise ValueError("the folder corpus takes no subset and cannot be downloaded")
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    suffixes = AUDIO_SUFFIXES | ({".mp3"} if "MP3" in sf.available_formats() else set())
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    return [Entry(p, p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else "-")
            for p in files]


CORPORA: dict[str, Callable[[Path, str | None, bool], list[Entry]]] = {
    "librispeech": librispeech, "libritts": libritts, "vctk": vctk,
    "commonvoice": commonvoice, "folder": folder,
}


def _manifest_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it lies under it, else absolute."""
    path = path.absolute()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def write_manifest(entries: Iterable[Entry], out: str | Path) -> tuple[int, float, list[Path]]:
    """Write ``path  speaker  seconds`` rows for the readable, non-empty files of ``entries``.

    Returns (files written, total seconds, files skipped).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.absolute()
    written, total, skipped = 0, 0.0, []
    tmp = out.with_name(f".{out.name}.part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["path", "speaker", "seconds"])
        for e in entries:
            try:
                info = sf.info(str(e.path))
                seconds = info.frames / info.samplerate
            except (sf.LibsndfileError, RuntimeError, OSError):
                seconds = 0.0
            if seconds <= 0:
                skipped.append(e.path)
                continue
            w.writerow([_manifest_path(e.path, base), e.speaker, f"{seconds:.3f}"])
            written += 1
            total += seconds
    os.replace(tmp, out)
    return written, total, skipped


def prepare_manifest(corpus: str, root: str | Path, out: str | Path, subset: str | None = None,
                     download: bool = False) -> int:
    """Write the manifest of ``corpus`` found under ``root`` to ``out``; returns its file count.

    ``corpus`` is one of ``librispeech``, ``libritts``, ``vctk``, ``commonvoice``, ``folder``;
    ``subset`` picks a part (``train-clean-100``; ``mic1``/``mic2`` for VCTK; ``train`` for
    Common Voice's ``train.tsv``), several joined by commas. With ``download`` the corpus is
    fetched into ``root`` first if missing (LibriSpeech, LibriTTS, VCTK; needs a network).
    Unreadable or empty files are skipped with a warning; none at all is an error.
    """
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; one of {', '.join(CORPORA)}")
    root = Path(root).expanduser()
    entries = CORPORA[corpus](root, subset, download)
    if not entries:
        raise FileNotFoundError(f"no audio files of {corpus} ({subset or 'default subset'}) under {root}")
    count, _, skipped = write_manifest(entries, out)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} of {len(entries)} files that are unreadable or empty "
                      f"(first: {skipped[0]})", stacklevel=2)
    if count == 0:
        Path(out).unlink()
        raise ValueError(f"none of the {len(entries)} {corpus} files under {root} could be read")
    return count
