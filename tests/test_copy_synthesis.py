"""Copy-synthesis: the vocoders (data/vocoders.py) and the tool that writes vocoded copies (copy_synthesis.py)."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

import copy_synthesis
from common.cli import run_main
from common.errors import InputError, MissingFilesError
from common.io import read_json
from data.asvspoof import ProtocolError
from data.copy_synthesis import SOURCES_NAME
from data.vocoders import (
    LIST_NAME,
    MANIFEST_NAME,
    VOCODERS,
    copy_synthesis_audio_root,
    file_rng,
    read_copy_synthesis_list,
    vocode,
)
from synthetic.voice import finish, plan_utterance, render, sample_voice

SR = 16000
VOX_FILES = {"id00001": ["vidAAAAAAAA/00001.wav", "vidBBBBBBBB/00001.wav"],
             "id00002": ["vidCCCCCCCC/00001.wav", "vidCCCCCCCC/00002.wav"],
             "id00003": ["vidDDDDDDDD/00001.wav"]}


def speech(seed: int, seconds: float, gender: str) -> np.ndarray:
    """A synthetic utterance (voiced and unvoiced phones, formants, a noise floor) at a usual level."""
    rng = np.random.default_rng(seed)
    voice = sample_voice(rng, gender)
    return finish(render(plan_utterance(rng, seconds, voice.rate), voice, rng), rng, snr_db=30.0, peak=0.5)


_FB = AF.melscale_fbanks(257, 20.0, 7600.0, 80, SR).numpy().T


def long_term_log_mel(x: np.ndarray) -> np.ndarray:
    spec = torch.stft(torch.from_numpy(x), 512, 160, 400, torch.hamming_window(400), return_complex=True)
    return np.log(_FB @ spec.abs().square().numpy().mean(axis=1) + 1e-8)


@pytest.fixture(scope="module")
def vox(tmp_path_factory) -> Path:
    """A VoxCeleb-layout folder: 3 speakers, 5 utterances of 0.5 s."""
    root = tmp_path_factory.mktemp("vox")
    lines = []
    for s, (spk, rels) in enumerate(VOX_FILES.items()):
        for u, rel in enumerate(rels):
            path = root / "wav" / spk / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, speech(10 * s + u, 0.5, ("female", "male")[s % 2]), SR, subtype="PCM_16")
            lines.append(f"{spk} {spk}/{rel}")
    (root / "train_list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def made(vox, tmp_path_factory) -> Path:
    """The copies of `vox` by every vocoder, one worker."""
    out = tmp_path_factory.mktemp("made") / "out"
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "1"]) == 0
    return out


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".sasv-run.lock"}


# ----------------------------------------------------------------------------------------------- vocoders
@pytest.mark.parametrize("name", sorted(VOCODERS))
def test_vocoder_keeps_envelope_changes_waveform_and_is_seeded(name, one_thread):
    for seed, gender in ((1, "female"), (2, "male")):
        x = speech(seed, 1.0, gender)
        y = vocode(name, x, np.random.default_rng(0))
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        rms_x, rms_y = np.sqrt(np.mean(x ** 2)), np.sqrt(np.mean(y ** 2))
        assert rms_y == pytest.approx(rms_x, rel=0.05) and np.abs(y).max() < 1.0       # level kept, no clipping
        assert abs(np.corrcoef(x, y)[0, 1]) < 0.5, "the copy must differ from its source sample by sample"
        corr = np.corrcoef(long_term_log_mel(x), long_term_log_mel(y))[0, 1]
        assert corr > 0.93, f"{name}: long-term log-mel spectrum not kept (correlation {corr:.3f})"
        assert np.array_equal(y, vocode(name, x, np.random.default_rng(0)))
        assert not np.array_equal(y, vocode(name, x, np.random.default_rng(1)))


def test_vocoder_refuses_bad_input():
    with pytest.raises(InputError, match="at least 400 samples"):
        vocode("lpc", np.zeros(100, np.float32), np.random.default_rng(0))
    with pytest.raises(InputError, match="unknown vocoder 'wavenet'"):
        vocode("wavenet", np.zeros(16000, np.float32), np.random.default_rng(0))
    silent = vocode("harmonic_noise", np.zeros(4000, np.float32), np.random.default_rng(0))
    assert len(silent) == 4000 and not silent.any()


def test_file_rng_depends_only_on_seed_vocoder_and_path():
    def draw(*key) -> int:
        return int(file_rng(*key).integers(0, 2 ** 62))

    assert draw(0, "lpc", "a/b.wav") == draw(0, "lpc", "a/b.wav")
    assert len({draw(0, "lpc", "a/b.wav"), draw(1, "lpc", "a/b.wav"), draw(0, "griffin_lim", "a/b.wav"),
                draw(0, "lpc", "a/c.wav")}) == 4


# ----------------------------------------------------------------------------------------------- the tool
def test_writes_copies_list_and_manifest(vox, made):
    expected = sorted(f"{spk} {v}/{spk}/{rel} {v} {spk}/{rel}" for spk, rels in VOX_FILES.items()
                      for rel in rels for v in sorted(VOCODERS))
    assert (made / LIST_NAME).read_text().splitlines() == expected
    entries = read_copy_synthesis_list(made)
    assert [(e.speaker, e.path.relative_to(made / "wav").as_posix(), e.vocoder, e.source) for e in entries] == \
        [tuple(line.split()) for line in expected]
    for e in entries:
        copy, sr = sf.read(e.path, dtype="float32")
        info = sf.info(e.path)
        assert sr == SR and info.subtype == "PCM_16" and info.format == "WAV"
        assert len(copy) == len(sf.read(vox / "wav" / e.source)[0]) and np.abs(copy).max() > 0.01
    manifest = read_json(made / MANIFEST_NAME)
    assert manifest["complete"] and manifest["settings"]["seed"] == 0
    assert manifest["settings"]["vocoders"] == sorted(VOCODERS)
    assert manifest["settings"]["source"]["root"] == str(vox.resolve())
    assert manifest["counts"]["files"] == len(expected) == manifest["counts"]["written"]
    assert manifest["counts"]["speakers"] == 3 and manifest["bad_audio"] == []
    assert copy_synthesis_audio_root(made) == (vox / "wav").resolve()
    assert not [p for p in made.rglob(".*.tmp")], "no temporaries left behind"


def test_rerun_skips_and_redoes_a_deleted_copy(vox, made, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(made, out)
    before = {p: p.stat().st_mtime_ns for p in (out / "wav").rglob("*.wav")}
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "1"]) == 0
    assert "0 written, 15 already there" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "wav").rglob("*.wav")} == before
    gone = out / "wav" / "lpc" / "id00002" / "vidCCCCCCCC" / "00002.wav"
    gone.unlink()
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "1"]) == 0
    assert "1 written, 14 already there" in capsys.readouterr().out
    assert digests(out / "wav") == digests(made / "wav")
    assert (out / LIST_NAME).read_text() == (made / LIST_NAME).read_text()


def test_a_source_swapped_under_its_name_gets_new_copies(vox, tmp_path, capsys):
    import io
    import os
    import time
    src = tmp_path / "vox"
    shutil.copytree(vox, src)
    out = tmp_path / "out"
    argv = ["--voxceleb", str(src), "--out", str(out), "--vocoders", "lpc", "--workers", "1"]
    assert copy_synthesis.main(argv) == 0
    capsys.readouterr()
    source = src / "wav" / "id00002" / "vidCCCCCCCC" / "00002.wav"
    copy = out / "wav" / "lpc" / "id00002" / "vidCCCCCCCC" / "00002.wav"
    stale, stamp = copy.read_bytes(), source.stat()
    other, _ = sf.read(src / "wav" / "id00001" / "vidAAAAAAAA" / "00001.wav", dtype="float32")
    buffer = io.BytesIO()                                # another speaker's audio, the same length and size...
    sf.write(buffer, np.resize(other, len(sf.read(source)[0])), SR, subtype="PCM_16", format="WAV")
    assert len(buffer.getvalue()) == stamp.st_size
    time.sleep(0.02)
    source.write_bytes(buffer.getvalue())
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))   # ...with the modification time copied back
    assert copy_synthesis.main(argv) == 0
    captured = capsys.readouterr()
    assert ("1 source file(s) changed since their copies were made (change time: 1), "
            "e.g. id00002/vidCCCCCCCC/00002.wav") in captured.err, captured.err
    assert "1 written (1 source file(s) changed since their copies were made), 4 already there" in captured.out
    fresh = tmp_path / "fresh"                           # what a first run on the swapped source makes
    assert copy_synthesis.main(["--voxceleb", str(src), "--out", str(fresh), "--vocoders", "lpc",
                                "--workers", "1"]) == 0
    assert copy.read_bytes() != stale and digests(out / "wav") == digests(fresh / "wav")
    assert read_json(out / MANIFEST_NAME)["counts"]["sources_changed"] == 1
    assert copy_synthesis.main(argv) == 0                # recorded: the next run trusts it again
    assert "0 written, 5 already there" in capsys.readouterr().out


def test_copies_made_before_sources_were_recorded_are_kept_and_said(vox, made, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(made, out)
    (out / SOURCES_NAME).unlink()
    before = digests(out / "wav")
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "copy_synthesis_sources.npz: does not exist" in captured.err
    assert "the copies there are kept as they are (--overwrite remakes them)" in captured.err
    assert "0 written, 15 already there" in captured.out and digests(out / "wav") == before
    (out / SOURCES_NAME).write_bytes(b"cut")          # damaged: said, copies kept, rewritten
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert f"{out / SOURCES_NAME}: damaged (" in captured.err and "0 written" in captured.out
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "1"]) == 0
    assert "copy-synthesis:" not in capsys.readouterr().err


def test_other_settings_refused_unless_overwrite(vox, made, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(made, out)
    with pytest.raises(InputError, match=r"other settings \(seed 0, now 1\); pass --overwrite"):
        copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--seed", "1"])
    with pytest.raises(InputError, match="vocoders griffin_lim harmonic_noise lpc, now lpc"):
        copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--vocoders", "lpc"])
    assert digests(out) == digests(made), "a refused run changes nothing"
    argv = ["--voxceleb", str(vox), "--out", str(out), "--vocoders", "lpc", "--seed", "1", "--overwrite"]
    assert copy_synthesis.main(argv + ["--limit-per-speaker", "1"]) == 0
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["lpc"]
    assert [e.source for e in read_copy_synthesis_list(out)] == \
        ["id00001/vidAAAAAAAA/00001.wav", "id00002/vidCCCCCCCC/00001.wav", "id00003/vidDDDDDDDD/00001.wav"]
    # A folder with wav/ but no manifest was not made by the tool: never written into, even with --overwrite.
    foreign = tmp_path / "foreign"
    (foreign / "wav").mkdir(parents=True)
    with pytest.raises(InputError, match=r"holds files that no run of this toolkit wrote \('wav'\)"):
        copy_synthesis.main(["--voxceleb", str(vox), "--out", str(foreign), "--overwrite"])
    assert sorted(p.name for p in foreign.iterdir()) == ["wav"]


def test_worker_count_does_not_change_the_output(vox, made, tmp_path):
    out = tmp_path / "out"
    assert copy_synthesis.main(["--voxceleb", str(vox), "--out", str(out), "--workers", "2"]) == 0
    assert digests(out / "wav") == digests(made / "wav")
    assert (out / LIST_NAME).read_text() == (made / LIST_NAME).read_text()


def test_unreadable_source_is_one_line_or_skipped(vox, tmp_path, capsys):
    src = tmp_path / "vox"
    shutil.copytree(vox, src)
    broken = src / "wav" / "id00002" / "vidCCCCCCCC" / "00001.wav"
    broken.write_bytes(broken.read_bytes()[:600])                 # cut short mid-data
    out = tmp_path / "out"
    argv = ["--voxceleb", str(src), "--out", str(out), "--vocoders", "lpc", "--workers", "1"]
    assert run_main(copy_synthesis.main, argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and str(broken) in err[0] and "truncated WAV file" in err[0]
    assert not (out / LIST_NAME).exists() and not read_json(out / MANIFEST_NAME)["complete"]
    assert copy_synthesis.main(argv + ["--skip-bad-audio"]) == 0
    manifest = read_json(out / MANIFEST_NAME)
    assert len(manifest["bad_audio"]) == 1 and str(broken) in manifest["bad_audio"][0]
    sources = [e.source for e in read_copy_synthesis_list(out)]
    assert len(sources) == 4 and "id00002/vidCCCCCCCC/00001.wav" not in sources
    (src / "wav" / "id00003" / "vidDDDDDDDD" / "00001.wav").unlink()
    with pytest.raises(MissingFilesError, match="1 of 5 files missing"):
        copy_synthesis.main(argv)


def test_la_bona_fide_speech_with_protocol_speakers(tmp_path):
    la = tmp_path / "LA"
    flac = la / "ASVspoof2019_LA_train" / "flac"
    flac.mkdir(parents=True)
    rows = [("LA_0079", "LA_T_1000001", "-", "bonafide"), ("LA_0080", "LA_T_1000002", "-", "bonafide"),
            ("LA_0079", "LA_T_1000003", "A01", "spoof")]
    for i, (_, utt, _, _) in enumerate(rows):
        sf.write(flac / f"{utt}.flac", speech(i, 0.4, "female"), SR, subtype="PCM_16")
    protocols = la / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir()
    (protocols / "ASVspoof2019.LA.cm.train.trn.txt").write_text(
        "".join(f"{spk} {utt} - {system} {key}\n" for spk, utt, system, key in rows))
    out = tmp_path / "out"
    assert copy_synthesis.main(["--la", str(la), "--out", str(out), "--vocoders", "griffin_lim", "lpc"]) == 0
    assert (out / LIST_NAME).read_text().splitlines() == [
        f"{spk} {v}/ASVspoof2019_LA_train/flac/{utt}.wav {v} ASVspoof2019_LA_train/flac/{utt}.flac"
        for spk, utt in (("LA_0079", "LA_T_1000001"), ("LA_0080", "LA_T_1000002")) for v in ("griffin_lim", "lpc")]
    assert read_json(out / MANIFEST_NAME)["settings"]["source"]["split"] == "train"


def test_list_reader_errors(made, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(made, out)
    lines = (out / LIST_NAME).read_text().splitlines()
    (out / LIST_NAME).write_text("\n".join(lines[:2] + [lines[2].rsplit(" ", 1)[0]] + lines[3:]) + "\n")
    with pytest.raises(ProtocolError, match=rf"{LIST_NAME}:3: expected 4 columns"):
        read_copy_synthesis_list(out)
    spk, path, _, source = lines[0].split()
    (out / LIST_NAME).write_text(f"{spk} {path} lpc {source}\n")
    with pytest.raises(ProtocolError, match=r":1: path .* is not in the folder of its vocoder 'lpc'"):
        read_copy_synthesis_list(out)
    (out / LIST_NAME).write_text(f"{spk} ../{path} griffin_lim {source}\n")
    with pytest.raises(ProtocolError, match=r":1: path '\.\./griffin_lim/.*' has a '\.\.' component"):
        read_copy_synthesis_list(out)
    (out / LIST_NAME).write_text("\n".join(lines) + "\n")
    (out / "wav" / lines[4].split()[1]).unlink()
    with pytest.raises(MissingFilesError, match="1 of 15 files missing"):
        read_copy_synthesis_list(out)
    assert len(read_copy_synthesis_list(out, check=False)) == 15
    (out / LIST_NAME).unlink()
    with pytest.raises(MissingFilesError, match="copy-synthesis list does not exist"):
        read_copy_synthesis_list(out)


def test_a_failing_worker_leaves_no_temporary_of_the_others(tmp_path, monkeypatch):
    """An error in one worker stops the pool (Pool.terminate: SIGTERM) while another is inside a write: that write's
    temporary is removed instead of lingering beside the copies as a hidden `.NAME.XXXXXXXX.tmp`."""
    import contextlib
    import time

    import data.copy_synthesis as cs

    real_atomic_write = cs.atomic_write

    @contextlib.contextmanager
    def slow_write(path, mode="w"):
        with real_atomic_write(path, mode) as f:
            yield f
            if "slow" in str(path):
                time.sleep(60)                     # the terminate lands here, mid-write

    def vocode(name, wave, rng):
        if name == "bad":
            time.sleep(1.0)                        # the slow copy is inside its write by now
            raise RuntimeError("vocoder failed")
        return wave

    monkeypatch.setattr(cs, "atomic_write", slow_write)
    monkeypatch.setattr(cs, "vocode", vocode)
    source = tmp_path / "src.wav"
    sf.write(source, np.zeros(16000, dtype=np.float32), 16000)
    tasks = [cs.Task("a.wav", str(source), (("good", "slow/a.wav"),)),
             cs.Task("b.wav", str(source), (("bad", "bad/b.wav"),))]
    wav_dir = tmp_path / "wav"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="vocoder failed"):
        list(cs.run_all(tasks, wav_dir, seed=0, workers=2))
    assert time.monotonic() - start < 30
    assert sorted(p.relative_to(wav_dir).as_posix() for p in wav_dir.rglob("*") if p.is_file()) == []


def test_a_failing_task_stops_a_worker_that_cannot_get_back_to_python(tmp_path, monkeypatch):
    """Pool.terminate stops the workers with SIGTERM. Acted on by a Python handler (SystemExit, so that writes could
    clean up), it was lost on a worker that did not get back to bytecode: one blocked on the task queue's lock,
    which the stopping pool holds, when the signal came just before it blocked or went to another of its threads
    (torch starts one). The run then hung in Pool.terminate. Here a worker is blocked in C with SIGTERM blocked on
    its main thread and a second thread there to take it, which makes that case certain."""
    import multiprocessing
    import signal
    import threading
    import time

    import data.copy_synthesis as cs

    def vocode(name, wave, rng):
        if name == "stuck":
            threading.Thread(target=threading.Event().wait, daemon=True).start()     # takes the SIGTERM
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            lock = threading.Lock()
            lock.acquire()
            lock.acquire()                         # never returns, never runs Python code again
        time.sleep(1.0)                            # the stuck task is stuck by now
        raise RuntimeError("vocoder failed")

    monkeypatch.setattr(cs, "vocode", vocode)
    source = tmp_path / "src.wav"
    sf.write(source, np.zeros(16000, dtype=np.float32), 16000)
    tasks = [cs.Task("a.wav", str(source), (("stuck", "stuck/a.wav"),)),
             cs.Task("b.wav", str(source), (("bad", "bad/b.wav"),))]
    outcome: list[str] = []

    def run() -> None:
        try:
            list(cs.run_all(tasks, tmp_path / "wav", seed=0, workers=2))
        except RuntimeError as e:
            outcome.append(str(e))

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(30)
    if runner.is_alive():                          # free the pool (and this test process) before failing
        for worker in multiprocessing.active_children():
            worker.kill()
        runner.join(30)
        pytest.fail("Pool.terminate waited for a worker that did not act on SIGTERM")
    assert outcome == ["vocoder failed"]
