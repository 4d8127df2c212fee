"""SSL encoders (`ssl_models`): layer choice, freezing, fine-tuning from an epoch, parameter groups, gradient
checkpointing, the padding rule, and weights in the Hugging Face, fairseq and torchaudio layouts (written here from
tiny random models by inverting torchaudio's mappings) reproducing the original outputs."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch

import ssl_models
from common.errors import InputError, MissingFilesError
from engine.optim import build_optimizer, resolve_param_groups
from engine.schema import train_config
from ssl_models import ENCODERS, build_encoder
from ssl_models.checkpoint import architecture
from tests.ssl_fixtures import fairseq_state

pytestmark = pytest.mark.usefixtures("one_thread")

# The published CNN's kernels and strides (receptive field 400, hop 320) with 16 channels; a 2-layer transformer.
CONV = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2
TINY = dict(extractor_conv_layer_config=CONV, encoder_embed_dim=32, encoder_pos_conv_kernel=16,
            encoder_pos_conv_groups=2, encoder_num_layers=2, encoder_num_heads=2, encoder_ff_interm_features=64)
QUIET = dict(encoder_projection_dropout=0.0, encoder_attention_dropout=0.0, encoder_ff_interm_dropout=0.0,
             encoder_dropout=0.0, encoder_layer_drop=0.0)   # deterministic training-mode outputs
WAVLM = dict(encoder_num_buckets=16, encoder_max_distance=32)
PRE_LN = dict(extractor_mode="layer_norm", extractor_conv_bias=True, encoder_layer_norm_first=True)  # XLS-R style
KINDS = {"wav2vec2": ("wav2vec2_model", {}), "wavlm": ("wavlm_model", WAVLM), "pre_ln": ("wav2vec2_model", PRE_LN)}


def tiny(kind: str = "wav2vec2", seed: int = 0, **section) -> ssl_models.SSLEncoder:
    name, extra = KINDS[kind]
    torch.manual_seed(seed)
    options = {**TINY, **extra, **section.pop("options", {})}
    return build_encoder(name=name, **{"layer": "last", "freeze": False, **section}, options=options)


def wave(n: int = 4000, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, n, generator=torch.Generator().manual_seed(seed))


def calls(module: torch.nn.Module) -> list[bool]:
    """A list that gets the grad mode each time `module`'s forward starts (a pre-hook: recomputation by gradient
    checkpointing stops early, before a forward hook would run)."""
    seen: list[bool] = []
    module.register_forward_pre_hook(lambda *_: seen.append(torch.is_grad_enabled()))
    return seen


def one_line(error: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


# ------------------------------------------------------------------------------------------------ layers
@pytest.mark.parametrize("kind", list(KINDS))
def test_hidden_states_are_torchaudios_layers_and_last_is_its_output(kind):
    enc = tiny(kind).eval()
    x = wave()
    with torch.no_grad():
        states = enc.hidden_states(x)
        layers, _ = enc.model.extract_features(x)
        output, _ = enc.model(x)
    assert len(states) == enc.num_layers + 1 == 3
    assert states[0].shape == (2, enc.frames(4000), 32) and enc.frames(4000) == 12
    for k in range(1, enc.num_layers):
        torch.testing.assert_close(states[k], layers[k - 1])
    torch.testing.assert_close(states[-1], output)           # the final LayerNorm of pre-LN models included
    assert torch.equal(states[-1], layers[-1]) == (kind != "pre_ln")


def test_layer_choice_returns_that_layer_and_runs_no_further():
    ref = tiny().eval()
    with torch.no_grad():
        states = ref.hidden_states(wave())
    for layer in (0, 1, 2, "last"):
        enc = tiny(layer=layer).eval()
        ran = calls(enc.model.encoder.transformer.layers[1])
        with torch.no_grad():
            out = enc(wave())
        torch.testing.assert_close(out, states[2 if layer == "last" else layer])
        assert bool(ran) == (layer in (2, "last"))


def test_weighted_sum_is_a_learnt_softmax_over_all_layers():
    enc = tiny(layer="weighted").eval()
    x = wave()
    with torch.no_grad():
        states = torch.stack(enc.hidden_states(x))
        torch.testing.assert_close(enc(x), states.mean(0))            # zero weights: every layer alike
        enc.layer_weights.copy_(torch.tensor([0.0, 1.0, -2.0]))
        torch.testing.assert_close(enc(x), torch.einsum("l,lbtd->btd", torch.softmax(enc.layer_weights, 0), states))
    enc(x).pow(2).mean().backward()
    assert enc.layer_weights.grad is not None and enc.layer_weights.grad.abs().sum() > 0


def test_named_encoders_build_torchaudios_architectures():
    with torch.device("meta"):
        base, plus = build_encoder(name="wavlm_base"), build_encoder(name="wavlm_base_plus")
        xlsr = build_encoder(name="wav2vec2_xlsr_300m", layer=24)
    assert architecture(plus.model) == architecture(base.model)
    assert (xlsr.embed_dim, xlsr.num_layers, xlsr.receptive_field, xlsr.hop_samples) == (1024, 24, 400, 320)
    assert architecture(xlsr.model)["encoder_layer_norm_first"] is True
    # torchaudio's wav2vec2_xlsr_300m without the pre-training quantizer (HF facebook/wav2vec2-xls-r-300m: 315.4 M)
    assert sum(p.numel() for p in xlsr.parameters()) == 315_437_696
    assert {"wav2vec2_model", "wavlm_model", "wav2vec2_xlsr_2b", "hubert_xlarge", "wavlm_large"} <= set(ENCODERS)


def test_bad_sections_are_one_line_errors():
    with pytest.raises(InputError) as e:
        tiny(layer=30)
    one_line(e, "encoder.layer", "30", "0..2")
    for layer in (-1, True, "middle", 1.5):
        with pytest.raises(InputError, match="encoder.layer"):
            tiny(layer=layer)
    with pytest.raises(InputError) as e:
        tiny(freeze="later")
    one_line(e, "encoder.freeze")
    with pytest.raises(InputError) as e:
        tiny(lr=-1)
    one_line(e, "encoder.lr")
    assert tiny(lr="1e-6").lr == 1e-6                      # YAML reads 1e-6 as a string
    with pytest.raises(InputError) as e:
        build_encoder(name="wav2vec3")
    one_line(e, "encoder.name", "wav2vec3", "wavlm_base_plus")
    with pytest.raises(InputError) as e:
        build_encoder(name="wav2vec2_base", options={"encoder_num_layers": 2})
    one_line(e, "encoder.options", "encoder_num_layers", "encoder_layer_drop")
    with pytest.raises(InputError) as e:
        build_encoder(name="wav2vec2_base", layers=3)
    one_line(e, "'layers'", "grad_checkpointing")


# ------------------------------------------------------------------------------------------------ freezing
def _grad_mode_inside(enc: ssl_models.SSLEncoder) -> list[bool]:
    return calls(enc.model.encoder.transformer.layers[0])


def test_frozen_encoder_runs_without_autograd_in_eval_mode_and_gets_no_gradient():
    enc = tiny(freeze=True, layer="weighted", options={"encoder_dropout": 0.5})
    head = torch.nn.Linear(32, 1)
    enc.train()
    head.train()
    assert enc.frozen and not enc.model.training and enc.training
    assert not any(p.requires_grad for p in enc.model.parameters())
    seen = _grad_mode_inside(enc)
    x = wave()
    first = enc(x)
    torch.testing.assert_close(enc(x), first)                 # no dropout: eval mode despite train()
    head(first).sum().backward()
    assert seen == [False, False]
    assert all(p.grad is None for p in enc.model.parameters())
    assert head.weight.grad is not None and enc.layer_weights.grad is not None   # the head and the layer weights learn


def test_fine_tuned_encoder_gets_gradients_under_autograd():
    enc = tiny(freeze=False, options=QUIET)
    seen = _grad_mode_inside(enc)
    enc.train()(wave()).sum().backward()
    assert seen == [True] and enc.model.training
    assert all(p.grad is not None for p in enc.model.parameters())


def test_fine_tuning_starts_at_the_configured_epoch():
    enc = tiny(freeze=2, options=QUIET)
    parent = torch.nn.Sequential(enc).train()
    assert all(p.requires_grad for p in enc.model.parameters())   # in the optimizer from the start
    for epoch, frozen in ((0, True), (1, True), (2, False), (5, False)):
        ssl_models.set_epoch(parent, epoch)
        parent.train()
        enc.model.zero_grad(set_to_none=True)
        seen = _grad_mode_inside(enc)
        out = parent(wave())
        if out.requires_grad:
            out.sum().backward()
        assert enc.frozen == frozen and enc.model.training != frozen and seen[-1] != frozen, epoch
        assert all((p.grad is None) == frozen for p in enc.model.parameters()), epoch


def test_param_groups_give_the_encoder_its_own_lr():
    class Task:
        def param_groups(self, model):
            return ssl_models.param_groups(model)

    cfg = train_config({"optimizer": {"lr": 1e-3}})["optimizer"]
    for freeze, lrs in ((False, [1e-3, 1e-5]), (3, [1e-3, 1e-5]), (True, [1e-3])):
        enc = tiny(freeze=freeze, lr=1e-5, layer="weighted")
        model = torch.nn.ModuleDict({"enc": enc, "head": torch.nn.Linear(32, 2)})
        optimizer = build_optimizer(resolve_param_groups(model, Task()), cfg)
        assert [g["lr"] for g in optimizer.param_groups] == lrs, freeze
        groups = optimizer.param_groups
        assert any(p is enc.layer_weights for p in groups[0]["params"])   # new weights: the head's lr
        if len(groups) > 1:
            assert {id(p) for p in groups[1]["params"]} == {id(p) for p in enc.model.parameters()}
    assert len(ssl_models.param_groups(torch.nn.Linear(2, 2))) == 1


def test_gradient_checkpointing_recomputes_layers_with_the_same_gradients():
    grads, runs = [], []
    for recompute in (False, True):
        enc = tiny(freeze=False, grad_checkpointing=recompute, options=QUIET, layer="weighted").train()
        count = calls(enc.model.encoder.transformer.layers[1])
        enc(wave()).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in enc.parameters()])
        runs.append(len(count))
    assert runs == [1, 2]                                      # recomputed in backward
    for plain, recomputed in zip(*grads, strict=True):
        torch.testing.assert_close(recomputed, plain, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ input rule
def test_short_input_is_repeat_padded_to_the_receptive_field():
    enc = tiny().eval()
    short = wave(250)
    with torch.no_grad():
        out = enc(short)
        tiled = enc(torch.cat([short, short[:, :150]], dim=1))   # 400 samples: the signal repeated
        zero_padded = enc(torch.nn.functional.pad(short, (0, 150)))
        three = enc(short, min_frames=3)
    assert enc.receptive_field == 400 and enc.min_samples == 1 and out.shape == (2, 1, 32)
    torch.testing.assert_close(out, tiled)
    assert not torch.allclose(out, zero_padded)
    assert three.shape[1] == 3 and enc.samples_for(3) == 1040
    with pytest.raises(InputError) as e:
        enc(wave(0))
    one_line(e, "empty input")
    with pytest.raises(InputError) as e:
        enc(torch.zeros(2, 1, 4000))
    one_line(e, "(batch, samples)")


def test_normalize_feeds_zero_mean_unit_variance_waveforms():
    """On a layer-norm CNN (large models, XLS-R): a group-norm CNN normalises each channel over time anyway."""
    x = wave()
    with torch.no_grad():
        normalized = tiny("pre_ln", normalize=True).eval()(5 * x + 3)
        plain = tiny("pre_ln").eval()(torch.nn.functional.layer_norm(x, x.shape[1:]))
        raw = tiny("pre_ln").eval()(5 * x + 3)
    torch.testing.assert_close(normalized, plain, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(normalized, raw, atol=1e-3)


# ------------------------------------------------------------------------------------------------ weight files
def _hf_state(enc: ssl_models.SSLEncoder, wavlm: bool) -> dict:
    """torchaudio names -> Hugging Face's (the inverse of torchaudio's import_huggingface), with a CTC head and
    the masked-frame embedding that loading must drop."""
    prefix = "wavlm." if wavlm else "wav2vec2."
    out = {}
    for key, value in enc.model.state_dict().items():
        key = key.replace("encoder.feature_projection.", "feature_projection.")
        key = key.replace("encoder.transformer.", "encoder.")
        key = key.replace("conv.parametrizations.weight.original0", "conv.weight_g")
        key = key.replace("conv.parametrizations.weight.original1", "conv.weight_v")
        match = re.match(r"(encoder\.layers\.\d+\.attention\.)attention\.in_proj_(weight|bias)$", key)
        if match:
            for name, part in zip("qkv", value.chunk(3), strict=True):
                out[f"{prefix}{match.group(1)}{name}_proj.{match.group(2)}"] = part.clone()
            continue
        out[prefix + key.replace(".attention.attention.out_proj.", ".attention.out_proj.")] = value
    out[prefix + "masked_spec_embed"] = torch.rand(32)
    out.update({"lm_head.weight": torch.rand(5, 32), "lm_head.bias": torch.rand(5)})
    return out


def _hf_config(kind: str) -> dict:
    """config.json of the tiny model with Hugging Face's key names."""
    cfg = {"model_type": "wavlm" if kind == "wavlm" else "wav2vec2", "architectures": ["Wav2Vec2ForCTC"],
           "feat_extract_norm": "layer" if kind == "pre_ln" else "group", "conv_dim": [c[0] for c in CONV],
           "conv_kernel": [c[1] for c in CONV], "conv_stride": [c[2] for c in CONV], "conv_bias": kind == "pre_ln",
           "hidden_size": 32, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2,
           "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
           "do_stable_layer_norm": kind == "pre_ln", "hidden_act": "gelu", "feat_extract_activation": "gelu",
           "hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0, "feat_proj_dropout": 0.0,
           "layerdrop": 0.1, "vocab_size": 5}
    if kind == "wavlm":
        cfg.update(num_buckets=16, max_bucket_distance=32)
    return cfg


