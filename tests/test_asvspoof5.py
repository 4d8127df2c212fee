"""The ASVspoof 5 layout: the reader (data/asvspoof5.py) on the synthetic tiny layout, every protocol naming in
circulation, the bad-input cases of issue 23 §7, and the generator (synthetic/asvspoof5.py)."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from common.cli import run_main
from common.errors import InputError, MissingFilesError, ProtocolError
from data.asvspoof5 import CODECS, NAMES, ASVspoof5Database, read_track1, read_track2_trials
from data.databases import detect_format, open_database, say_layout
from synthetic import asvspoof5 as gen
from synthetic import codecs
from tests.pipeline_fixtures import assert_one_line_error, call

P = "ASVspoof5_protocols"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The tiny ASVspoof 5 layout, generated once for the module; tests copy its lists before changing them."""
    out = tmp_path_factory.mktemp("a5")
    gen.generate(out, "tiny", seed=0)
    return out


def clone(corpus: Path, to: Path, protocols: str | None = P) -> Path:
    """A database folder with links to the corpus's audio folders and copies of its lists (in `protocols`, or at
    the root when None)."""
    db = to / "db"
    (db / (protocols or "")).mkdir(parents=True, exist_ok=True)
    for name in ("flac_T", "flac_D", "flac_E_eval"):
        (db / name).symlink_to(corpus / gen.TOP / name)
    for f in (corpus / gen.TOP / P).iterdir():
        shutil.copy(f, db / (protocols or "") / f.name)
    return db


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- the generator
def test_generator_writes_the_official_names_and_the_preset_counts(corpus):
    db = corpus / gen.TOP
    preset = gen.PRESETS["tiny"]
    track1 = {s: lines(db / P / NAMES["cm", s][0]) for s in gen.SPLITS}
    for split, rows in track1.items():
        prefix = gen.PREFIX[split]
        counts = getattr(preset, split)
        assert len(rows) == counts.bonafide + counts.spoofs
        for row in rows:
            f = row.split()
            assert len(f) == 10 and f[9] == "-"
            assert re.fullmatch(rf"{prefix}\d{{4}}", f[0]) and re.fullmatch(rf"{prefix}\d{{10}}", f[1]), row
            assert (db / gen.FOLDER[split] / f"{f[1]}.flac").is_file()
        keys = Counter(r.split()[8] for r in rows)
        assert keys == {"bonafide": counts.bonafide, "spoof": counts.spoofs}
        attacks = {r.split()[7] for r in rows} - {"bonafide"}
        assert attacks <= set(gen.ATTACKS[split]) and len(attacks) >= len(gen.ATTACKS[split]) // 2
        speakers = {r.split()[0] for r in rows}
        assert len(speakers) == counts.speakers
        bona = {r.split()[0] for r in rows if r.split()[8] == "bonafide"}
        assert bona == speakers                                   # every speaker has bona fide speech
    for split in ("dev", "eval"):
        counts = getattr(preset, split)
        enrol = lines(db / P / NAMES["enrol", split][0])
        files = [u for row in enrol for u in row.split()[1].split(",")]
        assert len(enrol) == counts.enrolled and len(files) == counts.enrol_files
        assert min(len(row.split()[1].split(",")) for row in enrol) < 3     # some have fewer than three
        assert not set(files) & {r.split()[1] for r in track1[split]}      # not in the Track 1 list
        trials = lines(db / P / NAMES["trial", split][0])
        assert len(trials) == counts.trials
        kinds = Counter(t.split()[4] for t in trials)
        assert set(kinds) == {"target", "nontarget", "spoof"}
        enrolled = {row.split()[0] for row in enrol}
        assert {t.split()[0] for t in trials} == enrolled
        spoofed = {r.split()[0] for r in track1[split] if r.split()[8] == "spoof"}
        assert spoofed == enrolled                                # the enrolled speakers are imitated


