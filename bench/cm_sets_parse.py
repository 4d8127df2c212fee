"""Parse time and peak memory of the ASVspoof 2021, In-the-Wild and Kaldi-style lists readers at the real sizes.

    .venv/bin/python bench/cm_sets_parse.py [--work /tmp/cm_sets_parse] [--repeats 3] [--json out.json]

Writes, into --work, lists shaped like the real ones: the 2021 DF key (611,829 lines, 13 columns), the 2021 LA key
(181,566 lines), an In-the-Wild meta.csv (31,779 rows) and one `lists` split at the size of ASVspoof 5 eval
(680,774 labelled utterances and 1,101 enrolment ones in wav.scp / utt2spk / utt2label, 834,536 trials, 367
enrolled speakers). Each reader runs in a fresh process (`--only NAME`), so its peak resident memory is its own:
least wall and CPU time of --repeats calls, `line.split()` over the same files for comparison, and the process's
peak RSS after the calls (the interpreter and numpy alone are ~30 MB). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages, not this folder

DF_LINES, LA_LINES, ITW_ROWS = 611_829, 181_566, 31_779
UTTS, TRIALS, SPEAKERS = 680_774, 834_536, 367


def write_all(work: Path) -> None:
    from data.asvspoof2021 import DF_COMPRESSIONS, DF_VOCODERS, LA_CODECS, LA_TRANSMISSIONS

    attacks = [f"A{k:02d}" for k in range(7, 20)]
    (work / "df" / "keys" / "DF" / "CM").mkdir(parents=True)
    with open(work / "df" / "keys" / "DF" / "CM" / "trial_metadata.txt", "w") as f:
        for i in range(DF_LINES):
            bona = i % 9 == 0
            f.write(f"LA_00{i % 67:02d} DF_E_{2000000 + i} {DF_COMPRESSIONS[i % 9]} asvspoof "
                    f"{'bonafide' if bona else attacks[i % 13]} {'bonafide' if bona else 'spoof'} notrim "
                    f"{('eval', 'progress', 'eval', 'hidden')[i % 4]} {'bonafide' if bona else DF_VOCODERS[i % 5]} "
                    f"- - - -\n")
    (work / "la" / "keys" / "LA" / "CM").mkdir(parents=True)
    with open(work / "la" / "keys" / "LA" / "CM" / "trial_metadata.txt", "w") as f:
        for i in range(LA_LINES):
            bona = i % 9 == 0
            f.write(f"LA_00{i % 67:02d} LA_E_{1000000 + i} {LA_CODECS[i % 7]} {LA_TRANSMISSIONS[i % 4]} "
                    f"{'bonafide' if bona else attacks[i % 13]} {'bonafide' if bona else 'spoof'} notrim "
                    f"{('eval', 'progress', 'eval', 'hidden')[i % 4]}\n")
    (work / "itw").mkdir()
    with open(work / "itw" / "meta.csv", "w") as f:
        f.write("file,speaker,label\n")
        for i in range(ITW_ROWS):
            f.write(f"{i}.wav,Speaker Number {i % 58},{'bona-fide' if i % 3 else 'spoof'}\n")
    split = work / "lists" / "eval"
    split.mkdir(parents=True)
    spk = [f"E_{k:04d}" for k in range(SPEAKERS)]
    enrol = {s: [f"E_enr_{k:04d}_{j}" for j in range(3)] for k, s in enumerate(spk)}
    with open(split / "wav.scp", "w") as scp, open(split / "utt2spk", "w") as u2s, \
            open(split / "utt2label", "w") as u2l:
        for j in range(UTTS):
            utt = f"E_{j:010d}"
            scp.write(f"{utt} /data/asvspoof5/flac_E_eval/{utt}.flac\n")
            u2s.write(f"{utt} {spk[j % SPEAKERS]}\n")
            u2l.write(f"{utt} bonafide\n" if j % 5 == 0 else f"{utt} spoof A{17 + j % 16:02d}\n")
        for s, utts in enrol.items():
            for utt in utts:
                scp.write(f"{utt} /data/asvspoof5/flac_E_eval/{utt}.flac\n")
                u2s.write(f"{utt} {s}\n")
    with open(split / "spk2utt", "w") as f:
        f.writelines(f"{s} {' '.join(utts)}\n" for s, utts in enrol.items())
    with open(split / "trials", "w") as f:
        for k in range(TRIALS):
            j, rnd = k % UTTS, k // UTTS
            own = j % SPEAKERS
            if j % 5:
                f.write(f"{spk[(own + rnd) % SPEAKERS]} E_{j:010d} spoof\n")
            elif rnd == 0:
                f.write(f"{spk[own]} E_{j:010d} target\n")
            else:
                f.write(f"{spk[(own + rnd) % SPEAKERS]} E_{j:010d} nontarget\n")


def readers(work: Path) -> dict:
    from data.asvspoof2021 import read_df_cm_key, read_la_cm_key
    from data.in_the_wild import read_meta
    from data.kaldi_lists import read_split

    return {
        "read_df_cm_key (2021 DF key)": (read_df_cm_key, [work / "df" / "keys" / "DF" / "CM" / "trial_metadata.txt"]),
        "read_la_cm_key (2021 LA key)": (read_la_cm_key, [work / "la" / "keys" / "LA" / "CM" / "trial_metadata.txt"]),
        "read_meta (In-the-Wild meta.csv)": (read_meta, [work / "itw" / "meta.csv"]),
        "read_split (lists, ASVspoof 5 eval size)": (
            read_split, [work / "lists" / "eval" / n for n in ("wav.scp", "utt2spk", "utt2label", "trials",
                                                                "spk2utt")]),
    }


def run_one(work: Path, name: str, repeats: int) -> dict:
    fn, files = readers(work)[name]
    arg = files[0] if not name.startswith("read_split") else files[0].parent
    lines = sum(sum(1 for _ in open(p, "rb")) for p in files)
    wall, cpu, split = [], [], []
    for _ in range(repeats):
        gc.collect()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(arg)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(repeats):
        cpu_start = time.process_time()
        for p in files:
            with open(p, encoding="utf-8") as f:
                parts = [line.split() for line in f]
            del parts
        split.append(time.process_time() - cpu_start)
    return {"lines": lines, "parse_s": round(min(wall), 2), "parse_cpu_s": round(min(cpu), 2),
            "split_cpu_s": round(min(split), 2), "parse_over_split_cpu": round(min(cpu) / min(split), 2),
            "peak_rss_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/cm_sets_parse"), help="folder for the lists; emptied")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--only", help=argparse.SUPPRESS)        # one reader, in this process (the child runs)
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run_one(args.work, args.only, args.repeats)))
        return
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    write_all(args.work)
    result: dict = {"repeats": args.repeats, "python": sys.version.split()[0], "readers": {}}
    for name in readers(args.work):
        out = subprocess.run([sys.executable, __file__, "--work", str(args.work), "--repeats", str(args.repeats),
                              "--only", name], check=True, capture_output=True, text=True).stdout
        result["readers"][name] = json.loads(out)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    shutil.rmtree(args.work)


if __name__ == "__main__":
    main()
