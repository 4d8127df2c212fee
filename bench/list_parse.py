"""Parse time of the list readers on million-line lists: what checking every line (columns, keys, repeats, ids
as names, see docs/design.md "Utterance ids are names") costs next to merely splitting the lines.

    .venv/bin/python bench/list_parse.py [--work /tmp/list_parse] [--lines 1000000] [--repeats 3] [--json out.json]

Writes, into --work, a CM protocol, a SASV trial list, a VoxCeleb train list and a VoxCeleb trial list of
--lines lines each (ids shaped like the real ones: LA_T_1000000, id10270/1zcIwhmdeo4/00001.wav), and the ASVspoof 5
eval Track 1 list (680,774 lines, three in four coded) and Track 2 trial list (834,536 lines) at their official
sizes whatever --lines says (issue 23: each must parse in under 10 s), then times
each reader (least wall and CPU time of --repeats calls, in this one process) and `line.split()` over the same file.
Run it at two commits for a before/after comparison. The official ASVspoof
2019 LA eval lists from ../shared/reference are timed too when they are present. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages, not this folder

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "protocols" / "ASVspoof2019_LA"


def write_lists(work: Path, lines: int) -> dict[str, Path]:
    """The four lists, `lines` lines each, written once."""
    files = {name: work / f"{name}.txt" for name in ("cm_protocol", "sasv_trials", "vox_train", "vox_trials")}
    attacks = [f"A{k:02d}" for k in range(7, 20)]
    with open(files["cm_protocol"], "w") as f:
        for i in range(lines):
            spoof = i % 10 != 0
            f.write(f"LA_{i % 67:04d} LA_E_{1000000 + i} - {attacks[i % 13] if spoof else '-'} "
                    f"{'spoof' if spoof else 'bonafide'}\n")
    with open(files["sasv_trials"], "w") as f:
        for i in range(lines):
            kind = i % 3
            f.write(f"LA_{i % 67:04d} LA_E_{1000000 + i} "
                    f"{('bonafide target', 'bonafide nontarget', f'{attacks[i % 13]} spoof')[kind]}\n")
    with open(files["vox_train"], "w") as f:
        for i in range(lines):
            spk = f"id{10000 + i // 180:05d}"
            f.write(f"{spk} {spk}/v{(i // 8) % 100000:010d}/{i % 8 + 1:05d}.wav\n")
    with open(files["vox_trials"], "w") as f:
        for i in range(lines):
            f.write(f"{i % 2} id{10000 + i % 1251:05d}/a{i:010d}/00001.wav id{10000 + (i * 7) % 1251:05d}/"
                    f"b{i:010d}/00002.wav\n")
    return files


A5_TRACK1, A5_TRIALS = 680_774, 834_536        # the official ASVspoof 5 eval list sizes


def write_asvspoof5(work: Path) -> dict[str, Path]:
    """The ASVspoof 5 eval Track 1 and Track 2 trial lists, shaped like the released ones."""
    files = {"a5_track1": work / "ASVspoof5.eval.track_1.tsv", "a5_trials": work / "ASVspoof5.eval.track_2.trial.tsv"}
    attacks = [f"A{k:02d}" for k in range(17, 33)]
    with open(files["a5_track1"], "w") as f:
        for i in range(A5_TRACK1):
            spk, g = f"E_{i % 737:04d}", "FM"[i % 737 % 2]
            coded = i % 4 != 0
            codec = f"C{i % 11 + 1:02d} {i % 5 + 1} E_{i - i % 4:010d}" if coded else "- 0 -"
            attack = "bonafide bonafide" if i % 5 == 0 else f"{attacks[i % 16]} spoof"
            f.write(f"{spk} E_{i:010d} {g} {codec} {'-' if i % 5 == 0 else 'AC' + str(i % 3 + 1)} {attack} -\n")
    with open(files["a5_trials"], "w") as f:
        for i in range(A5_TRIALS):
            kind = ("bonafide target", "bonafide nontarget", f"{attacks[i % 16]} spoof")[i % 3]
            f.write(f"E_{i % 367:04d} E_{i:010d} {'FM'[i % 367 % 2]} {kind}\n")
    return files


def best_of(fn: Callable[[Path], object], path: Path, repeats: int) -> tuple[float, float]:
    """The least (wall, CPU) seconds of `fn(path)` over `repeats` calls: the least is the call a busy machine
    disturbed least, and CPU time is the steadier of the two on a shared machine."""
    wall, cpu = [], []
    for _ in range(repeats):
        gc.collect()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn(path)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return min(wall), min(cpu)


def split_only(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8") as f:
        return [line.split() for line in f]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/list_parse"), help="folder for the lists; emptied")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    files = {**write_lists(args.work, args.lines), **write_asvspoof5(args.work)}

    from data.asvspoof import read_cm_protocol, read_sasv_trials
    from data.asvspoof5 import read_track1, read_track2_trials
    from data.voxceleb import VoxCeleb, read_train_list, read_trial_list

    readers: list[tuple[str, Path, Callable[[Path], object]]] = [
        ("read_cm_protocol", files["cm_protocol"], read_cm_protocol),
        ("read_sasv_trials", files["sasv_trials"], read_sasv_trials),
        ("read_train_list", files["vox_train"], read_train_list),
        ("VoxCeleb.train_set", files["vox_train"],
         lambda p: VoxCeleb(p.parent, train_list=p).train_set(check=False)),
        ("read_trial_list", files["vox_trials"], read_trial_list),
        ("asvspoof5.read_track1 (eval size)", files["a5_track1"], read_track1),
        ("asvspoof5.read_track2_trials (eval size)", files["a5_trials"], read_track2_trials),
    ]
    for name in ("ASVspoof2019.LA.cm.eval.trl.txt", "ASVspoof2019.LA.asv.eval.gi.trl.txt"):
        if (REFERENCE / name).is_file():
            reader = read_cm_protocol if ".cm." in name else read_sasv_trials
            readers.append((f"{reader.__name__} (official {name})", REFERENCE / name, reader))
    result: dict = {"lines": args.lines, "repeats": args.repeats, "python": sys.version.split()[0], "readers": {}}
    for name, path, reader in readers:
        with open(path, "rb") as f:
            lines = sum(1 for _ in f)
        parse, parse_cpu = best_of(reader, path, args.repeats)
        split_cpu = best_of(split_only, path, args.repeats)[1]
        result["readers"][name] = {"lines": lines, "parse_s": round(parse, 3), "parse_cpu_s": round(parse_cpu, 3),
                                   "split_cpu_s": round(split_cpu, 3),
                                   "parse_cpu_ns_per_line": round(parse_cpu / lines * 1e9),
                                   "parse_over_split_cpu": round(parse_cpu / split_cpu, 2)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    shutil.rmtree(args.work)


if __name__ == "__main__":
    main()