def test_eval_holds_coded_copies_of_the_conditions_made_and_the_manifest_says_which(corpus):
    manifest = json.loads((corpus / "synthetic_corpus.json").read_text())
    made, not_made = manifest["codecs"]["made"], manifest["codecs"]["not_made"]
    assert set(made) | set(not_made) == set(CODECS) and not set(made) & set(not_made)
    assert {"C04", "C07", "C11"} <= set(not_made)                 # neural codecs and the device channel
    assert "neural" in not_made["C04"] and "Encodec" in not_made["C07"]
    assert set(made) == set(codecs.available()[0])
    rows = {r.split()[1]: r.split() for r in lines(corpus / gen.TOP / P / "ASVspoof5.eval.track_1.tsv")}
    coded = [f for f in rows.values() if f[3] != "-"]
    assert len(coded) == gen.PRESETS["tiny"].eval.coded
    assert {f[3] for f in coded} == set(made)
    for f in coded:
        source = rows[f[5]]                                       # CODEC_SEED: an uncoded utterance ...
        assert source[3] == "-" and source[0] == f[0] and source[7:9] == f[7:9]   # ... of the same speaker and kind
        assert 1 <= int(f[4]) <= 5
    for split in ("train", "dev"):                                # train and dev are uncoded, as released
        assert {r.split()[3] for r in lines(corpus / gen.TOP / P / NAMES["cm", split][0])} == {"-"}


def test_generator_is_deterministic_for_a_seed(corpus, tmp_path):
    again = gen.generate(tmp_path / "again", "tiny", seed=0).root
    assert digest(again / gen.TOP) == digest(corpus / gen.TOP)
    assert gen.why_incomplete(again, "tiny", 0) is None
    other = gen.plan(gen.PRESETS["tiny"], 1, codecs.available()[0]).texts
    assert other != gen.plan(gen.PRESETS["tiny"], 0, codecs.available()[0]).texts
    (again / gen.TOP / "flac_T" / "T_0000000000.flac").unlink()
    assert "added or removed" in gen.why_incomplete(again, "tiny", 0)
    assert "another layout" in gen.why_incomplete(again, "default", 0)


def test_an_audio_pool_keeps_the_lists_and_counts_and_renders_n_recordings_a_folder(corpus, tmp_path):
    pooled = gen.generate(tmp_path / "pooled", "tiny", seed=0, audio_pool=3).root
    full, db = corpus / gen.TOP, pooled / gen.TOP
    assert digest(db / P) == digest(full / P)                              # the same lists, byte for byte
    assert gen.count_files(pooled) == gen.count_files(corpus)
    coded = gen.PRESETS["tiny"].eval.coded
    for split, folder in gen.FOLDER.items():
        inodes = {f.stat().st_ino for f in (db / folder).iterdir()}
        assert len(inodes) == 3 + (min(coded, 3) if split == "eval" else 0), split   # 3 recordings (+ 3 coded)
    todo = gen.plan(gen.PRESETS["tiny"], 0, codecs.available()[0])
    for jobs in (todo.jobs, todo.coded):
        render, links = gen.pooled(jobs, 3)
        for job in render:   # the rendered recordings are the full corpus's (a coded copy's source may be a link)
            assert jobs is todo.coded or (pooled / job.path).read_bytes() == (corpus / job.path).read_bytes()
        for path, target in links:                                         # every other file links to one of them
            assert (pooled / path).stat().st_ino == (pooled / target).stat().st_ino, path
    manifest = json.loads((pooled / "synthetic_corpus.json").read_text())
    assert manifest["audio_pool"] == 3 and manifest["distinct_recordings"] == 3 * 3 + min(coded, 3)
    assert gen.why_incomplete(pooled, "tiny", 0, audio_pool=3) is None
    assert gen.why_incomplete(pooled, "tiny", 0) is not None               # a pooled corpus is never the full one
    assert gen.why_incomplete(corpus, "tiny", 0, audio_pool=3) is not None
    with pytest.raises(ValueError, match="audio_pool"):
        gen.generate(tmp_path / "bad", "tiny", seed=0, audio_pool=-1)