def _write(enc: ssl_models.SSLEncoder, kind: str, layout: str, root: Path) -> Path:
    wavlm = kind == "wavlm"
    if layout.startswith("hf"):
        state = _hf_state(enc, wavlm)
        (root / "config.json").write_text(json.dumps(_hf_config(kind)), encoding="utf-8")
        if layout == "hf_bin":
            torch.save(state, root / "pytorch_model.bin")
        elif layout == "hf_safetensors":
            from safetensors.torch import save_file
            save_file(state, str(root / "model.safetensors"))
        else:   # hf_sharded: two .bin shards and their index
            keys = sorted(state)
            shards = {"pytorch_model-00001-of-00002.bin": keys[::2], "pytorch_model-00002-of-00002.bin": keys[1::2]}
            for name, part in shards.items():
                torch.save({k: state[k] for k in part}, root / name)
            index = {"weight_map": {k: name for name, part in shards.items() for k in part}}
            (root / "pytorch_model.bin.index.json").write_text(json.dumps(index), encoding="utf-8")
        return root
    if layout == "torchaudio":
        torch.save(enc.model.state_dict(), root / "encoder.pth")
        return root / "encoder.pth"
    state = fairseq_state(enc, wavlm, layer_norm=kind == "pre_ln")
    cfg = {"model": {"_name": "wav2vec2", "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
                     "encoder_attention_heads": 2, "conv_pos": 16, "conv_pos_groups": 2,
                     "extractor_mode": "layer_norm" if kind == "pre_ln" else "default",
                     "layer_norm_first": kind == "pre_ln", "conv_bias": kind == "pre_ln"}}
    if layout == "fairseq_finetuned":   # wav2vec2_asr: the encoder under w2v_encoder.w2v_model, a CTC projection
        state = {**{"w2v_encoder.w2v_model." + k: v for k, v in state.items()},
                 "w2v_encoder.proj.weight": torch.rand(5, 32), "w2v_encoder.proj.bias": torch.rand(5)}
        cfg = {"model": {"_name": "wav2vec_ctc"}}
    torch.save({"cfg": cfg, "model": state, "optimizer_history": [{"num_updates": 1}]}, root / "checkpoint.pt")
    return root / "checkpoint.pt"


