"""Zoo of real models from installable libraries (random init, small configs).

Each entry builds a real library model; tiny wrappers only adapt the calling
convention (lengths -> attention masks, kwargs, ModelOutput -> tensors).
Libraries are imported lazily inside the factories. Install them with install.sh.

Conventions:
- ``inputs(T)`` returns the positional forward args for batch 3 and length T.
- ``dynamic_shapes`` is torch.export tuple form, one dict per positional arg,
  axis -> dim name. The batch axis is axis 0 unless some axis is named "batch".
- ``lengths`` maps forward arg name -> dim name it gives the lengths of
  (relative lengths in [0, 1] if ``lengths_relative``).
- ``padded``: valid output frames do not depend on padding of shorter sequences
  (checked by check_plain_torch.py; entries with lengths but padded=False mask
  only partially).
- ``min_len``/``max_len``: bounds for the (first) time dim; min_len keeps every
  internal length >= 2 (for torch.export use a Dim min of max(2, min_len)).
- ``fixed_len``: the time length the model accepts (no dynamic time dim).
"""

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

B = 3


@dataclass
class ZooModel:
    name: str
    library: str
    factory: Callable[[], nn.Module]
    inputs: Callable[[int], tuple[torch.Tensor, ...]]
    dynamic_shapes: tuple[dict[int, str] | None, ...]
    lengths: dict[str, str] = field(default_factory=dict)
    lengths_relative: bool = False
    padded: bool = False
    min_len: int = 1
    max_len: int | None = None
    fixed_len: int | None = None
    default_len: int = 50  # a T that gives a few output frames and a fast forward
    len_note: str = ""


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _feats(T, F, seed=0):
    return torch.randn(B, T, F, generator=_gen(seed))


def _tokens(T, vocab, seed=0):
    return torch.randint(1, vocab, (B, T), generator=_gen(seed))


