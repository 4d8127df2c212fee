"""Pre-trained encoder weights from local files, converted to torchaudio's parameter names. Nothing is unpickled:
`.bin` / `.pt` / `.pth` files go through `torch.load(weights_only=True)`, `.safetensors` through `safetensors`.

Accepted layouts:
- Hugging Face: a folder with config.json and model.safetensors or pytorch_model.bin (or their sharded
  `*.index.json`), or a weights file inside such a folder; `model_type` wav2vec2 (XLS-R too), hubert or wavlm, with
  or without a head (`wav2vec2.` / `hubert.` / `wavlm.` prefixes; heads, quantizer and masked-frame embedding are
  dropped). Converted with torchaudio's importer logic (`import_huggingface._get_config` / `_get_config_wavlm` on
  config.json read as plain JSON, so `transformers` is not needed; `transform_wavlm_encoder_state` for WavLM).
- fairseq: {"model": state, ...} of wav2vec 2.0 / XLS-R / HuBERT, pre-trained or fine-tuned (`w2v_encoder.`), and
  microsoft/unilm's WavLM checkpoints ({"cfg": dict, "model": state}). Converted with torchaudio's
  `import_fairseq._convert_state_dict`; WavLM's attention keys as Hugging Face's WavLM converter maps them. fairseq
  keeps its `cfg` (omegaconf) or `args` (argparse) as pickled objects that weights-only loading refuses: such a
  file gets one line saying how to keep only the weights (docs/ssl.md).
- torchaudio: a `Wav2Vec2Model` state dict (a torchaudio pipelines .pth file, `SSLEncoder.model.state_dict()`).
The weights must fit the configured `encoder.name`: missing, unexpected or mis-shaped keys, and architecture
settings in config.json / the fairseq cfg that differ from the encoder's, are one InputError naming them.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Mapping, Optional

import torch
from torch import nn
from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict
from torchaudio.models.wav2vec2.utils.import_huggingface import (
    _get_config,
    _get_config_wavlm,
    transform_wavlm_encoder_state,
)
from torchaudio.models.wav2vec2.wavlm_attention import WavLMSelfAttention

from common.errors import InputError, MissingFilesError
from common.io import load_weights, read_text

if TYPE_CHECKING:
    from ssl_models.encoder import SSLEncoder

logger = logging.getLogger(__name__)

SHOWN = 4   # key names quoted per category in an error message
HF_TYPES = ("wav2vec2", "hubert", "wavlm")
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
HF_PREFIXES = ("wav2vec2.", "hubert.", "wavlm.")
# Hugging Face parts that are not the encoder: CTC / classification heads, pre-training quantizer and projections
HF_DROPPED = re.compile(r"^(lm_head|quantizer|project_hid|project_q|masked_spec_embed|classifier|projector|"
                        r"label_embeddings_concat|final_proj|dropout_features)(\.|$)")
# The configuration classes' defaults (transformers' Wav2Vec2Config / WavLMConfig) for keys a config.json omits.
HF_DEFAULTS = dict(feat_extract_norm="group", conv_dim=[512] * 7, conv_kernel=[10, 3, 3, 3, 3, 2, 2],
                   conv_stride=[5, 2, 2, 2, 2, 2, 2], conv_bias=False, hidden_size=768, feat_proj_dropout=0.0,
                   num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, num_hidden_layers=12,
                   num_attention_heads=12, attention_dropout=0.1, intermediate_size=3072, activation_dropout=0.1,
                   hidden_dropout=0.1, do_stable_layer_norm=False, layerdrop=0.1, num_buckets=320,
                   max_bucket_distance=800)
# fairseq / unilm cfg key -> torchaudio builder argument (only keys a checkpoint's cfg holds are compared)
FAIRSEQ_ARCH = {"encoder_embed_dim": "encoder_embed_dim", "encoder_layers": "encoder_num_layers",
                "encoder_attention_heads": "encoder_num_heads", "encoder_ffn_embed_dim": "encoder_ff_interm_features",
                "conv_pos": "encoder_pos_conv_kernel", "conv_pos_groups": "encoder_pos_conv_groups",
                "layer_norm_first": "encoder_layer_norm_first", "conv_bias": "extractor_conv_bias",
                "extractor_mode": "extractor_mode", "num_buckets": "encoder_num_buckets",
                "max_distance": "encoder_max_distance"}
# unilm WavLM attention parameters -> torchaudio WavLMSelfAttention
UNILM_WAVLM = re.compile(r"^encoder\.layers\.(\d+)\.self_attn\.(grep_linear\.weight|grep_linear\.bias|grep_a|"
                         r"relative_attention_bias\.weight)$")
UNILM_NAMES = {"grep_linear.weight": "gru_rel_pos_linear.weight", "grep_linear.bias": "gru_rel_pos_linear.bias",
               "grep_a": "gru_rel_pos_const", "relative_attention_bias.weight": "rel_attn_embed.weight"}
TRANSFORMER = "encoder.transformer."
FORMATS = ("a Hugging Face folder (config.json + model.safetensors or pytorch_model.bin), a fairseq checkpoint "
           "(.pt with a 'model' state dict) or a torchaudio Wav2Vec2Model state dict")


class Weights:
    """A checkpoint converted to torchaudio names: the state, the architecture it declares (builder arguments;
    empty when it declares none), its layout and the keys dropped as not part of the encoder."""

    def __init__(self, state: dict, arch: dict, layout: str, dropped: list[str]):
        self.state, self.arch, self.layout, self.dropped = state, arch, layout, dropped


def load_encoder_weights(encoder: SSLEncoder, path: str | Path) -> None:
    """Reads `path` in any accepted layout into `encoder.model` strictly (one InputError when it does not fit)."""
    weights = read_weights(path)
    check_fit(encoder.model, weights, str(path), encoder.name)
    encoder.model.load_state_dict(weights.state)
    dropped = f"; dropped {len(weights.dropped)} keys that are not the encoder" if weights.dropped else ""
    logger.info(f"SSL encoder {encoder.name}: {weights.layout} weights from {path}{dropped}")
    _check_normalization(Path(path), encoder)


def read_weights(path: str | Path) -> Weights:
    """The weights at `path` in torchaudio's names, whatever the accepted layout."""
    path = Path(path)
    if not path.exists():
        raise MissingFilesError(f"encoder.checkpoint {path}: no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"encoder.checkpoint {path}: a folder without config.json; expected {FORMATS}")
        return _huggingface(path, None)
    if path.suffix in (".safetensors", ".bin", ".json") and (path.parent / "config.json").is_file():
        return _huggingface(path.parent, None if path.name == "config.json" else path)
    if path.suffix == ".safetensors":
        raise InputError(f"{path}: a .safetensors file needs the Hugging Face config.json beside it "
                         f"(the folder it came in); expected {FORMATS}")
    raw = _torch_load(path)
    model = raw.get("model") if isinstance(raw.get("model"), Mapping) else None
    state = model if model is not None else raw
    if in_fairseq_names(state):
        return _fairseq(raw, state, path)
    if _has(state, "encoder.feature_projection.", "encoder.transformer."):
        aux = [k for k in state if k.startswith("aux.")]
        return Weights({k: v for k, v in state.items() if k not in aux}, {}, "torchaudio", aux)
    if _has(state, "feature_projection.", *(p + "feature_projection." for p in HF_PREFIXES)):
        raise InputError(f"{path}: Hugging Face weights without their config.json; give the folder they came in "
                         f"(config.json + {path.name})")
    keys = ", ".join(map(str, list(state)[:SHOWN]))
    raise InputError(f"{path}: not an SSL encoder checkpoint (keys {keys}, ...); expected {FORMATS}; see docs/ssl.md "
                     f"for converting others")


def architecture(model: nn.Module) -> dict[str, Any]:
    """The torchaudio builder arguments that define `model`'s architecture (not its dropouts), read off the model."""
    blocks = model.feature_extractor.conv_layers
    transformer = model.encoder.transformer
    first = transformer.layers[0]
    arch = dict(
        extractor_mode="group_norm" if isinstance(blocks[0].layer_norm, nn.GroupNorm) else "layer_norm",
        extractor_conv_layer_config=[(b.conv.out_channels, b.conv.kernel_size[0], b.conv.stride[0]) for b in blocks],
        extractor_conv_bias=blocks[0].conv.bias is not None,
        encoder_embed_dim=transformer.pos_conv_embed.embed_dim,
        encoder_pos_conv_kernel=transformer.pos_conv_embed.kernel_size,
        encoder_pos_conv_groups=transformer.pos_conv_embed.conv.groups,
        encoder_num_layers=len(transformer.layers),
        encoder_num_heads=first.attention.num_heads,
        encoder_ff_interm_features=first.feed_forward.intermediate_dense.out_features,
        encoder_layer_norm_first=first.layer_norm_first)
    if isinstance(first.attention, WavLMSelfAttention):
        arch.update(encoder_num_buckets=first.attention.num_buckets, encoder_max_distance=first.attention.max_distance)
    return arch


def check_fit(model: nn.Module, weights: Weights, source: str, name: str) -> None:
    """One InputError naming missing / unexpected / mis-shaped keys and differing architecture settings, if any."""
    own = model.state_dict()
    state = weights.state
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    ours = architecture(model)
    differing = [f"{k} {_plain(v)} vs {_plain(ours[k])}" for k, v in weights.arch.items()
                 if k in ours and _plain(v) != _plain(ours[k])]
    parts = [f"{len(v)} {label} ({', '.join(v[:SHOWN])}{', ...' if len(v) > SHOWN else ''})"
             for label, v in (("missing keys", missing), ("unexpected keys", unexpected),
                              ("mis-shaped keys", mismatched), ("architecture settings differ", differing)) if v]
    if parts:
        raise InputError(f"{source}: {weights.layout} weights do not fit encoder.name {name}: {'; '.join(parts)} "
                         f"(weights of another size or model? set encoder.name to the architecture they were "
                         f"trained as)")


# ---------------------------------------------------------------------------------------------- Hugging Face
def _huggingface(folder: Path, weights_file: Optional[Path]) -> Weights:
    config_path = folder / "config.json"
    try:
        cfg = json.loads(read_text(config_path, "Hugging Face config"))
    except json.JSONDecodeError as e:
        raise InputError(f"{config_path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{config_path}: not a Hugging Face config (a JSON object)")
    model_type = cfg.get("model_type")
    if model_type not in HF_TYPES:
        raise InputError(f"{config_path}: model_type {model_type!r} is not one torchaudio builds "
                         f"({', '.join(HF_TYPES)})")
    for key in ("hidden_act", "feat_extract_activation"):
        if cfg.get(key, "gelu") != "gelu":
            raise InputError(f"{config_path}: {key} {cfg[key]!r}; torchaudio's encoders use gelu")
    if model_type == "hubert" and (not cfg.get("feat_proj_layer_norm", True) or cfg.get("conv_pos_batch_norm")):
        raise InputError(f"{config_path}: a HuBERT variant (feat_proj_layer_norm false or conv_pos_batch_norm true) "
                         f"that torchaudio's encoders do not have")
    wavlm = model_type == "wavlm"
    arch = (_get_config_wavlm if wavlm else _get_config)(SimpleNamespace(**{**HF_DEFAULTS, **cfg}))
    state = _hf_state(folder, weights_file)
    converted, dropped = convert_huggingface(state, wavlm, str(folder))
    return Weights(converted, arch, f"Hugging Face {model_type}", dropped)


def _hf_state(folder: Path, weights_file: Optional[Path]) -> dict:
    if weights_file is None:
        weights_file = next((folder / n for n in HF_WEIGHTS if (folder / n).is_file()), None)
        if weights_file is None:
            raise InputError(f"{folder}: Hugging Face folder without weights ({' or '.join(HF_WEIGHTS[::2])})")
    if weights_file.name.endswith(".index.json"):   # sharded: {"weight_map": {key: shard file}}
        try:
            shards = sorted(set(json.loads(read_text(weights_file, "weights index"))["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise InputError(f"{weights_file}: not a weights index (JSON with a 'weight_map')") from None
        state = {}
        for shard in shards:
            state.update(_hf_file(folder / shard))
        return state
    return _hf_file(weights_file)


def _hf_file(path: Path) -> dict:
    if not path.is_file():
        raise MissingFilesError(f"{path}: weights file does not exist")
    if path.suffix != ".safetensors":
        return _torch_load(path)
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InputError(f"{path}: reading .safetensors needs the safetensors package "
                         f"(pip install -r requirements.txt)") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:   # SafetensorError and OSError alike: a corrupt or truncated file
        raise InputError(f"{path}: not a readable .safetensors file ({_first_line(e)})") from None


def convert_huggingface(state: Mapping[str, torch.Tensor], wavlm: bool, source: str) -> tuple[dict, list[str]]:
    """Hugging Face parameter names -> torchaudio's, as torchaudio's `import_huggingface_model` maps the modules:
    feature_extractor.* as is, feature_projection.* under encoder., encoder.* under encoder.transformer. (WavLM's
    q/k/v projections concatenated by `transform_wavlm_encoder_state`). Returns (state, dropped keys)."""
    out, encoder, dropped = {}, {}, []
    for key, value in state.items():
        key = next((key[len(p):] for p in HF_PREFIXES if key.startswith(p)), key)
        if HF_DROPPED.match(key):
            dropped.append(key)
        elif key.startswith("feature_projection."):
            out["encoder." + key] = value
        elif key.startswith("encoder."):
            encoder[_weight_norm_name(key[len("encoder."):])] = value
        else:
            out[key] = value      # feature_extractor.*, or a key check_fit reports as unexpected
    if wavlm:
        layers = len({k.split(".")[1] for k in encoder if k.startswith("layers.")})
        try:
            transform_wavlm_encoder_state(encoder, layers)
        except KeyError as e:
            raise InputError(f"{source}: WavLM weights without encoder.{e.args[0]}") from None
    out.update({"encoder.transformer." + k: v for k, v in encoder.items()})
    return out, dropped


# ---------------------------------------------------------------------------------------------- fairseq
def in_fairseq_names(state: Mapping) -> bool:
    """Whether a state dict names an encoder as fairseq does (pre-trained, or fine-tuned under w2v_encoder.)."""
    return _has(state, "post_extract_proj.", "w2v_encoder.", "w2v_model.", "feature_extractor.conv_layers.0.0.")


def _fairseq(raw: Mapping, state: Mapping, path: Path) -> Weights:
    converted, dropped = convert_fairseq(state, str(path))
    return Weights(converted, _fairseq_arch(raw), "fairseq", dropped)


def convert_fairseq(state: Mapping[str, torch.Tensor], source: str) -> tuple[dict, list[str]]:
    """fairseq parameter names -> torchaudio's through torchaudio's `_convert_state_dict`; unilm WavLM's gated
    relative position parameters renamed and its q/k/v projections concatenated. Returns (state, dropped keys)."""
    plain, wavlm_extra, dropped = {}, {}, []
    for key, value in state.items():
        key = key[len("w2v_encoder."):] if key.startswith("w2v_encoder.") else key
        bare = key[len("w2v_model."):] if key.startswith("w2v_model.") else key
        match = UNILM_WAVLM.match(bare)
        if match:
            wavlm_extra[f"layers.{match.group(1)}.attention.{UNILM_NAMES[match.group(2)]}"] = value
        elif bare in ("label_embs_concat", "mask_emb") or bare.startswith(("proj.", "final_proj.", "quantizer.",
                                                                             "project_q.", "target_glu.")):
            dropped.append(key)    # HuBERT labels, CTC head, pre-training heads
        else:
            plain[key] = value
    try:
        converted = _convert_state_dict(plain)
    except ValueError as e:   # torchaudio: "Unexpected key: ..."
        raise InputError(f"{source}: not a wav2vec 2.0 / HuBERT / WavLM fairseq checkpoint "
                         f"({_first_line(e)})") from None
    encoder = {_weight_norm_name(k[len(TRANSFORMER):]): v for k, v in converted.items() if k.startswith(TRANSFORMER)}
    out = {k: v for k, v in converted.items() if not k.startswith(TRANSFORMER)}
    if wavlm_extra:
        encoder.update(wavlm_extra)
        layers = len({k.split(".")[1] for k in encoder if k.startswith("layers.")})
        try:
            transform_wavlm_encoder_state(encoder, layers)
        except KeyError as e:
            raise InputError(f"{source}: WavLM weights without encoder.{e.args[0]}") from None
    out.update({TRANSFORMER + k: v for k, v in encoder.items()})
    return out, dropped


def _fairseq_arch(raw: Mapping) -> dict:
    """Builder arguments from a checkpoint's plain-dict cfg (hydra `cfg['model']`, unilm's flat `cfg`, or a
    converted `args` dict); only the keys it holds."""
    cfg = raw.get("cfg") if isinstance(raw.get("cfg"), Mapping) else raw.get("args")
    if not isinstance(cfg, Mapping):
        return {}
    if isinstance(cfg.get("model"), Mapping):
        cfg = cfg["model"]
    arch = {FAIRSEQ_ARCH[k]: v for k, v in cfg.items() if k in FAIRSEQ_ARCH}
    if "extractor_mode" in arch:
        arch["extractor_mode"] = {"default": "group_norm"}.get(arch["extractor_mode"], arch["extractor_mode"])
    return arch


# ---------------------------------------------------------------------------------------------- helpers
def _torch_load(path: Path) -> dict:
    return load_weights(path, label=str(path), hint=f"; expected {FORMATS}", pickled_hint=(
        f": fairseq keeps its cfg/args that way; keep only the weights once, in an environment you trust: "
        f"python -c \"import torch; c = torch.load('{path}', weights_only=False); "
        f"torch.save({{'model': c['model']}}, '{path.with_suffix('')}.weights.pt')\" (docs/ssl.md)"))


def _has(state: Mapping, *prefixes: str) -> bool:
    return any(isinstance(k, str) and k.startswith(prefixes) for k in state)


def _weight_norm_name(key: str) -> str:
    """Old-style weight norm names (weight_g / weight_v, fairseq and older transformers) -> torch's parametrization
    names that torchaudio's position convolution uses."""
    if key.endswith(".weight_g"):
        return key[: -len("weight_g")] + "parametrizations.weight.original0"
    if key.endswith(".weight_v"):
        return key[: -len("weight_v")] + "parametrizations.weight.original1"
    return key


def _plain(value: Any) -> Any:
    """Lists and tuples compared alike (JSON lists vs builder tuples)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _check_normalization(path: Path, encoder: SSLEncoder) -> None:
    """Hugging Face's preprocessor_config.json says whether the model was trained on normalised waveforms."""
    folder = path if path.is_dir() else path.parent
    try:
        wanted = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8")).get("do_normalize")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(wanted, bool) and wanted != encoder.normalize:
        logger.warning(f"SSL encoder {encoder.name}: {folder}/preprocessor_config.json has do_normalize {wanted}, "
                       f"the config encoder.normalize {encoder.normalize}; set encoder.normalize: "
                       f"{str(wanted).lower()} to feed the waveforms the model was trained on")
