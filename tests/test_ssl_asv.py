"""Speaker models on SSL encoders (SSL-ECAPA, SSL-MHFA): sizes, output contract, eval-mode determinism, frozen and
weighted-layer training, the encoder's learning rate and freeze-from-epoch in the asv / sasv_e2e / joint tasks,
checkpoints, resampled 8 kHz audio, and one training step of task asv on the tiny synthetic corpus."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

import asv
import cm
from asv.checkpoint import load_asv_state, save_asv_state
from asv.losses import build_loss
from common.errors import InputError
from data.audio import load_audio
from engine import load_checkpoint
from engine.optim import build_optimizer, resolve_param_groups
from engine.schema import train_config
from pipeline.recipes.asv_task import ASVTask, SpeakerNet, TrialList
from pipeline.recipes.joint import JointSASV, JointTask
from pipeline.recipes.sasv_e2e_task import SASVEmbeddingTask
from tests.pipeline_fixtures import call, flow, tiny_corpus  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

# The published CNN geometry (400-sample field, 320 hop) with 16 channels, a 2-layer 32-d transformer, no dropout.
TINY = dict(extractor_conv_layer_config=[[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2, encoder_embed_dim=32,
            encoder_pos_conv_kernel=16, encoder_pos_conv_groups=2, encoder_num_layers=2, encoder_num_heads=2,
            encoder_ff_interm_features=64, encoder_projection_dropout=0.0, encoder_attention_dropout=0.0,
            encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_drop=0.0)
KINDS = {"wav2vec2": {"name": "wav2vec2_model", "options": TINY},
         "wavlm": {"name": "wavlm_model", "options": {**TINY, "encoder_num_buckets": 16, "encoder_max_distance": 32}}}
HEADS = {"SSL-ECAPA": {"C": 16, "embedding_dim": 8}, "SSL-MHFA": {"heads": 4, "compression_dim": 8, "embedding_dim": 8}}
ARCHS = list(HEADS)


def tiny(arch: str, kind: str = "wav2vec2", seed: int = 0, **encoder) -> torch.nn.Module:
    torch.manual_seed(seed)
    return asv.build_model(arch, encoder={**KINDS[kind], "lr": 1e-4, **encoder}, **HEADS[arch])


def wave(n: int = 4000, batch: int = 3, seed: int = 7) -> torch.Tensor:
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(seed))


def layer_weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [model.weights_k, model.weights_v] if hasattr(model, "weights_k") else [model.encoder.layer_weights]


def test_defaults_are_wavlm_base_plus_frozen_with_the_published_heads():
    with torch.device("meta"):
        ecapa, mhfa = asv.build_model("SSL-ECAPA"), asv.build_model("SSL-MHFA")
    for model, layer, head in ((ecapa, "weighted", 8_936_269), (mhfa, "last", 1_249_850)):
        enc = model.encoder
        encoder = sum(p.numel() for p in enc.model.parameters())
        assert (enc.name, enc.layer, enc.frozen, enc.num_layers, enc.embed_dim) == ("wavlm_base_plus", layer, True, 12,
                                                                                   768)
        assert encoder == 94_381_168 and sum(p.numel() for p in model.parameters()) - encoder == head
    assert (ecapa.embedding_dim, mhfa.embedding_dim, mhfa.weights_k.shape) == (256, 256, (13,))
    # MHFA (the paper's code): 2 x (768 x 128 + 128) compressions, 128 x 32 + 32 heads, 32 x 128 x 256 + 256 output
    assert 2 * (768 * 128 + 128) + 128 * 32 + 32 + 32 * 128 * 256 + 256 + 2 * 13 == 1_249_850


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("arch", ARCHS)
def test_output_contract_and_eval_mode_determinism(arch, kind):
    model = tiny(arch, kind).eval()
    x = wave()
    with torch.no_grad():
        a, b = model(x), model(x)
        single = model(x[1:2])
        short = model(wave(300, batch=2))            # shorter than one encoder frame: repeat-padded
    assert a.shape == (3, 8) == (3, model.embedding_dim) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.equal(a, b) and model.min_samples == 1 and short.shape == (2, 8)
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-5)   # no batch leakage in eval mode


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_encoder_gets_no_gradient_while_the_head_and_layer_weights_do(arch):
    model = tiny(arch, freeze=True).train()
    enc = model.encoder
    assert not enc.model.training and model.training
    model(wave()).pow(2).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in enc.model.parameters())
    head = [p for n, p in model.named_parameters() if not n.startswith("encoder.model.")]
    assert all(p.grad is not None for p in head)
    assert all(w.grad.abs().sum() > 0 for w in layer_weights(model))


@pytest.mark.parametrize("arch", ARCHS)
def test_the_layer_weights_train(arch):
    model = tiny(arch, freeze=True).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        model(wave()).pow(2).sum().backward()
        optimizer.step()
    for w in layer_weights(model):
        assert w.shape == (3,) and not torch.allclose(torch.softmax(w.detach(), 0), torch.full((3,), 1 / 3))


def test_mhfa_takes_no_encoder_layer_and_checks_its_sizes():
    with pytest.raises(InputError, match=r"^SSL-MHFA: encoder.layer is 'weighted'.*leave encoder.layer out$"):
        tiny("SSL-MHFA", layer="weighted")
    with pytest.raises(InputError, match="heads must be a positive integer"):
        asv.build_model("SSL-MHFA", encoder=KINDS["wav2vec2"], heads=0)
    with pytest.raises(InputError, match="C must be a multiple of the Res2 scale 8"):
        asv.build_model("SSL-ECAPA", encoder=KINDS["wav2vec2"], C=12)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_asv_and_sasv_e2e_tasks_give_the_encoder_its_lr_and_fine_tune_from_the_epoch(arch):
    optimizer_cfg = train_config({"optimizer": {"lr": 1e-3}})["optimizer"]
    tasks = (ASVTask({}, TrialList([], {})), SASVEmbeddingTask({}, None, None))
    for task in tasks:
        for freeze, lrs in ((False, [1e-3, 1e-4]), (1, [1e-3, 1e-4]), (True, [1e-3])):
            model = tiny(arch, freeze=freeze)
            net = SpeakerNet(model, build_loss("aamsoftmax", 8, 5), 1)
            groups = build_optimizer(resolve_param_groups(net, task), optimizer_cfg).param_groups
            assert [g["lr"] for g in groups] == lrs, (type(task).__name__, freeze)
            assert all(any(w is p for p in groups[0]["params"]) for w in layer_weights(model))   # the head's lr
            task.on_epoch_start(net, 1)
            assert model.encoder.frozen == (freeze is True)
        plain = SpeakerNet(asv.build_model("ResNetSE34L", embedding_dim=8, channels=[8, 8, 16, 32]),
                           build_loss("softmax", 8, 5), 1)
        assert len(resolve_param_groups(plain, task)) == 1


def test_joint_param_groups_keep_a_frozen_encoder_frozen_and_give_encoders_their_lr():
    speaker = tiny("SSL-ECAPA", freeze=True)
    ssl_cm = cm.build_model("SSL-AASIST", encoder={**KINDS["wav2vec2"], "freeze": False, "lr": 1e-4},
                            filts=[24, [1, 8], [8, 8], [8, 8], [8, 8]], gat_dims=[8, 8])
    optimizer_cfg = train_config({"optimizer": {"lr": 1e-3}})["optimizer"]
    for freeze_asv, freeze_cm, lrs in ((False, False, [1e-3, 1e-5, 1e-4]), (True, False, [1e-3, 1e-5, 1e-4]),
                                       (False, True, [1e-3, 1e-5]), (True, True, [1e-3])):
        net = JointSASV(speaker, ssl_cm, torch.nn.Linear(4, 2))
        task = JointTask({"joint": {"freeze_asv": freeze_asv, "freeze_cm": freeze_cm, "frontend_lr": 1e-5}})
        groups = build_optimizer(resolve_param_groups(net, task), optimizer_cfg).param_groups
        assert [g["lr"] for g in groups] == lrs, (freeze_asv, freeze_cm)
        assert not any(p.requires_grad for p in speaker.encoder.model.parameters())   # freeze: true stays frozen
        assert speaker.conv1.weight.requires_grad != freeze_asv
        assert all(p.requires_grad != freeze_cm for p in ssl_cm.ssl_model.model.parameters())
        if not freeze_cm:
            assert {id(p) for p in groups[-1]["params"]} == {id(p) for p in ssl_cm.ssl_model.model.parameters()}
    task.on_epoch_start(net, 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip(arch, tmp_path):
    model = tiny(arch, "wavlm").eval()
    loss = build_loss("aamsoftmax", 8, 5)
    save_asv_state(tmp_path / "asv_model.pt", model, loss, arch=arch, model_config=json.dumps(HEADS[arch]))
    loaded, loaded_loss = tiny(arch, "wavlm", seed=1).eval(), build_loss("aamsoftmax", 8, 5)
    report = load_asv_state(loaded, loaded_loss, tmp_path / "asv_model.pt", strict=True)
    assert report.layout == "ours"
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave()), model(wave()))
    torch.testing.assert_close(loaded_loss.weight, loss.weight)
    ecapa = asv.build_model("ECAPA-TDNN", C=16, embedding_dim=8)
    with pytest.raises(InputError) as e:
        load_asv_state(ecapa, None, tmp_path / "asv_model.pt")
    message = str(e.value)
    assert "\n" not in message and f"is this a {arch}" in message


@pytest.mark.parametrize("arch", ARCHS)
def test_8khz_audio_is_resampled_by_the_loader_and_runs(arch, tmp_path):
    t = np.arange(4000) / 8000
    sf.write(tmp_path / "narrowband.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)
    x = load_audio(tmp_path / "narrowband.wav")
    assert x.dtype == np.float32 and len(x) == 8000
    with torch.no_grad():
        out = tiny(arch).eval()(torch.from_numpy(x)[None])
    assert out.shape == (1, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_main_task_asv_trains_for_one_step(arch, tiny_corpus, tmp_path, capsys):  # noqa: F811
    import main as main_py
    from engine import seed_everything
    from pipeline.stages.frontends import build_asv

    model_options = {"encoder": {**KINDS["wavlm"], "freeze": False, "lr": 1e-4}, **HEADS[arch]}
    out = tmp_path / "asv"
    rc, err = call(main_py.main, [
        "--config", "configs/quickstart_asv.conf", f"data.voxceleb={tiny_corpus.voxceleb}", f"output_dir={out}",
        f"asv.arch={arch}", f"asv.model={flow(model_options)}", "data.train_samples=8000", "loss.name=aamsoftmax",
        "train.epochs=1", "train.batch_size=6", "train.precise_bn_batches=0", "train.progress=false",
        "train.optimizer.lr=0.001"], capsys)
    assert rc == 0, err
    last = load_checkpoint(out / "last.pt")
    assert last["global_step"] >= 1
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [1e-3, 1e-4]
    seed_everything(0)                                     # the task's initial weights: seeded by train.seed
    initial = asv.build_model(arch, **model_options)
    trained = build_asv({"arch": arch, "model": model_options, "checkpoint": str(out / "asv_model.pt"),
                         "crop": {"policy": "full"}})
    moved = [not torch.equal(a, b) for a, b in zip(initial.encoder.model.parameters(),
                                                   trained.encoder.model.parameters(), strict=True)]
    assert sum(moved) > len(moved) // 2                    # the encoder was fine-tuned
    assert all(not torch.equal(a, b) for a, b in zip(layer_weights(initial), layer_weights(trained), strict=True))
    assert json.loads((out / "results.json").read_text())["eer"] >= 0
