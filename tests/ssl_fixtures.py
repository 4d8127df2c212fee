"""Helpers the SSL test modules share: an encoder's weights written back in fairseq's parameter names."""
from __future__ import annotations

import re

import torch

import ssl_models


def fairseq_state(enc: ssl_models.SSLEncoder, wavlm: bool, layer_norm: bool) -> dict:
    """torchaudio names -> fairseq's (the inverse of torchaudio's import_fairseq._map_key; unilm's WavLM names)."""
    rules = [(r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
             (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.",
              r"feature_extractor.conv_layers.\1.2.1." if layer_norm else r"feature_extractor.conv_layers.\1.2."),
             (r"^encoder\.feature_projection\.projection\.", "post_extract_proj."),
             (r"^encoder\.feature_projection\.layer_norm\.", "layer_norm."),
             (r"^encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$",
              "encoder.pos_conv.0.weight_g"),
             (r"^encoder\.transformer\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$",
              "encoder.pos_conv.0.weight_v"),
             (r"^encoder\.transformer\.pos_conv_embed\.conv\.bias$", "encoder.pos_conv.0.bias"),
             (r"^encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
             (r"^encoder\.transformer\.layers\.(\d+)\.attention\.attention\.out_proj\.",
              r"encoder.layers.\1.self_attn.out_proj."),
             (r"^encoder\.transformer\.layers\.(\d+)\.attention\.gru_rel_pos_linear\.",
              r"encoder.layers.\1.self_attn.grep_linear."),
             (r"^encoder\.transformer\.layers\.(\d+)\.attention\.gru_rel_pos_const$",
              r"encoder.layers.\1.self_attn.grep_a"),
             (r"^encoder\.transformer\.layers\.(\d+)\.attention\.rel_attn_embed\.",
              r"encoder.layers.\1.self_attn.relative_attention_bias."),
             (r"^encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
             (r"^encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
             (r"^encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
             (r"^encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
             (r"^encoder\.transformer\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm.")]
    out = {}
    for key, value in enc.model.state_dict().items():
        match = re.match(r"^encoder\.transformer\.layers\.(\d+)\.attention\.attention\.in_proj_(weight|bias)$", key)
        if match:
            for name, part in zip("qkv", value.chunk(3), strict=True):
                out[f"encoder.layers.{match.group(1)}.self_attn.{name}_proj.{match.group(2)}"] = part.clone()
            continue
        new = next((re.sub(p, r, key) for p, r in rules if re.match(p, key)), None)
        assert new is not None, key
        out[new] = value
    out.update({"mask_emb": torch.rand(32), "quantizer.vars": torch.rand(1, 8, 4), "project_q.weight": torch.rand(4, 4),
                "final_proj.weight": torch.rand(4, 32)})
    return out


# A tiny SSL encoder for front-end tests that only need the contract (the published CNN geometry with 16 channels,
# a 2-layer 32-d transformer, no dropout), and heads sized to it.
TINY_ENCODER = dict(extractor_conv_layer_config=[[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2,
                    encoder_embed_dim=32, encoder_pos_conv_kernel=16, encoder_pos_conv_groups=2, encoder_num_layers=2,
                    encoder_num_heads=2, encoder_ff_interm_features=64, encoder_projection_dropout=0.0,
                    encoder_attention_dropout=0.0, encoder_ff_interm_dropout=0.0, encoder_dropout=0.0,
                    encoder_layer_drop=0.0)
TINY_SSL_MODELS = {
    "SSL-ECAPA": {"encoder": {"name": "wav2vec2_model", "options": TINY_ENCODER}, "C": 16, "embedding_dim": 8},
    "SSL-MHFA": {"encoder": {"name": "wav2vec2_model", "options": TINY_ENCODER}, "heads": 4, "compression_dim": 8,
                 "embedding_dim": 8},
    "SSL-AASIST": {"encoder": {"name": "wav2vec2_model", "options": TINY_ENCODER},
                   "filts": [24, [1, 8], [8, 8], [8, 8], [8, 8]], "gat_dims": [8, 8]},
}
