"""VoxCeleb2-size speaker list: load it, build the training dataset, draw one epoch of speaker batches.

    .venv/bin/python bench/scale_vox.py --work /tmp/sasv_scale/vox [--lines 1092009] [--files] [--json out.json]

Writes a train_list.txt in the VoxCeleb2 dev shape (5,994 speakers, ~24 videos each, ~7.5 utterances a video,
1,092,009 lines by default) into --work, then times, in this one process, each step ASV training takes before
its first batch: `VoxCeleb.train_set` (parse, labels, compact paths), `SpeakerDataset`, `SpeakerBatchSampler` and
one epoch of its batch indices (voxceleb_trainer's AP recipe: 200 speakers x 2 utterances). With --files it
also creates the listed files (empty) and times `train_set(check=True)`, which lists every video folder.
Prints one JSON object: per step its wall and CPU seconds, the resident memory after it, the peak so far and
that peak above the memory held after the imports (MB). `bench/scale.py` runs it at several sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages, not this folder

import numpy as np  # noqa: E402

VOX2_LINES, VOX2_SPEAKERS, VOX2_VIDEOS = 1_092_009, 5_994, 145_569
_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_mb() -> float:
    """Resident memory of this process now (VmRSS), MB."""
    return _status_mb("VmRSS")


def peak_mb() -> float:
    """Peak resident memory of this process since the last `reset_peak` (VmHWM), MB."""
    return _status_mb("VmHWM")


def reset_peak() -> None:
    """Restarts the peak-RSS mark at the current RSS (Linux), so later peaks exclude the imports' transient one."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def write_train_list(work: Path, lines: int, speakers: int, files: bool, seed: int = 0) -> None:
    """work/train_list.txt shaped like VoxCeleb2 dev (lognormal utterances per speaker, ~7.5 per video, sorted by
    speaker and video as distributed); with `files`, each listed file is created empty under work/wav.
    Streams: nothing per line is kept, so the steps measured afterwards start from a small peak."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 0.5, speakers)
    share = weights / weights.sum() * (lines - 2 * speakers)
    per_speaker = 2 + np.floor(share).astype(int)
    per_speaker[np.argsort(np.floor(share) - share)[:lines - int(per_speaker.sum())]] += 1
    ids = np.sort(rng.choice(np.arange(10, 10000), size=speakers, replace=False))
    utts_per_video = VOX2_LINES / VOX2_VIDEOS
    with open(work / "train_list.txt", "w") as f:
        for spk, n in zip(ids.tolist(), per_speaker.tolist(), strict=True):
            n_videos = max(1, round(n / utts_per_video))
            videos = ["".join(rng.choice(_CHARS, 11)) for _ in range(n_videos)]
            for k in range(n):
                v = k * n_videos // n
                rel = f"id{spk:05d}/{videos[v]}/{k - (v * n + n_videos - 1) // n_videos + 1:05d}.wav"
                f.write(f"id{spk:05d} {rel}\n")
                if files:
                    if k == (v * n + n_videos - 1) // n_videos:      # first utterance of a video
                        os.makedirs(work / "wav" / os.path.dirname(rel), exist_ok=True)
                    os.close(os.open(work / "wav" / rel, os.O_CREAT | os.O_WRONLY, 0o644))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the list (and --files); emptied first")
    parser.add_argument("--lines", type=int, default=VOX2_LINES)
    parser.add_argument("--speakers", type=int, default=VOX2_SPEAKERS)
    parser.add_argument("--speakers-per-batch", type=int, default=200)
    parser.add_argument("--utts-per-speaker", type=int, default=2)
    parser.add_argument("--files", action="store_true", help="create the listed files (empty) and time the check")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if args.lines < 2 * args.speakers:
        parser.error(f"--lines must be at least 2 x --speakers ({2 * args.speakers})")
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    start = time.perf_counter()
    write_train_list(args.work, args.lines, args.speakers, args.files)
    written = time.perf_counter() - start

    from data.datasets import SpeakerDataset
    from data.samplers import SpeakerBatchSampler
    from data.voxceleb import VoxCeleb

    held = rss_mb()
    reset_peak()
    result = {"lines": args.lines, "speakers": args.speakers, "write_s": round(written, 1),
              "held_after_imports_mb": round(held, 1), "steps": {}}

    def step(name: str, start: float, cpu_start: float) -> None:
        result["steps"][name] = {"s": round(time.perf_counter() - start, 3),
                                 "cpu_s": round(time.process_time() - cpu_start, 3), "rss_mb": round(rss_mb(), 1),
                                 "peak_mb": round(peak_mb(), 1), "work_mb": round(peak_mb() - held, 1)}

    vox = VoxCeleb(args.work)
    start, cpu = time.perf_counter(), time.process_time()
    paths, labels, index = vox.train_set(check=False)
    step("train_set", start, cpu)
    if args.files:
        start, cpu = time.perf_counter(), time.process_time()
        vox.train_set(check=True)
        step("train_set_checked", start, cpu)
    start, cpu = time.perf_counter(), time.process_time()
    dataset = SpeakerDataset(paths, labels)
    step("dataset", start, cpu)
    start, cpu = time.perf_counter(), time.process_time()
    sampler = SpeakerBatchSampler(dataset.labels, args.speakers_per_batch, args.utts_per_speaker, seed=0)
    step("sampler", start, cpu)
    start, cpu = time.perf_counter(), time.process_time()
    batches = sum(1 for _ in sampler)
    step("epoch", start, cpu)
    assert len(index) == args.speakers and len(dataset) == args.lines and batches == len(sampler) > 0
    # (paths without `nbytes`: a toolkit version before data.pathlist, run for a before/after comparison)
    result.update(batches=batches, paths_mb=round(paths.nbytes / 2**20, 1) if hasattr(paths, "nbytes") else None)
    text = json.dumps(result)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    shutil.rmtree(args.work)


if __name__ == "__main__":
    main()
