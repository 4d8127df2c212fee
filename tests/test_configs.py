"""Every shipped config in configs/ validates: it loads against its task's schema (as main.py chooses it) with the
data paths pointed at the tiny synthetic corpus, the corpus passes the loaders' checks, and every component it
names (models and their keywords, losses, back-ends, training section, crops) resolves. Typos and unknown tasks
fail with the key named."""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
import yaml

import main as main_py
from common.cli import run_main
from common.config import ConfigError, load_config
from pipeline.recipes import config_task, task_module
from tests.pipeline_fixtures import ROOT, tiny_copies, tiny_corpus, tiny_databases

__all__ = ["tiny_copies", "tiny_corpus", "tiny_databases"]   # fixtures used by name

CONFIGS = sorted((ROOT / "configs").glob("*.conf"))


@pytest.fixture(scope="module")
def tiny_vox1(tiny_corpus, tmp_path_factory) -> Path:
    """A trial root like a VoxCeleb1 folder: the tiny corpus's VoxCeleb audio as wav/ and its trial list under every
    official VoxCeleb1 list name (O, O-clean, E, ...), so that configs naming a list resolve and load it."""
    from data.voxceleb import TRIAL_LISTS
    root = tmp_path_factory.mktemp("vox1")
    (root / "wav").symlink_to(tiny_corpus.voxceleb / "wav")
    for file in TRIAL_LISTS.values():
        (root / file).write_bytes((tiny_corpus.voxceleb / "veri_test.txt").read_bytes())
    return root