def _lens(T, min_len=1):
    """Descending lengths with max T (sorted, as pack_padded_sequence wants)."""
    return torch.tensor([T, max(min_len, T - T // 4), max(min_len, T - T // 2)])


def _zero_pad(x, lengths, axis=1):
    """Zero the frames beyond each sequence's length (time on ``axis``, batch on 0)."""
    t = torch.arange(x.size(axis)).view([-1 if a == axis else 1 for a in range(1, x.dim())])
    keep = t[None] < lengths.view([-1] + [1] * (x.dim() - 1))
    return x * keep.to(x.dtype)


def _mask(x, lengths):
    return (torch.arange(x.size(1))[None, :] < lengths[:, None]).long()


def _eval(factory):
    def build():
        torch.manual_seed(0)
        return factory().eval()
    return build


# ---------------------------------------------------------------- transformers

def _hf_audio_cfg(cfg_cls, **kw):
    return cfg_cls(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer", do_stable_layer_norm=True, vocab_size=12, **kw)


class HFAudioEncoder(nn.Module):
    """wav2vec2-style HF model: (wave, lengths) -> (hidden, out_lengths)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wave, lengths):
        out = self.model(wave, attention_mask=_mask(wave, lengths))
        return out.last_hidden_state, self.model._get_feat_extract_output_lengths(lengths)


def hf_wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model
    return HFAudioEncoder(Wav2Vec2Model(_hf_audio_cfg(Wav2Vec2Config)))


def hf_hubert():
    from transformers import HubertConfig, HubertModel
    return HFAudioEncoder(HubertModel(_hf_audio_cfg(HubertConfig)))


def hf_wavlm():
    from transformers import WavLMConfig, WavLMModel
    cfg = _hf_audio_cfg(WavLMConfig, num_buckets=16, max_bucket_distance=32)
    return HFAudioEncoder(WavLMModel(cfg))


def hf_w2v2_conformer():
    from transformers import Wav2Vec2ConformerConfig, Wav2Vec2ConformerModel
    cfg = _hf_audio_cfg(Wav2Vec2ConformerConfig, position_embeddings_type="relative",
                        conv_depthwise_kernel_size=7)
    return HFAudioEncoder(Wav2Vec2ConformerModel(cfg))


def _whisper_cfg():
    from transformers import WhisperConfig
    return WhisperConfig(
        vocab_size=64, num_mel_bins=16, d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_source_positions=32, max_target_positions=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)


class HFWhisperEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
        self.encoder = WhisperEncoder(_whisper_cfg())

    def forward(self, mel):
        return self.encoder(mel).last_hidden_state


class HFWhisperDecoder(nn.Module):
    """Teacher-forced Whisper decoder on given encoder states -> logits."""

    def __init__(self):
        super().__init__()
        from transformers import WhisperForConditionalGeneration
        self.model = WhisperForConditionalGeneration(_whisper_cfg())

    def forward(self, tokens, enc):
        return self.model(encoder_outputs=(enc,), decoder_input_ids=tokens, use_cache=False).logits


class HFText(nn.Module):
    """HF text model: (ids[, lengths]) -> logits or last hidden state."""

    def __init__(self, model, with_mask):
        super().__init__()
        self.model, self.with_mask = model, with_mask

    def forward(self, ids, lengths=None):
        mask = _mask(ids, lengths) if self.with_mask else None
        out = self.model(input_ids=ids, attention_mask=mask, use_cache=False)
        return out.logits if hasattr(out, "logits") else out.last_hidden_state


def hf_bert():
    from transformers import BertConfig, BertModel
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, attn_implementation="eager")
    return HFText(BertModel(cfg, add_pooling_layer=False), with_mask=True)


def hf_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                     bos_token_id=1, eos_token_id=2)
    return HFText(GPT2LMHeadModel(cfg), with_mask=True)


def hf_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return HFText(LlamaForCausalLM(cfg), with_mask=True)


class HFT5(nn.Module):
    """Teacher-forced T5 (relative position buckets): (src, src_lengths, tgt) -> logits."""

    def __init__(self):
        super().__init__()
        from transformers import T5Config, T5ForConditionalGeneration
        cfg = T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                       relative_attention_num_buckets=8, relative_attention_max_distance=32,
                       decoder_start_token_id=0)
        self.model = T5ForConditionalGeneration(cfg)

    def forward(self, src, src_lengths, tgt):
        return self.model(input_ids=src, attention_mask=_mask(src, src_lengths),
                          decoder_input_ids=tgt, use_cache=False).logits


# ---------------------------------------------------------------- torchaudio

def ta_conformer():
    from torchaudio.models import Conformer
    return Conformer(input_dim=32, num_heads=2, ffn_dim=64, num_layers=2, depthwise_conv_kernel_size=7)


_TA_W2V = dict(
    extractor_mode="layer_norm", extractor_conv_layer_config=[(16, 10, 5), (16, 3, 2), (16, 3, 2)],
    extractor_conv_bias=False, encoder_embed_dim=32, encoder_projection_dropout=0.0,
    encoder_pos_conv_kernel=16, encoder_pos_conv_groups=4, encoder_num_layers=2,
    encoder_num_heads=2, encoder_attention_dropout=0.0, encoder_ff_interm_features=64,
    encoder_ff_interm_dropout=0.0, encoder_dropout=0.0, encoder_layer_norm_first=True,
    encoder_layer_drop=0.0, aux_num_out=12)


def ta_wav2vec2():
    from torchaudio.models import wav2vec2_model
    return wav2vec2_model(**_TA_W2V)


class TAWavLM(nn.Module):
    """torchaudio WavLM; its attention asserts on padding masks, so no lengths."""

    def __init__(self):
        super().__init__()
        from torchaudio.models import wavlm_model
        self.model = wavlm_model(encoder_num_buckets=16, encoder_max_distance=32, **_TA_W2V)

    def forward(self, wave):
        return self.model(wave)[0]


def ta_deepspeech():
    from torchaudio.models import DeepSpeech
    return DeepSpeech(n_feature=20, n_hidden=32, n_class=12)


def ta_wav2letter():
    from torchaudio.models import Wav2Letter
    return Wav2Letter(num_classes=12, input_type="mfcc", num_features=13)


def ta_convtasnet():
    from torchaudio.models import ConvTasNet
    return ConvTasNet(num_sources=2, enc_kernel_size=16, enc_num_feats=32, msk_kernel_size=3,
                      msk_num_feats=16, msk_num_hidden_feats=32, msk_num_layers=2, msk_num_stacks=1)


def ta_tacotron2_encoder():
    from torchaudio.models.tacotron2 import _Encoder
    return _Encoder(encoder_embedding_dim=32, encoder_n_convolution=2, encoder_kernel_size=5)


class TAEmformerRNNT(nn.Module):
    """Emformer RNN-T, joint network output for teacher-forced targets."""

    def __init__(self):
        super().__init__()
        from torchaudio.models import emformer_rnnt_model
        self.model = emformer_rnnt_model(
            input_dim=20, encoding_dim=32, num_symbols=12, segment_length=4, right_context_length=2,
            time_reduction_input_dim=32, time_reduction_stride=2, transformer_num_heads=2,
            transformer_ffn_dim=64, transformer_num_layers=2, transformer_dropout=0.0,
            transformer_activation="gelu", transformer_left_context_length=8,
            transformer_max_memory_size=0, transformer_weight_init_scale_strategy="depthwise",
            transformer_tanh_on_mem=True, symbol_embedding_dim=16, num_lstm_layers=1,
            lstm_layer_norm=True, lstm_layer_norm_epsilon=1e-3, lstm_dropout=0.0)

    def forward(self, feats, feat_lengths, targets, target_lengths):
        out, src_lens, tgt_lens, _ = self.model(feats, feat_lengths, targets, target_lengths)
        return out, src_lens, tgt_lens


# ---------------------------------------------------------------- speechbrain

def sb_ecapa():
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    return ECAPA_TDNN(input_size=20, lin_neurons=16, channels=[32, 32, 32, 32, 96],
                      attention_channels=16, res2net_scale=4, se_channels=16)


def sb_hifigan():
    from speechbrain.lobes.models.HifiGAN import HifiganGenerator
    return HifiganGenerator(
        in_channels=16, out_channels=1, resblock_type="1",
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], resblock_kernel_sizes=[3, 7],
        upsample_kernel_sizes=[8, 8], upsample_initial_channel=32, upsample_factors=[4, 4])


class SBConformerASR(nn.Module):
    """SpeechBrain TransformerASR, conformer encoder with RelPosMHAXL, teacher-forced."""

    def __init__(self):
        super().__init__()
        from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
        self.model = TransformerASR(
            tgt_vocab=20, input_size=20, d_model=32, nhead=2, num_encoder_layers=2,
            num_decoder_layers=1, d_ffn=64, dropout=0.0, kernel_size=7, encoder_module="conformer",
            attention_type="RelPosMHAXL", normalize_before=True, causal=False)

    def forward(self, feats, tokens, wav_lens):
        return self.model(feats, tokens, wav_lens)


def sb_crdnn():
    import speechbrain.nnet.RNN as rnn
    from speechbrain.lobes.models.CRDNN import CRDNN
    return CRDNN(input_shape=[None, None, 20], dropout=0.0, cnn_blocks=1, cnn_channels=[8],
                 rnn_class=rnn.LSTM, inter_layer_pooling_size=[2], rnn_layers=1, rnn_neurons=16,
                 dnn_blocks=1, dnn_neurons=16)


def sb_tacotron2_encoder():
    from speechbrain.lobes.models.Tacotron2 import Encoder
    return Encoder(encoder_n_convolutions=2, encoder_embedding_dim=32, encoder_kernel_size=5)


# ---------------------------------------------------------------- ESPnet

class ESPnetEncoder(nn.Module):
    """espnet2 AbsEncoder: (feats, lengths) -> (out, out_lengths)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, feats, lengths):
        out, out_lens, _ = self.encoder(feats, lengths)
        return out, out_lens


def espnet_conformer():
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    return ESPnetEncoder(ConformerEncoder(
        input_size=20, output_size=32, attention_heads=2, linear_units=64, num_blocks=2,
        dropout_rate=0.0, positional_dropout_rate=0.0, input_layer="conv2d", macaron_style=True,
        rel_pos_type="latest", pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
        cnn_module_kernel=7, use_flash_attn=False))


def espnet_ebranchformer():
    from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
    return ESPnetEncoder(EBranchformerEncoder(
        input_size=20, output_size=32, attention_heads=2, cgmlp_linear_units=64, cgmlp_conv_kernel=7,
        num_blocks=2, dropout_rate=0.0, positional_dropout_rate=0.0, input_layer="conv2d",
        linear_units=64, use_ffn=True, macaron_ffn=True, use_flash_attn=False))


def espnet_hifigan():
    from espnet2.gan_tts.hifigan import HiFiGANGenerator
    return HiFiGANGenerator(in_channels=16, out_channels=1, channels=32, upsample_scales=[4, 4],
                            upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3, 7],
                            resblock_dilations=[[1, 3, 5], [1, 3, 5]])


def espnet_tacotron2_encoder():
    from espnet.nets.pytorch_backend.tacotron2.encoder import Encoder
    return Encoder(idim=30, embed_dim=32, elayers=1, eunits=32, econv_layers=2, econv_chans=32,
                   econv_filts=5, dropout_rate=0.0)


# ---------------------------------------------------------------- asteroid

def asteroid_convtasnet():
    from asteroid.models import ConvTasNet
    return ConvTasNet(n_src=2, n_blocks=2, n_repeats=1, bn_chan=16, hid_chan=32, skip_chan=16,
                      kernel_size=16, n_filters=32, stride=8)


def asteroid_dprnn():
    from asteroid.models import DPRNNTasNet
    return DPRNNTasNet(n_src=2, bn_chan=16, hid_size=16, chunk_size=20, hop_size=10, n_repeats=2,
                       kernel_size=16, n_filters=32, stride=8)


# ---------------------------------------------------------------- torch

class TorchTransformer(nn.Module):
    """nn.Transformer (time-major), teacher-forced with causal tgt mask and src padding."""

    def __init__(self):
        super().__init__()
        self.src_proj = nn.Linear(20, 32)
        self.tgt_emb = nn.Embedding(20, 32)
        self.model = nn.Transformer(d_model=32, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                                    dim_feedforward=64, dropout=0.0)
        self.out = nn.Linear(32, 20)

    def forward(self, src, src_lengths, tgt):
        pad = torch.arange(src.size(0))[None, :] >= src_lengths[:, None]
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.size(0))
        y = self.model(self.src_proj(src), self.tgt_emb(tgt), tgt_mask=mask,
                       src_key_padding_mask=pad, memory_key_padding_mask=pad, tgt_is_causal=True)
        return self.out(y)


# ---------------------------------------------------------------- the zoo

def _padded(x, T, axis=1, min_len=1):
    """(x with zeros beyond each length, lengths); the lengths are descending."""
    lens = _lens(T, min_len)
    return _zero_pad(x, lens, axis), lens


def _wave(T):
    return (torch.randn(B, T, generator=_gen()),)


def _wave_lens(T):
    return _padded(torch.randn(B, T, generator=_gen()), T, min_len=60)


def _rel(args):
    x, lens = args
    return x, lens.float() / x.size(1)


def _sb_asr_inputs(T):
    feats, wav_lens = _rel(_padded(_feats(T, 20), T))
    return feats, _tokens(T // 2 + 1, 20, seed=1), wav_lens


def _transformer_inputs(T):
    src, lens = _padded(_feats(T, 20), T)
    return src.transpose(0, 1), lens, torch.randint(0, 20, (T // 2 + 1, B), generator=_gen(1))


_W = dict(min_len=60, default_len=800)  # raw waveform models

ZOO = [
    # transformers
    ZooModel("hf_wav2vec2", "transformers", _eval(hf_wav2vec2), _wave_lens, ({1: "time"}, {}),
             {"lengths": "time"}, padded=True, len_note="raw samples; conv stride 20, receptive field 40", **_W),
    ZooModel("hf_hubert", "transformers", _eval(hf_hubert), _wave_lens, ({1: "time"}, {}),
             {"lengths": "time"}, padded=True, len_note="raw samples", **_W),
    ZooModel("hf_wavlm", "transformers", _eval(hf_wavlm), _wave_lens, ({1: "time"}, {}),
             {"lengths": "time"}, padded=True, len_note="raw samples; gated rel. pos. bias", **_W),
    ZooModel("hf_w2v2_conformer_relpos", "transformers", _eval(hf_w2v2_conformer), _wave_lens,
             ({1: "time"}, {}), {"lengths": "time"}, len_note="raw samples; Transformer-XL style "
             "relative positions; conv module sees padding (valid end frames differ)", **_W),
    ZooModel("hf_whisper_encoder", "transformers", _eval(HFWhisperEncoder),
             lambda T: (torch.randn(B, 16, T, generator=_gen()),), ({},), fixed_len=64, min_len=64,
             default_len=64, len_note="must be exactly 2*max_source_positions (64) mel frames"),
    ZooModel("hf_whisper_decoder", "transformers", _eval(HFWhisperDecoder),
             lambda T: (_tokens(T, 64), torch.randn(B, T + 5, 32, generator=_gen(1))),
             ({1: "dec_time"}, {1: "enc_time"}), default_len=20, max_len=64,
             len_note="dec_time <= max_target_positions (64); enc_time = T+5 here"),
    ZooModel("hf_bert", "transformers", _eval(hf_bert), lambda T: _padded(_tokens(T, 100), T),
             ({1: "time"}, {}), {"lengths": "time"}, padded=True, max_len=128),
    ZooModel("hf_gpt2", "transformers", _eval(hf_gpt2), lambda T: _padded(_tokens(T, 100), T),
             ({1: "time"}, {}), {"lengths": "time"}, padded=True, max_len=128),
    ZooModel("hf_llama", "transformers", _eval(hf_llama), lambda T: _padded(_tokens(T, 100), T),
             ({1: "time"}, {}), {"lengths": "time"}, padded=True, len_note="RoPE, GQA, RMSNorm"),
    ZooModel("hf_t5", "transformers", _eval(HFT5),
             lambda T: (*_padded(_tokens(T, 100), T), _tokens(T // 2 + 1, 100, seed=1)),
             ({1: "src_time"}, {}, {1: "tgt_time"}), {"src_lengths": "src_time"}, padded=True,
             len_note="tgt length T//2+1; relative position buckets (log)"),
    # torchaudio
    ZooModel("ta_conformer", "torchaudio", _eval(ta_conformer), lambda T: _padded(_feats(T, 32), T),
             ({1: "time"}, {}), {"lengths": "time"},
             len_note="depthwise conv sees padding (valid frames differ slightly)"),
    ZooModel("ta_wav2vec2", "torchaudio", _eval(ta_wav2vec2), _wave_lens, ({1: "time"}, {}),
             {"lengths": "time"}, padded=True, len_note="raw samples", **_W),
    ZooModel("ta_wavlm", "torchaudio", _eval(TAWavLM), _wave, ({1: "time"},),
             len_note="raw samples; lengths unsupported (assert in torchaudio)", **_W),
    ZooModel("ta_deepspeech", "torchaudio", _eval(ta_deepspeech),
             lambda T: (_feats(T, 20)[:, None],), ({2: "time"},), len_note="input (B, 1, T, F)"),
    ZooModel("ta_wav2letter", "torchaudio", _eval(ta_wav2letter),
             lambda T: (_feats(T, 13).transpose(1, 2),), ({2: "time"},), min_len=4, default_len=24,
             len_note="input (B, F, T); T' = (T+1)//2; hidden sizes fixed by torchaudio (250/2000)"),
    ZooModel("ta_convtasnet", "torchaudio", _eval(ta_convtasnet),
             lambda T: (torch.randn(B, 1, T, generator=_gen()),), ({2: "time"},), min_len=16,
             default_len=400, len_note="pads T internally to fit the encoder stride (8)"),
    ZooModel("ta_tacotron2_encoder", "torchaudio", _eval(ta_tacotron2_encoder),
             lambda T: _padded(_feats(T, 32).transpose(1, 2), T, axis=2), ({2: "time"}, {}),
             {"input_lengths": "time"}, len_note="input (B, D, T); convs see padding, then packed BLSTM"),
    ZooModel("ta_emformer_rnnt", "torchaudio", _eval(TAEmformerRNNT),
             lambda T: (*_padded(_feats(T, 20), T, min_len=8),
                        *_padded(_tokens(T // 4 + 1, 12, 1), T // 4 + 1)),
             ({1: "time"}, {}, {1: "label_time"}, {}),
             {"feat_lengths": "time", "target_lengths": "label_time"}, min_len=8,
             len_note="T includes right context (2); segments of 4 after stride-2 reduction; "
             "last valid frame depends on padding"),
    # speechbrain
    ZooModel("sb_ecapa_tdnn", "speechbrain", _eval(sb_ecapa), lambda T: _rel(_padded(_feats(T, 20), T)),
             ({1: "time"}, {}), {"lengths": "time"}, lengths_relative=True, min_len=5,
             len_note="relative lengths; output (B, 1, 16); TDNN convs see padding, pooling masked"),
    ZooModel("sb_hifigan", "speechbrain", _eval(sb_hifigan),
             lambda T: (_feats(T, 16).transpose(1, 2),), ({2: "time"},),
             min_len=4, len_note="input (B, 16, T) -> (B, 1, 16*T); weight_norm"),
    ZooModel("sb_conformer_asr_relpos", "speechbrain", _eval(SBConformerASR),
             _sb_asr_inputs,
             ({1: "time"}, {1: "label_time"}, {}), {"wav_lens": "time"}, lengths_relative=True,
             len_note="teacher-forced; tokens == 0 are padding; label_time <= 2500; conv module sees padding"),
    ZooModel("sb_crdnn", "speechbrain", _eval(sb_crdnn), lambda T: (_feats(T, 20),), ({1: "time"},),
             min_len=2, len_note="LSTM; no lengths"),
    ZooModel("sb_tacotron2_encoder", "speechbrain", _eval(sb_tacotron2_encoder),
             lambda T: _padded(_feats(T, 32).transpose(1, 2), T, axis=2), ({2: "time"}, {}),
             {"input_lengths": "time"},
             len_note="input (B, D, T); convs see padding; lengths .cpu().numpy() -> packed LSTM"),
    # ESPnet
    ZooModel("espnet_conformer_relpos", "espnet", _eval(espnet_conformer),
             lambda T: _padded(_feats(T, 20), T, min_len=11), ({1: "time"}, {}), {"lengths": "time"},
             min_len=11, len_note="conv2d subsampling: T' = ((T-1)//2-1)//2 alone, but the "
             "mask-based out lengths in a padded batch are larger (all frames differ)"),
    ZooModel("espnet_ebranchformer", "espnet", _eval(espnet_ebranchformer),
             lambda T: _padded(_feats(T, 20), T, min_len=11), ({1: "time"}, {}), {"lengths": "time"},
             min_len=11, len_note="conv2d subsampling: T' = ((T-1)//2-1)//2 alone, but the "
             "mask-based out lengths in a padded batch are larger (all frames differ)"),
    ZooModel("espnet_hifigan", "espnet", _eval(espnet_hifigan),
             lambda T: (_feats(T, 16).transpose(1, 2),), ({2: "time"},),
             min_len=4, len_note="input (B, 16, T) -> (B, 1, 16*T); weight_norm"),
    ZooModel("espnet_tacotron2_encoder", "espnet", _eval(espnet_tacotron2_encoder),
             lambda T: _padded(_tokens(T, 30), T), ({1: "time"}, {}), {"ilens": "time"},
             len_note="token ids (0 = pad); convs see padding, then packed BLSTM; "
             "returns (out, lengths)"),
    # asteroid
    ZooModel("asteroid_convtasnet", "asteroid", _eval(asteroid_convtasnet), _wave, ({1: "time"},),
             min_len=16, default_len=400, len_note="raw samples; output padded back to T"),
    ZooModel("asteroid_dprnn", "asteroid", _eval(asteroid_dprnn), _wave, ({1: "time"},),
             min_len=16, default_len=400, len_note="raw samples; chunks of 20, hop 10 (unfold/fold)"),
    # torch
    ZooModel("torch_transformer", "torch", _eval(TorchTransformer),
             _transformer_inputs,
             ({0: "src_time", 1: "batch"}, {}, {0: "tgt_time", 1: "batch"}),
             {"src_lengths": "src_time"}, padded=True, len_note="time-major; tgt length T//2+1"),
]

BY_NAME = {m.name: m for m in ZOO}
