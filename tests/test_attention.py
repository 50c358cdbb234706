import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_padded, assert_parity

BTF = ({1: "time"},)


def fn(f, *params):
    return lambda: Fn(lambda m, *xs: f(m, *xs), *[p() for p in params])


def _heads(x, h=2):
    b, t, e = x.shape
    return x.view(b, t, h, e // h).transpose(1, 2)


class MHA(nn.Module):
    def __init__(self, batch_first=True, weights=False, kpm=False):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
        self.batch_first, self.weights, self.kpm = batch_first, weights, kpm

    def forward(self, x):
        q = x if self.batch_first else x.transpose(0, 1)
        kw = {}
        if self.kpm:
            kw["key_padding_mask"] = x[:, :, 0] > 1.5
        out, w = self.mha(q, q, q, need_weights=self.weights, **kw)
        out = out if self.batch_first else out.transpose(0, 1)
        return (out, w) if self.weights else out


class Enc(nn.Module):
    def __init__(self, norm_first=False, act="relu"):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True, norm_first=norm_first, activation=act)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    def forward(self, x):
        return self.enc(x)
class EncMask(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
    def forward(self, x, lengths):
        mask = torch.arange(x.shape[1])[None, :] >= lengths[:, None]
        return self.enc(x, src_key_padding_mask=mask)
class Dec(nn.Module):
    def __init__(self):
        super().__init__()
        self.dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)
    def forward(self, x):
        t = x.shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(t)
        return self.dec(x, x * 0.5, tgt_mask=causal, tgt_is_causal=True)


CASES = [
    Case("sdpa", fn(lambda m, x: F.scaled_dot_product_attention(_heads(x), _heads(x * 2), _heads(x))), [(3, 9, 8)],
         BTF),
    Case("sdpa_causal", fn(lambda m, x: F.scaled_dot_product_attention(_heads(x), _heads(x), _heads(x),
                                                                      is_causal=True)), [(3, 9, 8)], BTF),
    Case("sdpa_scale", fn(lambda m, x: F.scaled_dot_product_attention(_heads(x), _heads(x), _heads(x), scale=0.3)),
         [(3, 9, 8)], BTF),
    Case("MultiheadAttention", lambda: MHA(), [(3, 9, 8)], BTF),
    Case("MultiheadAttention_time_major", lambda: MHA(batch_first=False), [(3, 9, 8)], BTF),
    Case("MultiheadAttention_weights", lambda: MHA(weights=True), [(3, 9, 8)], BTF),
    Case("MultiheadAttention_key_padding_mask", lambda: MHA(kpm=True), [(3, 9, 8)], BTF),
]

TRANSFORMER = [
    Case("TransformerEncoder", Enc, [(3, 9, 8)], BTF),
    Case("TransformerEncoder_norm_first_gelu", lambda: Enc(True, "gelu"), [(3, 9, 8)], BTF),
    Case("TransformerDecoderLayer_causal", Dec, [(3, 9, 8)], BTF),
]


@pytest.mark.parametrize("case", TRANSFORMER, ids=str)
def test_torch_transformer_layers_padded(case):
    assert_padded(case)


def test_transformer_encoder_with_key_padding_mask_from_lengths():
    from torchdispatch_returnn import returnn_capture

    torch.manual_seed(0)
    m = EncMask().eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}) as net:
        m(torch.randn(3, 9, 8), torch.tensor([9, 4, 6]))
    assert net.parity.ok, str(net.parity)
    x2, l2 = torch.randn(2, 12, 8), torch.tensor([12, 7])
    got = net.run(x2, l2)
    for b in range(2):
        n = int(l2[b])
        with torch.no_grad():
            want = m(x2[b:b + 1, :n], l2[b:b + 1])
        torch.testing.assert_close(torch.from_numpy(got[b:b + 1, :n]), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_attention(case):
    assert_parity(case)


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3]], ids=str)
def test_attention_padded(case):
    assert_padded(case)


def test_mha_causal_attn_mask_dynamic():
    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            t = x.shape[1]
            mask = torch.arange(t)[None, :] > torch.arange(t)[:, None]  # True = masked
            return self.mha(x, x, x, attn_mask=mask, need_weights=False)[0]

    assert_padded(Case("mha_causal", Causal, [(3, 9, 8)], BTF))
