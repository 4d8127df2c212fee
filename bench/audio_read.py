"""Audio reading speed: plain `soundfile.read` against `data.audio.load_audio`, and the FFmpeg fallback's cost.

    python bench/audio_read.py [--json OUT] [--files 30] [--repeats 5] [--seed 0]

Writes `--files` utterances of ASVspoof 2019 LA length (1-13 s at 16 kHz, speech-like: a voiced tone with
formant-filtered noise) into a temporary folder as 16-bit FLAC and WAV (soundfile), as FLAC that libsndfile
refuses (a few samples beyond the declared 16 bits in the middle, like the `enr_audio` files; written with
tests/flac_bytes.py) and as AAC `.m4a` (VoxCeleb2's format, encoded by PyAV). Prints one JSON line per
(reader, set): the median over `--repeats` timed passes of the time to read the whole set (the readers of a
set take turns within each round, after one untimed round that fills the page cache) as ms per file; its
ratio to `soundfile.read` on the same set (`x_soundfile_same_set`, where libsndfile reads that set) and on
the FLAC set of the same signals (`x_soundfile_flac`); and the real-time factor (seconds of audio read per
second). With ../shared/reference present, the real enrolment file (82.5 s, fallback path) is timed too.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy.signal import lfilter  # noqa: E402

from data import ffmpeg_audio  # noqa: E402
from data.audio import SAMPLE_RATE, load_audio  # noqa: E402

REAL_FILE = ROOT.parent / "shared" / "reference" / "audio" / "enr_audio_LA_0069_LA_D_1600475.flac"


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Int16-range samples that compress like speech in FLAC (white noise would not compress at all)."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(f0) / SAMPLE_RATE) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = lfilter([1.0], [1.0, -1.6, 0.8], rng.standard_normal(n)) * 0.05  # one resonance near 1.7 kHz
    return np.clip((voiced * 0.3 + noise) * 20000, -32768, 32767).astype(np.int16)


def write_sets(folder: Path, count: int, seed: int) -> tuple[dict[str, list[Path]], float]:
    """name -> files, and the seconds of audio in each set."""
    from tests.flac_bytes import flac_bytes

    rng = np.random.default_rng(seed)
    sets: dict[str, list[Path]] = {"flac": [], "wav": [], "flac_libsndfile_refuses": [], "m4a_aac": []}
    total = 0.0
    for i in range(count):
        x = speech_like(float(rng.uniform(1.0, 13.0)), rng)
        total += len(x) / SAMPLE_RATE
        for ext in ("flac", "wav"):
            sets[ext].append(folder / f"u{i:03d}.{ext}")
            sf.write(sets[ext][-1], x, SAMPLE_RATE, subtype="PCM_16")
        loud = x.astype(np.int64)
        mid = (len(loud) // 2) // 4096 * 4096 + 100  # mid-file, clear of a frame's first sample (must fit 16 bits)
        loud[mid:mid + 4] = [40000, 70000, -40000, -33000]
        sets["flac_libsndfile_refuses"].append(folder / f"u{i:03d}_loud.flac")
        sets["flac_libsndfile_refuses"][-1].write_bytes(flac_bytes(loud))
        sets["m4a_aac"].append(folder / f"u{i:03d}.m4a")
        write_m4a(sets["m4a_aac"][-1], x)
    return sets, total


def write_m4a(path: Path, x: np.ndarray) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as c:
        stream = c.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(x[None], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            c.mux(packet)


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each fn over `repeats` rounds that run every fn once, in alternating order, so that
    load changes on a shared machine hit all of them alike; a first, untimed round warms the page cache."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats + 1):
        for name in names if r % 2 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            if r:
                times[name].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


READERS: dict[str, Callable[[Path], object]] = {
    "soundfile.read": lambda p: sf.read(str(p), dtype="float32", always_2d=True),
    "load_audio": load_audio,
    "ffmpeg_audio.decode": ffmpeg_audio.decode,  # the fallback decoder alone, without libsndfile's attempt
}
PLAN = {"flac": ["soundfile.read", "load_audio", "ffmpeg_audio.decode"],  # set -> readers timed side by side
        "wav": ["soundfile.read", "load_audio", "ffmpeg_audio.decode"],
        "flac_libsndfile_refuses": ["load_audio", "ffmpeg_audio.decode"],
        "m4a_aac": ["load_audio", "ffmpeg_audio.decode"]}


def _read_all(reader: Callable[[Path], object], files: list[Path]) -> Callable[[], None]:
    def run() -> None:
        for path in files:
            reader(path)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results (a JSON list) to this file")
    parser.add_argument("--files", type=int, default=30, help="utterances per set (1-13 s each)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per figure (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import av

    setting = {"files": args.files, "repeats": args.repeats, "soundfile": sf.__version__,
               "libsndfile": sf.__libsndfile_version__, "pyav": av.__version__, "cpus": os.cpu_count()}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sets, seconds = write_sets(Path(tmp), args.files, args.seed)
        plain: dict[str, float] = {}  # soundfile.read's time per set
        for name, readers in PLAN.items():
            load_before = os.getloadavg()[0]
            medians = interleaved_medians({r: _read_all(READERS[r], sets[name]) for r in readers}, args.repeats)
            load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            if "soundfile.read" in medians:
                plain[name] = medians["soundfile.read"]
            for reader, t in medians.items():
                results.append({"reader": reader, "set": name, "ms_per_file": round(1000 * t / args.files, 3),
                                "x_soundfile_same_set": round(t / plain[name], 3) if name in plain else None,
                                "x_soundfile_flac": round(t / plain["flac"], 3),
                                "realtime_factor": round(seconds / t, 1), "audio_s": round(seconds, 1),
                                "load_avg_1min": load, **setting})
                print(json.dumps(results[-1]), flush=True)
    if REAL_FILE.exists():
        real_s = len(load_audio(REAL_FILE)) / SAMPLE_RATE
        fallback = ("load_audio", "ffmpeg_audio.decode")
        medians = interleaved_medians({r: _read_all(READERS[r], [REAL_FILE]) for r in fallback}, args.repeats)
        for reader, t in medians.items():
            results.append({"reader": reader, "set": REAL_FILE.name, "ms_per_file": round(1000 * t, 3),
                            "realtime_factor": round(real_s / t, 1), "audio_s": round(real_s, 1), **setting})
            print(json.dumps(results[-1]), flush=True)
    if args.json:
        from common.io import write_json
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
