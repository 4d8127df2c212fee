"""SSL-AASIST: size, output contract, frozen and fine-tuned encoders, the encoder's learning rate, checkpoints, and
one training step of the cm task on the tiny synthetic corpus."""
from __future__ import annotations

import pytest
import torch

import cm
from cm.checkpoint import load_cm_state, save_cm_state
from cm.losses import build_loss
from common.errors import InputError
from engine import load_checkpoint
from engine.optim import build_optimizer, resolve_param_groups
from engine.schema import train_config
from pipeline.recipes.cm_task import CMNet, CMTask
from tests.pipeline_fixtures import CROP, TINY_CM, call, flow, tiny_corpus  # noqa: F401 (fixture)
from tests.ssl_fixtures import fairseq_state

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_ENCODER = dict(extractor_conv_layer_config=[[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2,
                    encoder_embed_dim=32, encoder_pos_conv_kernel=16, encoder_pos_conv_groups=2,
                    encoder_num_layers=2, encoder_num_heads=2, encoder_ff_interm_features=64, encoder_layer_drop=0.0)
BACK_END = dict(filts=[24, [1, 8], [8, 8], [8, 8], [8, 8]], gat_dims=[8, 8])


def tiny(seed: int = 0, **encoder) -> torch.nn.Module:
    torch.manual_seed(seed)
    section = {"name": "wav2vec2_model", "options": TINY_ENCODER, "lr": 1e-4, **encoder}
    return cm.build_model("SSL-AASIST", encoder=section, **BACK_END)


def wave(n: int = 4800, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(7))


def test_the_papers_model_has_xlsr_300m_and_the_papers_back_end():
    with torch.device("meta"):
        model = cm.build_model("SSL-AASIST")
    encoder = sum(p.numel() for p in model.ssl_model.parameters())
    back_end = sum(p.numel() for p in model.parameters()) - encoder
    assert model.ssl_model.name == "wav2vec2_xlsr_300m" and model.ssl_model.layer == "last"
    assert not model.ssl_model.frozen and model.ssl_model.lr == 1e-6 and model.embedding_dim == 160
    assert encoder == 315_437_696
    # TakHemlata/SSL_Anti-spoofing model.py less its fairseq model, counted layer by layer: LL 131,200, BatchNorms
    # 130, residual encoder 211,072, node attention 16,832, pos_S 2,688, master nodes 128, two GAT layers 25,344,
    # four heterogeneous layers 59,264, six graph pools 262, output 322
    assert back_end == 447_242


def test_forward_backward_and_the_cm_output_contract():
    model = tiny(freeze=False).train()
    embedding, logits = model(wave())
    assert embedding.shape == (3, 40) == (3, model.embedding_dim) and logits.shape == (3, 2)
    (logits[:, 1] - logits[:, 0]).sum().backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) == (".bn1." in name), name   # AASIST's residual blocks never use bn1 (cm.aasist)
    model.eval()
    with torch.no_grad():
        embedding, logits = model(wave())
        torch.testing.assert_close(model.logits_from_embedding(embedding), logits)
        assert model(wave(500))[1].shape == (3, 2)         # shorter than 3 encoder frames: repeat-padded
    assert model.min_samples == 1 and model.ssl_model.samples_for(3) == 1040


def test_frozen_encoder_gets_no_gradient_and_stays_in_eval_mode():
    model = tiny(freeze=True).train()
    assert not model.ssl_model.model.training and model.LL.training
    _, logits = model(wave())
    logits.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.ssl_model.model.parameters())
    assert model.LL.weight.grad is not None and model.out_layer.weight.grad is not None


def test_the_cm_task_gives_the_encoder_its_lr_and_fine_tunes_from_the_configured_epoch():
    optimizer_cfg = train_config({"optimizer": {"lr": 1e-3}})["optimizer"]
    for freeze, lrs in ((False, [1e-3, 1e-4]), (1, [1e-3, 1e-4]), (True, [1e-3])):
        net = CMNet(tiny(freeze=freeze), build_loss("WeightedCE", 40))
        task = CMTask({}, None)
        optimizer = build_optimizer(resolve_param_groups(net, task), optimizer_cfg)
        assert [g["lr"] for g in optimizer.param_groups] == lrs, freeze
        task.on_epoch_start(net, 1)
        assert net.model.ssl_model.frozen == (freeze is True)
    lcnn = CMNet(cm.build_model("LCNN"), build_loss("WeightedCE", 128))
    assert len(resolve_param_groups(lcnn, CMTask({}, None))) == 1