LAYOUTS = ("hf_bin", "hf_safetensors", "hf_sharded", "fairseq", "fairseq_finetuned", "torchaudio")
CASES = [(layout, kind) for layout in LAYOUTS for kind in KINDS
         if (layout, kind) != ("fairseq_finetuned", "wavlm")]   # WavLM was never fine-tuned with fairseq


@pytest.mark.parametrize(("layout", "kind"), CASES, ids=[f"{layout}-{kind}" for layout, kind in CASES])
def test_weights_in_every_layout_reproduce_the_original_outputs(layout, kind, tmp_path):
    original = tiny(kind, seed=0, layer="weighted").eval()
    path = _write(original, kind, layout, tmp_path)
    loaded = tiny(kind, seed=1, layer="weighted", checkpoint=str(path)).eval()
    x = wave()
    with torch.no_grad():
        assert not torch.allclose(tiny(kind, seed=1).eval()(x), original.hidden_states(x)[-1])
        for mine, theirs in zip(loaded.hidden_states(x), original.hidden_states(x), strict=True):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6)


def test_a_checkpoint_of_another_size_names_the_mismatching_keys(tmp_path):
    path = _write(tiny(), "wav2vec2", "hf_bin", tmp_path)
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(path), options={"encoder_num_layers": 3})
    one_line(e, "missing keys", "encoder.transformer.layers.2.", "encoder_num_layers 2 vs 3", "encoder.name")
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(path), options={"encoder_embed_dim": 48, "encoder_ff_interm_features": 96})
    one_line(e, "mis-shaped keys", "checkpoint (32,", "vs model (48,", "encoder_embed_dim 32 vs 48")
    fairseq = _write(tiny(), "wav2vec2", "fairseq", tmp_path)
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(fairseq), options={"encoder_num_layers": 3})
    one_line(e, "fairseq weights do not fit encoder.name wav2vec2_model", "missing keys")


