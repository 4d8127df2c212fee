"""The single-embedding SASV system (task sasv_e2e): its loss, its pair sampler, speed perturbation, and the
recipe's refusals of bad input. The three stages end to end are in tests/test_sasv_e2e_stages.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asv.losses.aamsoftmax import AAMSoftmax
from asv.losses.angleproto import AngleProto
from asv.losses.sasv_e2e import SASVEmbeddingLoss
from common.errors import InputError
from data.augment import SpeedPerturb, speed_perturb
from data.samplers import SASVPairSampler
from tests.pipeline_fixtures import assert_one_line_error, call, copy_corpus, tiny_corpus

__all__ = ["tiny_corpus"]   # fixture used by name

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# Loss
# ------------------------------------------------------------------------------------------------
def test_without_spoofs_the_loss_is_aam_softmax_plus_angular_prototypical():
    torch.manual_seed(0)
    x, label = torch.randn(5, 2, 16), torch.tensor([0, 3, 1, 4, 2])
    loss = SASVEmbeddingLoss(16, 5)
    aam, proto = AAMSoftmax(16, 5), AngleProto()
    aam.weight.data.copy_(loss.aamsoftmax.weight.data)
    # AngleProto classifies utterance 0 against the centroids of the others: with pairs, the same as ours
    expected = aam(x, label)[0] + proto(x)[0]
    torch.testing.assert_close(loss(x, label)[0], expected)


def test_spoofs_claiming_a_speaker_are_its_negatives():
    """A spoof pair that lies on a speaker's prototype makes the prototypical term worse; one far away does not
    matter; the spoof class is trained by the classification term."""
    torch.manual_seed(1)
    bona = F.normalize(torch.randn(4, 1, 8), dim=-1).repeat(1, 2, 1)     # each pair: one direction per speaker
    label = torch.tensor([0, 1, 2, 3, 4, 4])
    loss = SASVEmbeddingLoss(8, 5, spoof_class=4)
    near = torch.cat((bona, bona[:2]))                                    # spoofs equal to speakers 0 and 1
    far = torch.cat((bona, -bona[:2]))

    def prototypical(x):
        return loss(x, label)[0] - loss.aamsoftmax(x, label)[0]
    assert prototypical(near) > prototypical(far) + 0.1
    # the spoof rows carry the spoof class in the classification term: their gradient reaches the spoof weight
    loss.zero_grad()
    loss(far, label)[0].backward()
    assert loss.aamsoftmax.weight.grad[4].abs().sum() > 0


def test_loss_refuses_bad_batches():
    loss = SASVEmbeddingLoss(8, 5, spoof_class=4)
    with pytest.raises(InputError, match="bona fide pairs must come first"):
        loss(torch.randn(4, 2, 8), torch.tensor([4, 0, 1, 2]))
    with pytest.raises(InputError, match="at least 2 bona fide"):
        loss(torch.randn(3, 2, 8), torch.tensor([0, 4, 4]))
    with pytest.raises(InputError, match="spoof_class 5"):
        SASVEmbeddingLoss(8, 5, spoof_class=5)


# ------------------------------------------------------------------------------------------------
# Sampler
# ------------------------------------------------------------------------------------------------
def _items():
    """6 speakers x 4 bona fide utterances, then spoofs: speakers 0-3 claimed by 3 each, speaker 4 by one."""
    speakers = [s for s in range(6) for _ in range(4)] + [s for s in range(4) for _ in range(3)] + [4]
    spoof = [False] * 24 + [True] * 13
    return np.array(speakers), np.array(spoof)


def test_pair_sampler_layout():
    speakers, spoof = _items()
    sampler = SASVPairSampler(speakers, spoof, bona_pairs=3, spoof_pairs=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4               # 6 speakers x 2 pairs / 3 pairs a batch
    seen = []
    for batch in batches:
        bona, spoofs = np.array(batch[:6]).reshape(3, 2), np.array(batch[6:]).reshape(2, 2)
        assert not spoof[bona].any() and spoof[spoofs].all()
        assert (speakers[bona[:, 0]] == speakers[bona[:, 1]]).all() and len(set(speakers[bona[:, 0]])) == 3
        assert (speakers[spoofs[:, 0]] == speakers[spoofs[:, 1]]).all() and (spoofs[:, 0] != spoofs[:, 1]).all()
        claimed, in_batch = set(speakers[spoofs[:, 0]]), set(speakers[bona[:, 0]])
        # spoofs claim the batch's own speakers when any of them has two spoofs (4 never does, 5 has none)
        assert claimed <= in_batch if in_batch & {0, 1, 2, 3} else claimed <= {0, 1, 2, 3}
        seen += bona.ravel().tolist()
    assert len(seen) == len(set(seen)) == 24                # one pass over the bona fide items
    sampler.set_epoch(0)
    assert list(sampler) == batches                         # deterministic
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_pair_sampler_ranks_and_errors():
    speakers, spoof = _items()
    ranks = [list(SASVPairSampler(speakers, spoof, 3, 1, seed=5, rank=r, world_size=2)) for r in range(2)]
    everything = list(SASVPairSampler(speakers, spoof, 3, 1, seed=5))
    assert len(ranks[0]) == len(ranks[1]) == len(everything) // 2 >= 1
    usable = everything[:len(everything) - len(everything) % 2]         # every rank gets as many batches
    assert ranks[0] == usable[0::2] and ranks[1] == usable[1::2]
    with pytest.raises(ValueError, match="no speaker is claimed by two"):
        SASVPairSampler(speakers[:25], spoof[:25], 3, 1)
    assert len(list(SASVPairSampler(speakers[:24], spoof[:24], 3, 0))[0]) == 6   # stage 1: no spoofs needed


# ------------------------------------------------------------------------------------------------
# Speed perturbation
# ------------------------------------------------------------------------------------------------
def test_speed_perturbation():
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    fast = speed_perturb(tone, 1.1)
    assert abs(len(fast) - 16000 / 1.1) <= 1
    spectrum = np.abs(np.fft.rfft(fast[:8000]))
    assert abs(np.argmax(spectrum) * 2 - 220) <= 4          # 200 Hz played 1.1x faster: 220 Hz
    perturb = SpeedPerturb([0.9, 1.0, 1.1], 8000)
    assert perturb.input_samples == 8800
    rng = np.random.default_rng(0)
    outs = [perturb(tone[:perturb.input_samples], rng) for _ in range(6)]
    assert all(len(o) == 8000 and o.dtype == np.float32 for o in outs)
    with pytest.raises(InputError, match="factors"):
        SpeedPerturb([3.0], 8000)


# ------------------------------------------------------------------------------------------------
# The recipe's refusals (main.py task sasv_e2e on the tiny corpus): one line each, nothing written
# ------------------------------------------------------------------------------------------------
TINY_STAGE3 = ["--config", "configs/quickstart_sasv2_stage3.conf", "asv.checkpoint=null", "init.reset_head=false",
               "asv.model={C: 16, embedding_dim: 16}", "train.epochs=1", "train.batch_size=2",
               "sampler.spoof_pairs=2", "train.progress=false", "train.precise_bn_batches=0",
               "data.train_samples=32000"]     # 2 s crops of 1-1.5 s files: repeat-padded, as elsewhere


def _main(argv):
    import main as main_py
    from common.cli import run_main
    return run_main(main_py.main, argv)


def _break_protocol(corpus, tmp_path, speaker: str):
    """A copy of the tiny corpus whose first spoofed train line claims `speaker`; (corpus, protocol, line)."""
    broken = copy_corpus(corpus, tmp_path / "broken")
    protocol = broken.la / "ASVspoof2019_LA_cm_protocols" / "ASVspoof2019.LA.cm.train.trn.txt"
    lines = protocol.read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.endswith(" spoof"))
    lines[number] = " ".join([speaker, *lines[number].split()[1:]])
    protocol.write_text("\n" + "\n".join(lines) + "\n")   # a blank first line: the message counts it, as editors do
    return broken, protocol, number + 2


@pytest.mark.parametrize("speaker,needle", [("-", "claims no speaker"), ("LA_9999", "claims speaker LA_9999")])
def test_spoof_without_a_trained_claimed_speaker_is_one_line(tiny_corpus, tmp_path, capsys, speaker, needle):
    broken, protocol, number = _break_protocol(tiny_corpus, tmp_path, speaker)
    out = tmp_path / "out"
    rc, err = call(_main, [*TINY_STAGE3, f"data.database={broken.la}", f"output_dir={out}"], capsys)
    assert rc == 2
    assert_one_line_error(err, str(protocol), f"line {number}", needle)
    assert not out.exists()


def test_head_of_another_class_set_needs_reset_head(tiny_corpus, tmp_path, capsys):
    """A stage-3 run exports a 4 + 1 class head; starting a run with another class set from it is refused
    unless init.reset_head, before anything is written; with it the run trains (2 s crops of 1-1.5 s audio)."""
    first = tmp_path / "first"
    assert call(_main, [*TINY_STAGE3, f"data.database={tiny_corpus.la}", f"output_dir={first}"], capsys)[0] == 0
    exported = first / "sasv_embedding.pt"
    results = json.loads((first / "results.json").read_text())
    assert results["classes"] == 5 and "eval" in results and results["selected_on"].startswith("dev_sasv_eer")
    second = tmp_path / "second"
    other = [*TINY_STAGE3, f"data.database={tiny_corpus.la}", f"output_dir={second}", f"asv.checkpoint={exported}",
             f"data.voxceleb={tiny_corpus.voxceleb}"]          # + the VoxCeleb speakers: another class set
    rc, err = call(_main, other, capsys)
    assert rc == 2
    assert_one_line_error(err, str(exported), "its head has 5 classes", "init.reset_head=true")
    assert not second.exists()
    assert call(_main, [*other, "init.reset_head=true"], capsys)[0] == 0
    assert (second / "sasv_embedding.pt").is_file() and (second / "scores" / "sasv_eval.txt").is_file()


@pytest.mark.parametrize("override,needle", [
    ("data.train_on=[train, eval]",
     "'data.train_on' must be a list without repeats, each one of train, dev, got ['train', 'eval']"),
    ("data.train_on=[train, dev]", "dev is in data.train_on"),
    ("train.select_metric=eer", "VoxCeleb trial-list metric"),
    ("data.train_on=[]", "no training data"),
])
def test_selection_and_split_rules(tiny_corpus, tmp_path, capsys, override, needle):
    out = tmp_path / "out"
    rc, err = call(_main, [*TINY_STAGE3, f"data.database={tiny_corpus.la}", f"output_dir={out}", override], capsys)
    assert rc == 2
    assert_one_line_error(err, needle)
    assert not out.exists()


def test_train_and_dev_select_on_the_training_loss(tiny_corpus, tmp_path, capsys):
    """The published best setting: train+dev (4 + 4 speakers + spoof), selection by training loss, said so."""
    out = tmp_path / "out"
    rc, err = call(_main, [*TINY_STAGE3, f"data.database={tiny_corpus.la}", f"output_dir={out}",
                           "data.train_on=[train, dev]", "train.select_metric=train_loss"], capsys)
    assert rc == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["classes"] == 9
    assert results["selected_on"].startswith("training loss")
    assert "dev is in the training data" in results["selected_on"]
    assert "dev is in the training data" in err


def test_dev_is_scored_once_per_evaluated_epoch(tiny_corpus, tmp_path, monkeypatch):
    """The final scoring reuses the selected epoch's dev scores (SASVEmbeddingTask.memo): scores/sasv_dev.txt
    is byte for byte what a fresh scoring of the exported network writes."""
    from asv import build_model
    from asv.checkpoint import load_asv_state
    from common.config import load_config
    from data.asvspoof import LADatabase
    from data.score_files import write_sasv_scores
    from pipeline.recipes import sasv_e2e_task
    from pipeline.stages.experiment import resolve_device
    from pipeline.stages.trials import sasv_rows

    scorer_class, calls = sasv_e2e_task.SASVTrialScorer, []
    score = scorer_class.score
    monkeypatch.setattr(scorer_class, "score", lambda self, model, device:
                        calls.append(self.split) or score(self, model, device))
    out = tmp_path / "out"
    cfg = load_config(TINY_STAGE3[1], [*TINY_STAGE3[2:], f"data.database={tiny_corpus.la}", f"output_dir={out}",
                                       "train.epochs=2", "train.eval_every=1"], sasv_e2e_task.SCHEMA)
    results = sasv_e2e_task.run(cfg)
    assert calls == ["dev", "dev", "eval"], f"best epoch {results['best_epoch']}: scored {calls}"

    model = build_model(cfg["asv"]["arch"], **cfg["asv"]["model"])
    load_asv_state(model, None, out / "sasv_embedding.pt")
    device = resolve_device(cfg["train"]["device"])
    scorer = scorer_class(cfg, LADatabase(cfg["data"]["database"], cfg["enr_audio"]), "dev")
    with torch.no_grad():
        fresh = score(scorer, model.to(device).eval(), device)
    write_sasv_scores(tmp_path / "fresh_dev.txt", sasv_rows(scorer.trials, fresh))
    assert (tmp_path / "fresh_dev.txt").read_bytes() == (out / "scores" / "sasv_dev.txt").read_bytes()