@pytest.fixture(scope="module")
def tiny_score_files(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """ASV and CM score files (SASV 2022 format) of a few labelled dev and eval trials of each class: what the
    `scores` placeholders of a score-file ablation config point at here."""
    root = tmp_path_factory.mktemp("score_files")
    files: dict[str, dict[str, Path]] = {}
    for split in ("dev", "eval"):
        rows = [(f"S{i % 3}", f"{split}_{i:03d}", "A07" if i % 3 == 2 else "bonafide",
                 ("target", "nontarget", "spoof")[i % 3]) for i in range(12)]
        files[split] = {}
        for kind, score in (("asv", lambda i: 0.1 * (i % 3 != 1) + 0.01 * i), ("cm", lambda i: 1.0 - (i % 3 == 2))):
            path = root / f"{kind}_{split}.txt"
            path.write_text("".join(f"{' '.join(r)} {score(i)!r}\n" for i, r in enumerate(rows)), encoding="utf-8")
            files[split][kind] = path
    return files


def _raw(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def data_overrides(path: Path, corpus, copies: Path | None = None, databases: dict | None = None,
                   vox1: Path | None = None, scores: dict | None = None) -> list[str]:
    """Point every data path of a config at the tiny corpus (the seed configs hold /path/to placeholders); a config
    whose `data.format` names another layout gets that layout's tiny database (`databases`: format -> folder);
    `data.trial_root` at `vox1` (a VoxCeleb1-like folder holding every official list name); a score-file ablation's
    `scores` at `scores` (split -> {asv, cm}: score files), its trial lists left out."""
    raw = _raw(path)
    if "scores" in raw:
        return [f"scores.{split}.{kind}={scores[split][kind] if kind in scores[split] else 'null'}"
                for split in ("dev", "eval") for kind in ("asv", "cm", "trials")]
    overrides = _data_overrides(raw, corpus, copies) + _encoder_overrides(raw)
    if (raw.get("data") or {}).get("trial_root") and vox1:
        overrides.append(f"data.trial_root={vox1}")
    layout = (raw.get("data") or {}).get("format", "auto")
    if layout not in ("auto", "asvspoof2019_la"):
        key = "data.database" if raw.get("task") in ("asv", "sasv_e2e") else "database"
        overrides = [o for o in overrides if not o.startswith(f"{key}=")] + [f"{key}={databases[layout]}"]
    return overrides


def _encoder_overrides(raw: dict) -> list[str]:
    """SSL encoder weights (`<asv|cm>.model.encoder.checkpoint`) are placeholders too: random encoders here."""
    return [f"{s}.model.encoder.checkpoint=null" for s in ("asv", "cm")
            if (((raw.get(s) or {}).get("model") or {}).get("encoder") or {}).get("checkpoint")]


def _data_overrides(raw: dict, corpus, copies: Path | None) -> list[str]:
    task = raw.get("task", "sasv")
    if task == "sasv_e2e":      # initial weights come from an earlier stage's run: none here
        data = raw.get("data", {})
        paths = {"voxceleb": corpus.voxceleb, "database": corpus.la, "copy_synthesis": copies}
        return [f"data.{k}={v}" for k, v in paths.items() if data.get(k)] + ["asv.checkpoint=null"]
    if task == "asv":
        data = raw.get("data", {})
        if data.get("database"):
            return [f"data.database={corpus.la}"]
        return [f"data.voxceleb={corpus.voxceleb}"]
    overrides = [f"database={corpus.la}"]
    if "enr_audio" in raw:
        overrides.append(f"enr_audio={corpus.enr_audio}")
    return overrides


def load(path: Path, overrides: list[str]) -> dict:
    """As the config's entry point does it: ablate.py for an `ablation` section (a SASV config or score files, plus
    the grid), otherwise main.py, whose `task` picks the schema; then the whole config is validated."""
    if "ablation" in _raw(path):
        from pipeline.tools.ablation.grid import load_ablation_config, parse_systems
        cfg = load_ablation_config(path, overrides)
        parse_systems(cfg)
        return cfg
    module = task_module(config_task(str(path), overrides))
    return load_config(path, overrides, module.SCHEMA)


def test_configs_folder_has_every_task():
    tasks = {_raw(p).get("task", "sasv") for p in CONFIGS}
    assert tasks == {"asv", "cm", "sasv", "sasv_e2e"}, tasks
    assert len(CONFIGS) >= 10


def _check_model_keywords(models: dict, section: dict, what: str) -> None:
    assert section["arch"] in models, f"{what}.arch {section['arch']!r} is not one of {sorted(models)}"
    unknown = set(section["model"]) - set(models[section["arch"]][1])
    assert not unknown, f"{what}.model has keywords {sorted(unknown)} that {section['arch']} does not take"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_validates_against_the_tiny_corpus(path, tiny_corpus, tiny_copies, tiny_databases, tiny_vox1,
                                                  tiny_score_files):
    import asv
    import cm
    from data.audio import CropSpec
    from data.databases import open_database
    from engine import check_train_config

    cfg = load(path, data_overrides(path, tiny_corpus, tiny_copies, tiny_databases, tiny_vox1, tiny_score_files))
    if "scores" in cfg:           # a score-file ablation: its files read and checked as ablate.py reads them
        from pipeline.tools.ablation.score_files import read_score_files
        source = read_score_files(cfg)
        assert {s: len(d.keys) for s, d in source.data.items()} == {"dev": 12, "eval": 12}
        return
    task = cfg["task"]
    check_train_config(cfg["train"]) if "train" in cfg else None
    if "asv" in cfg:
        _check_model_keywords(asv.MODELS, cfg["asv"], "asv")
        CropSpec.from_config(cfg["asv"]["crop"])
    if "cm" in cfg:
        _check_model_keywords(cm.MODELS, cfg["cm"], "cm")
        CropSpec.from_config(cfg["cm"]["crop"])

    if task == "asv":
        from asv.losses import build_loss
        from data.voxceleb import VoxCeleb
        d = cfg["data"]
        if d["voxceleb"]:
            vox = VoxCeleb.from_data_section(d)
            _, labels, speakers = vox.train_set(check=True)
            vox.check_disjoint(speakers, vox.trial_files(check=True))
        else:   # ASVspoof bona fide speech: train speakers, dev target/nontarget trials
            db = open_database(d["database"], d["format"])
            db.check_split("train")
            db.check_split("dev")
            labels = list(range(len({e.speaker for e in db.cm_entries("train") if e.label == 1})))
        embedding_dim = cfg["asv"]["model"].get("embedding_dim",
                                                asv.MODELS[cfg["asv"]["arch"]][1].get("embedding_dim", 192))
        build_loss(cfg["loss"]["name"], embedding_dim, max(labels) + 1, **cfg["loss"]["options"])
        assert d["utts_per_speaker"] >= 1
    elif task == "sasv_e2e":
        from asv.losses.sasv_e2e import SASVEmbeddingLoss
        from pipeline.recipes import sasv_e2e_task
        cfg["train"]["batch_size"] = 2   # the tiny corpus has fewer speakers than a real batch
        data = sasv_e2e_task.check(cfg)
        assert (data.spoof_class is not None) == bool(cfg["data"]["copy_synthesis"] or cfg["data"]["train_on"])
        embedding_dim = cfg["asv"]["model"].get("embedding_dim",
                                                asv.MODELS[cfg["asv"]["arch"]][1].get("embedding_dim", 192))
        SASVEmbeddingLoss(embedding_dim, len(data.class_names), data.spoof_class, **cfg["loss"])
        assert (cfg["init"]["reset_head"] is True) == (cfg["stage"] in (2, 3)), f"{path.name}: stage {cfg['stage']}"
    elif task == "cm":
        from cm.losses import build_loss
        db = open_database(cfg["database"], cfg["data"]["format"])
        for split in {*(("train", "dev") if cfg["mode"] == "train" else ()), *cfg["eval_splits"]}:
            db.check_split(split)
        ssl = "encoder" in cm.MODELS[cfg["cm"]["arch"]][1]   # sizes only: a random XLS-R 300M would take 1.3 GB
        with torch.device("meta") if ssl else contextlib.nullcontext():
            model = cm.build_model(cfg["cm"]["arch"], **cfg["cm"]["model"])
        build_loss(cfg["loss"]["name"], model.embedding_dim, **cfg["loss"]["options"])
    else:
        from fusion import backend_class
        from pipeline.stages.backend import ready_backend
        from pipeline.stages.experiment import check_trials
        assert cfg["mode"] in ("frozen", "joint") and cfg["enrolment"] in ("lists", "concat")
        db = open_database(cfg["database"], cfg["data"]["format"], cfg["enr_audio"])
        concat = cfg["enrolment"] == "concat"
        for split in cfg["splits"]:
            db.check_split(split, enr_audio=concat)
        check_trials(db, cfg["splits"])
        if concat:
            assert Path(cfg["enr_audio"]) == tiny_corpus.enr_audio
        name = cfg["backend"]["name"]
        if backend_class(name).score_level:
            assert cfg["mode"] == "frozen", f"{path.name}: joint mode needs an embedding back-end"
            from fusion import build_backend
            build_backend(name, **cfg["backend"]["options"])
        else:
            embedding_dim = cfg["asv"]["model"].get("embedding_dim", 192)
            ready_backend(cfg, dims=(embedding_dim, 160), for_training=True)
            if cfg["mode"] == "frozen":
                assert "train" in cfg["splits"], f"{path.name}: a trained back-end needs the train split"
                assert cfg["sampling"]["scheme"] in ("2class", "4class", "baseline2")
            else:
                assert cfg["sampling"]["scheme"] in ("2class", "4class")


@pytest.mark.parametrize("path,typo", [("configs/quickstart.conf", "backend.optoins={}"),
                                       ("configs/quickstart_asv.conf", "train.optimizer.lrr=0.1"),
                                       ("configs/cm_AASIST.conf", "cm.crop.sampels=100"),
                                       ("configs/sasv_baseline1.conf", "enrollment=lists")])
def test_typo_in_override_names_the_key(path, typo, tiny_corpus):
    overrides = [*data_overrides(ROOT / path, tiny_corpus), typo]
    with pytest.raises(ConfigError) as e:
        load(ROOT / path, overrides)
    message = str(e.value)
    assert f"'{typo.split('=')[0]}'" in message and "\n" not in message


def test_typo_in_config_file_names_the_key(tmp_path, tiny_corpus):
    text = (ROOT / "configs" / "quickstart.conf").read_text().replace("  scheme: 2class", "  schem: 2class")
    (tmp_path / "typo.conf").write_text(text)
    with pytest.raises(ConfigError, match=r"unknown key 'sampling\.schem'"):
        load(tmp_path / "typo.conf", data_overrides(ROOT / "configs" / "quickstart.conf", tiny_corpus))


def test_wrong_type_names_the_key(tiny_corpus):
    with pytest.raises(ConfigError, match=r"'train\.epochs' must be an integer >= 1, got 'many'"):
        load(ROOT / "configs" / "quickstart.conf", [f"database={tiny_corpus.la}", "train.epochs=many"])


def test_unknown_task_fails(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"'task' must be one of asv, cm, sasv, sasv_e2e, got 'speaker'"):
        load(ROOT / "configs" / "quickstart.conf", ["task=speaker"])
    (tmp_path / "x.conf").write_text("task: diarisation\noutput_dir: out\n")
    rc = run_main(main_py.main, ["--config", str(tmp_path / "x.conf")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: ") and "diarisation" in err and "\n" not in err