def test_same_shapes_but_another_architecture_is_refused(tmp_path):
    """Same keys and shapes, another computation: config.json's num_attention_heads and layer norm order differ."""
    path = _write(tiny(), "wav2vec2", "hf_bin", tmp_path)
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(path), options={"encoder_num_heads": 4, "encoder_layer_norm_first": True})
    one_line(e, "architecture settings differ", "encoder_num_heads 2 vs 4", "encoder_layer_norm_first False vs True")


def test_unknown_or_unreadable_files_say_what_is_expected(tmp_path):
    expected = "Hugging Face folder (config.json + model.safetensors or pytorch_model.bin)"
    odd = tmp_path / "weights.pt"
    torch.save({"net.0.weight": torch.zeros(2)}, odd)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint")
    empty = tmp_path / "folder"
    empty.mkdir()
    for path in (odd, text, empty):
        with pytest.raises(InputError) as e:
            tiny(checkpoint=str(path))
        one_line(e, str(path), expected)
    pickled = tmp_path / "xlsr2_300m.pt"     # fairseq keeps its args as pickled objects
    torch.save({"args": argparse.Namespace(arch="wav2vec2"), "model": {"mask_emb": torch.zeros(2)}}, pickled)
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(pickled))
    one_line(e, "argparse.Namespace", "weights_only=False", "torch.save({'model': c['model']}", "docs/ssl.md")
    (tmp_path / "hf").mkdir()
    hf = _write(tiny(), "wav2vec2", "hf_bin", tmp_path / "hf")
    bare = tmp_path / "pytorch_model.bin"
    bare.write_bytes((hf / "pytorch_model.bin").read_bytes())
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(bare))
    one_line(e, "without their config.json")
    (hf / "config.json").write_text(json.dumps({**_hf_config("wav2vec2"), "model_type": "data2vec-audio"}))
    with pytest.raises(InputError) as e:
        tiny(checkpoint=str(hf))
    one_line(e, "config.json", "data2vec-audio", "wav2vec2, hubert, wavlm")
    with pytest.raises(MissingFilesError) as e:
        tiny(checkpoint=str(tmp_path / "absent.pt"))
    one_line(e, "encoder.checkpoint", "absent.pt")