def test_checkpoint_round_trip_and_another_architecture(tmp_path):
    model = tiny(freeze=False, layer="weighted").eval()
    save_cm_state(tmp_path / "ssl.pt", model)
    loaded = tiny(seed=1, freeze=False, layer="weighted").eval()
    load_cm_state(loaded, tmp_path / "ssl.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave())[1], model(wave())[1])
    save_cm_state(tmp_path / "aasist.pt", cm.build_model("AASIST-L", **TINY_CM))
    with pytest.raises(InputError) as e:
        load_cm_state(loaded, tmp_path / "aasist.pt")
    message = str(e.value)
    assert "\n" not in message and "does not fit the SSL-AASIST model" in message
    assert "missing keys (LL.bias, LL.weight" in message and "mis-shaped keys (pos_S" in message


def test_the_papers_released_layout_loads_fairseq_encoder_names(tmp_path):
    """LA_model.pth of TakHemlata/SSL_Anti-spoofing: a bare state dict, the fairseq XLS-R (pre-training heads
    included) under ssl_model.model. in fairseq's names, the back-end in ours."""
    model = tiny(freeze=False).eval()
    encoder = fairseq_state(model.ssl_model, wavlm=False, layer_norm=False)
    assert "ssl_model.model.post_extract_proj.weight" not in model.state_dict()
    back_end = {k: v for k, v in model.state_dict().items() if not k.startswith("ssl_model.")}
    torch.save({**back_end, **{f"ssl_model.model.{k}": v for k, v in encoder.items()}}, tmp_path / "LA_model.pth")
    loaded = tiny(seed=1, freeze=False).eval()
    load_cm_state(loaded, tmp_path / "LA_model.pth")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with torch.no_grad():
        torch.testing.assert_close(loaded(wave())[1], model(wave())[1])
    # an encoder of another size in the same layout: one line naming what does not fit
    other = tiny(options={**TINY_ENCODER, "encoder_ff_interm_features": 48})
    encoder = fairseq_state(other.ssl_model, wavlm=False, layer_norm=False)
    torch.save({**back_end, **{f"ssl_model.model.{k}": v for k, v in encoder.items()}}, tmp_path / "other.pth")
    with pytest.raises(InputError) as e:
        load_cm_state(loaded, tmp_path / "other.pth")
    message = str(e.value)
    assert "\n" not in message and "other.pth" in message and "mis-shaped keys" in message
    assert "ssl_model.model.encoder.transformer.layers.0.feed_forward" in message


def test_the_cm_task_trains_ssl_aasist_for_one_step(tiny_corpus, tmp_path, capsys):  # noqa: F811
    import main as main_py
    from engine import seed_everything

    model_options = {"encoder": {"name": "wav2vec2_model", "options": TINY_ENCODER, "freeze": False, "lr": 1e-4},
                     **BACK_END}
    out = tmp_path / "cm"
    rc, err = call(main_py.main, [
        "--config", "configs/quickstart_cm.conf", f"database={tiny_corpus.la}", f"output_dir={out}",
        "cm.arch=SSL-AASIST", f"cm.model={flow(model_options)}", "cm.crop.policy=first", f"cm.crop.samples={CROP}",
        f"data.train_samples={CROP}", "train.epochs=1", "train.batch_size=28", "train.precise_bn_batches=0",
        "train.progress=false", "train.optimizer.lr=0.001"], capsys)
    assert rc == 0, err
    last = load_checkpoint(out / "last.pt")
    assert last["global_step"] == 1
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [1e-3, 1e-4]
    seed_everything(0)                                     # the task's initial weights: seeded by train.seed
    initial = cm.build_model("SSL-AASIST", **model_options)
    trained = cm.build_model("SSL-AASIST", **model_options)
    load_cm_state(trained, out / "cm_model.pt")
    moved = [not torch.equal(a, b) for a, b in zip(initial.ssl_model.model.parameters(),
                                                   trained.ssl_model.model.parameters(), strict=True)]
    assert sum(moved) > len(moved) // 2                    # the encoder was fine-tuned