def test_generate_corpus_audio_pool_flag_writes_a_pooled_corpus_and_refuses_other_layouts(tmp_path, capsys):
    import generate_corpus

    rc, _ = call(generate_corpus.main, ["--out", str(tmp_path / "p"), "--layout", "asvspoof5", "--preset", "tiny",
                                        "--audio-pool", "2"], capsys)
    assert rc == 0 and gen.why_incomplete(tmp_path / "p", "tiny", 0, audio_pool=2) is None
    for argv, message in ((["--layout", "la", "--audio-pool", "2"], "asvspoof5 only"),
                          (["--layout", "asvspoof5", "--audio-pool=-1"], "must be")):
        with pytest.raises(SystemExit) as e:
            generate_corpus.main(["--out", str(tmp_path / "q"), "--preset", "tiny", *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_pooled_spreads_the_rendered_jobs_over_each_folder():
    jobs = [gen.CodedJob(f"{d}/{i}.flac", "", "C01", 1) for d in ("a", "b") for i in range(10)]
    render, links = gen.pooled(jobs, 4)
    assert [j.path for j in render] == ["a/0.flac", "a/3.flac", "a/6.flac", "a/9.flac",
                                        "b/0.flac", "b/3.flac", "b/6.flac", "b/9.flac"]
    assert ("a/5.flac", "a/3.flac") in links and ("b/1.flac", "b/0.flac") in links and len(links) == 12
    assert gen.pooled(jobs, 0) == (jobs, [])


def test_scale_preset_has_the_official_counts():
    scale = gen.PRESETS["scale"]
    assert scale.train.bonafide + scale.train.spoofs == 182_357
    assert (scale.dev.bonafide + scale.dev.spoofs, scale.dev.enrolled, scale.dev.enrol_files, scale.dev.trials) == \
        (140_950, 398, 1_184, 282_456)
    assert (scale.eval.bonafide + scale.eval.spoofs, scale.eval.enrolled, scale.eval.enrol_files,
            scale.eval.trials) == (680_774, 367, 1_098, 834_536)


def test_scaled_scale_preset_shrinks_files_and_trials_and_keeps_speakers_and_enrolment():
    scale = gen.PRESETS["scale"]
    tenth = gen.scaled("scale", 0.1)
    assert tenth.name == "scalex0.1" and (tenth.min_dur, tenth.max_dur) == (scale.min_dur, scale.max_dur)
    for split in gen.SPLITS:
        full, part = getattr(scale, split), getattr(tenth, split)
        assert (part.speakers, part.enrolled, part.enrol_files) == (full.speakers, full.enrolled, full.enrol_files)
        assert (part.bonafide, part.spoofs, part.coded, part.trials) == tuple(
            round(v * 0.1) for v in (full.bonafide, full.spoofs, full.coded, full.trials))
    # below dev's 785 speakers over 31,334 bona fide utterances, a speaker keeps one uncoded bona fide utterance
    small = gen.scaled(scale, 0.005)
    for split in gen.SPLITS:
        c, share = getattr(small, split), round(getattr(scale, split).bonafide * 0.005)
        assert c.bonafide - gen._coded(c)[0] >= c.speakers and c.bonafide > share        # raised ...
        one_less = replace(c, bonafide=c.bonafide - 1)
        assert one_less.bonafide - gen._coded(one_less)[0] < c.speakers                  # ... to the minimum
    assert small.train.spoofs == round(163_560 * 0.005) and small.eval.trials == round(834_536 * 0.005)
    assert gen.scaled("scale", 1) == gen.Preset("scalex1", scale.train, scale.dev, scale.eval, scale.min_dur,
                                                scale.max_dur)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction must be in"):
            gen.scaled("scale", bad)


def test_a_scaled_preset_plans_its_counts():
    preset = gen.scaled("default", 0.5)
    todo = gen.plan(preset, 0, ("C01", "C05"))
    per_split = Counter(job.path.split("/")[1] for job in [*todo.jobs, *todo.coded])
    for split in gen.SPLITS:
        c = getattr(preset, split)
        assert per_split[gen.FOLDER[split]] == c.bonafide + c.spoofs + c.enrol_files
    trials = todo.texts[f"{gen.PROTOCOLS}/ASVspoof5.eval.track_2.trial.tsv"]
    assert len(trials) == preset.eval.trials == 450


# ------------------------------------------------------------------------------------------- the reader
def test_detected_and_read_with_the_condition_fields(corpus):
    root = corpus / gen.TOP
    assert detect_format(root) == "asvspoof5"
    db = open_database(root)
    assert isinstance(db, ASVspoof5Database) and not db.concat_enrolment
    for split in db.splits:
        ids = db.check_split(split)
        assert len(db.cm_entries(split)) == len(lines(root / P / NAMES["cm", split][0]))
        assert len(ids) == len(db.cm_entries(split)) + sum(map(len, db.enrolment(split).values())) \
            if split != "train" else len(db.cm_entries(split))
    entries = {e.utt: e for e in db.cm_entries("eval")}
    coded = next(e for e in entries.values() if e.codec != "-")
    f = next(r.split() for r in lines(root / P / "ASVspoof5.eval.track_1.tsv") if r.split()[1] == coded.utt)
    assert coded == (f[0], f[1], f[7] if f[8] == "spoof" else "-", f[8], f[3], f[4], f[2], f[5], "-")
    bona = next(e for e in entries.values() if e.key == "bonafide")
    assert bona.system == "-" and bona.gender in ("F", "M")
    trials = db.sasv_trials("eval")
    assert {t.utt for t in trials} <= set(entries)
    assert all((t.attack == "bonafide") == (t.key != "spoof") for t in trials)


def test_a_folder_of_no_layout_lists_what_asvspoof5_expects(tmp_path):
    with pytest.raises(InputError, match=r"asvspoof5: no ASVspoof5\.train\.tsv or .*track_1\.tsv"):
        detect_format(tmp_path)


def test_every_naming_in_circulation_is_read(corpus, tmp_path):
    final = open_database(corpus / gen.TOP)
    at_root = clone(corpus, tmp_path / "root", protocols=None)          # no ASVspoof5_protocols/ folder
    assert open_database(at_root).cm_entries("eval") == final.cm_entries("eval")
    readme = clone(corpus, tmp_path / "readme")                           # the README's Track 2 names
    for split in ("dev", "eval"):
        for role, name in (("trial", f"ASVspoof5.{split}.trial.tsv"), ("enrol", f"ASVspoof5.{split}.enroll.tsv")):
            (readme / P / NAMES[role, split][0]).rename(readme / P / name)
    db = open_database(readme)
    assert db.sasv_trials("eval") == final.sasv_trials("eval") and db.enrolment("dev") == final.enrolment("dev")
    (readme / "flac_E_eval").rename(readme / "flac_E")                    # the eval audio folder's other name
    assert db.check_split("eval") == final.check_split("eval")
    # the phase-2 release: six-column metadata, three-column trials, .txt names
    phase2 = clone(corpus, tmp_path / "phase2")
    for split in ("train", "dev"):
        src = phase2 / P / NAMES["cm", split][0]
        rows = [r.split() for r in lines(src)]
        (phase2 / P / NAMES["cm", split][1]).write_text("".join(f"{f[0]} {f[1]} {f[2]} {f[3]} {f[7]} {f[8]}\n"
                                                                for f in rows))
        src.unlink()
    trials = phase2 / P / NAMES["trial", "dev"][0]
    three = "".join(f"{f[0]} {f[1]} {f[4]}\n" for f in (r.split() for r in lines(trials)))
    trials.rename(phase2 / P / "ASVspoof5.dev.trial.txt").write_text(three)
    (phase2 / P / NAMES["enrol", "dev"][0]).rename(phase2 / P / "ASVspoof5.dev.enroll.txt")
    db = open_database(phase2)
    assert [e[:4] + (e.gender,) for e in db.cm_entries("dev")] == \
        [e[:4] + (e.gender,) for e in final.cm_entries("dev")]
    assert db.sasv_trials("dev") == final.sasv_trials("dev")          # spoof attacks from the Track 1 list
    assert db.enrolment("dev") == final.enrolment("dev")
    assert db.check_split("dev") == final.check_split("dev")
    assert [p.name for p in db.protocol_files(["train", "dev"])] == [
        "ASVspoof5.train.metadata.txt", "ASVspoof5.dev.metadata.txt", "ASVspoof5.dev.trial.txt",
        "ASVspoof5.dev.enroll.txt"]


def test_each_list_is_parsed_once_while_unchanged(corpus, tmp_path, monkeypatch):
    """The stages ask for the same lists many times per run: each is parsed once and held once (a trial list parsed
    again on every call was held again on every call: gigabytes at the 834k-line eval list), and parsed again when
    it, or the Track 1 list a phase-2 trial list takes its attacks from, changes."""
    import data.asvspoof5 as a5

    calls = Counter()

    def counted(real):
        def read(path, *args):
            calls[Path(path).name] += 1
            return real(path, *args)
        return read

    for name in ("read_track1", "read_track2_trials", "read_enrolment"):
        monkeypatch.setattr(a5, name, counted(getattr(a5, name)))
    root = clone(corpus, tmp_path / "db")
    db = open_database(root)
    for _ in range(3):
        trials = db.sasv_trials("dev")
        db.cm_entries("dev"), db.enrolment("dev")
    assert calls == {NAMES["trial", "dev"][0]: 1, NAMES["cm", "dev"][0]: 1, NAMES["enrol", "dev"][0]: 1}
    # a phase-2 trial list (no attack column): a changed Track 1 attack label reaches its spoof trials
    trial_path = root / P / NAMES["trial", "dev"][0]
    trial_path.write_text("".join(f"{f[0]} {f[1]} {f[4]}\n" for f in (r.split() for r in lines(trial_path))))
    spoof = next(t for t in db.sasv_trials("dev") if t.key == "spoof")
    assert db.sasv_trials("dev") == trials                        # the attacks from the Track 1 list
    track1 = root / P / NAMES["cm", "dev"][0]
    track1.write_text("".join(" ".join(f[:7] + (["A32"] if f[1] == spoof.utt else f[7:8]) + f[8:]) + "\n"
                              for f in (r.split() for r in lines(track1))))
    assert {t.attack for t in db.sasv_trials("dev") if t.utt == spoof.utt} == {"A32"} != {spoof.attack}


def test_final_names_are_read_when_phase2_names_are_there_too_and_work_start_says_so(corpus, tmp_path, caplog):
    db_root = clone(corpus, tmp_path)
    (db_root / "ASVspoof5.dev.trial.txt").write_text("D_0000 D_0000000000 target\n")   # would not parse as dev
    (db_root / "ASVspoof5.train.metadata.txt").write_text("junk\n")
    db = open_database(db_root)
    assert db.sasv_trials("dev") == open_database(corpus / gen.TOP).sasv_trials("dev")
    assert db.sasv_trials_path("dev") == db_root / P / "ASVspoof5.dev.track_2.trial.tsv"
    files = db.protocol_files(["train", "dev"])
    assert db_root / "ASVspoof5.dev.trial.txt" not in files and db_root / "ASVspoof5.train.metadata.txt" not in files
    with caplog.at_level(logging.INFO, logger="data.databases"):
        say_layout(db)
    said = [r.getMessage() for r in caplog.records]
    assert any("dev Track 2 trial list: reading ASVspoof5_protocols/ASVspoof5.dev.track_2.trial.tsv, not "
               "ASVspoof5.dev.trial.txt (phase-2 name)" in m for m in said), said
    assert any("train Track 1 list: reading" in m and "ASVspoof5.train.metadata.txt (phase-2 name)" in m
               for m in said), said


# ------------------------------------------------------------------------------------------- bad input (§7)
def test_a_missing_trial_or_enrolment_file_is_named_with_its_list_and_line(corpus, tmp_path):
    db_root = clone(corpus, tmp_path)
    (db_root / "flac_D").unlink()
    shutil.copytree(corpus / gen.TOP / "flac_D", db_root / "flac_D")
    db = open_database(db_root)
    trial_list = db_root / P / "ASVspoof5.dev.track_2.trial.tsv"
    n, utt = next((i, r.split()[1]) for i, r in enumerate(lines(trial_list), 1) if i > 3)
    (db_root / "flac_D" / f"{utt}.flac").unlink()
    with pytest.raises(MissingFilesError, match=rf"1 of \d+ files missing: .*{utt}\.flac \(listed at "
                                                rf"{re.escape(str(trial_list))}:{n}\)$"):
        db.check_split("dev")
    shutil.copy(corpus / gen.TOP / "flac_D" / f"{utt}.flac", db_root / "flac_D")
    enrol_list = db_root / P / "ASVspoof5.dev.track_2.enroll.tsv"
    spk, files = lines(enrol_list)[2].split()
    (db_root / "flac_D" / f"{files.split(',')[-1]}.flac").unlink()
    with pytest.raises(MissingFilesError, match=rf"1 of \d+ files missing: .*\(listed at "
                                                rf"{re.escape(str(enrol_list))}:3\)$"):
        db.check_split("dev")


def test_an_enrolment_line_with_no_files_is_one_line(corpus, tmp_path):
    db_root = clone(corpus, tmp_path)
    enrol = db_root / P / "ASVspoof5.eval.track_2.enroll.tsv"
    rows = lines(enrol)
    enrol.write_text("\n".join([*rows[:1], rows[1].split()[0], *rows[2:]]) + "\n")
    with pytest.raises(ProtocolError, match=rf"^{re.escape(str(enrol))}:2: speaker {rows[1].split()[0]} has no "
                                            rf"enrolment files$"):
        open_database(db_root).check_split("eval")


def test_an_unknown_codec_is_accepted_and_reported_once(tmp_path, caplog):
    path = tmp_path / "ASVspoof5.eval.track_1.tsv"
    path.write_text("E_0001 E_0000000001 F - 0 - - bonafide bonafide -\n"
                    "E_0001 E_0000000002 F C12 3 E_0000000001 - bonafide bonafide -\n"
                    "E_0001 E_0000000003 F C12 3 E_0000000001 AC1 A20 spoof -\n"
                    "E_0002 E_0000000004 M X 1 E_0000000001 AC1 A20 spoof -\n"
                    "E_0002 E_0000000005 M C03 1 E_0000000001 AC1 A21 spoof -\n")
    with caplog.at_level(logging.WARNING, logger="data.asvspoof5"):
        entries = read_track1(path)
    assert [e.codec for e in entries] == ["-", "C12", "C12", "X", "C03"] and entries[0].codec_q == "0"
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"{path}: codec labels outside C01-C11 accepted: C12 (2 utterances), X (1 utterance)"]


@pytest.mark.parametrize("line, message", [
    ("E_0001 E_1 F - - - - A20 bonafide -", "bona fide utterance E_1 has attack 'A20', expected 'bonafide'"),
    ("E_0001 E_1 F - - - AC1 bonafide spoof -", "spoof utterance E_1 has attack 'bonafide', expected A01..A32"),
    ("E_0001 E_1 X - - - - bonafide bonafide -", "unknown gender 'X'; expected F or M"),
    ("E_0001 E_1 F C01 high E_2 - bonafide bonafide -", "codec quality 'high' is not a number or '-'"),
    ("E_0001 ../E_1 F - - - - bonafide bonafide -", "utterance id '../E_1' holds a separator"),
    ("E_0001 E_1 F - - - - bonafide bonafide", "expected 10 columns 'SPEAKER_ID FLAC_FILE_NAME"),
])
def test_track1_lines_are_checked(tmp_path, line, message):
    path = tmp_path / "list.tsv"
    path.write_text(f"E_0001 E_0 F - - - - bonafide bonafide -\n{line}\n")
    with pytest.raises(ProtocolError, match=rf"^{re.escape(str(path))}:2: {re.escape(message)}"):
        read_track1(path)


def test_trial_lines_are_checked(tmp_path):
    path = tmp_path / "trials.tsv"
    path.write_text("E_0001 E_1 F bonafide target\nE_0001 E_2 F A20 target\n")
    with pytest.raises(ProtocolError, match=r"trials\.tsv:2: key 'target' does not fit attack 'A20'"):
        read_track2_trials(path)
    path.write_text("E_0001 E_1 F bonafide target\nE_0001 E_1 F bonafide target\n")
    with pytest.raises(ProtocolError, match=r"trials\.tsv:2: trial 'E_0001 E_1' listed twice \(first on line 1\)"):
        read_track2_trials(path)
    path.write_text("E_0001 E_1 target\nE_0001 E_2 F bonafide target\n")
    with pytest.raises(ProtocolError, match=r"trials\.tsv:2: expected 3 columns 'SPK UTT KEY' \(phase-2 format\)"):
        read_track2_trials(path)


def test_a_file_listed_in_two_splits_is_refused_naming_both_lines(corpus, tmp_path):
    db_root = clone(corpus, tmp_path)
    train = db_root / P / "ASVspoof5.train.tsv"
    dev = db_root / P / "ASVspoof5.dev.track_1.tsv"
    stolen = lines(train)[4]
    dev.write_text(dev.read_text() + stolen + "\n")
    utt, n_dev = stolen.split()[1], len(lines(dev))
    with pytest.raises(InputError, match=rf"^{re.escape(str(dev))}:{n_dev}: utterance {utt} is also listed in the "
                                         rf"train split, at {re.escape(str(train))}:5$"):
        open_database(db_root).check_split("dev")


def test_a_trial_whose_speaker_has_no_enrolment_names_both_lists(corpus, tmp_path):
    from pipeline.stages.experiment import check_trials

    db_root = clone(corpus, tmp_path)
    enrol = db_root / P / "ASVspoof5.dev.track_2.enroll.tsv"
    rows = lines(enrol)
    enrol.write_text("\n".join(rows[1:]) + "\n")
    trials = db_root / P / "ASVspoof5.dev.track_2.trial.tsv"
    with pytest.raises(InputError, match=rf"^{re.escape(str(trials))}: the trial '{rows[0].split()[0]} .*' claims "
                                         rf"speaker {rows[0].split()[0]}, who has no enrolment in "
                                         rf"{re.escape(str(enrol))}$"):
        check_trials(open_database(db_root), ["dev"])


def test_concatenated_enrolment_is_refused_in_one_line(corpus, tmp_path, capsys):
    import save_asv_embeddings

    db = open_database(corpus / gen.TOP)
    for call_it in (lambda: db.check_split("dev", enr_audio=True), lambda: db.enrolment_concat("dev"),
                    lambda: db.protocol_files(["dev"], concat=True)):
        with pytest.raises(InputError, match="enrolment: concat needs one concatenated enrolment recording"):
            call_it()
    with pytest.raises(InputError, match="enr_audio is set"):
        ASVspoof5Database(corpus / gen.TOP, tmp_path)
    out = tmp_path / "out"
    argv = ["--config", "configs/quickstart.conf", f"database={corpus / gen.TOP}", f"output_dir={out}",
            "enrolment=concat"]
    rc, err = call(lambda a: run_main(save_asv_embeddings.main, a), argv, capsys)
    assert rc == 2
    assert_one_line_error(err, "enrolment: concat needs concatenated enrolment recordings, which ASVspoof 5")
    assert not out.exists() or not any(out.iterdir())
