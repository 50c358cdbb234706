"""Small whole models (ASR frontends, Conformer block, wav2vec2-style feature extractor, x-vector
TDNN, a HiFi-GAN-style generator with weight norm): captured, rebuilt from config + checkpoint at other lengths, and checked per sequence on
padded batches with garbage padding."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, assert_padded
from torch.nn.utils.parametrizations import weight_norm

BTF = ({1: "time"},)


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.lin = nn.Linear(4 * 4, 6)
    def forward(self, x):  # B, T, 16
        y = self.c(x.unsqueeze(1))
        b, c, t, f = y.shape
        return self.lin(y.permute(0, 2, 1, 3).reshape(b, t, c * f))
class ConvModule(nn.Module):
    def __init__(self, d=8, k=7):
        super().__init__()
        self.ln = nn.LayerNorm(d); self.pw1 = nn.Conv1d(d, 2 * d, 1); self.dw = nn.Conv1d(d, d, k, padding=k // 2, groups=d)
        self.bn = nn.BatchNorm1d(d); self.pw2 = nn.Conv1d(d, d, 1)
    def forward(self, x):
        y = self.ln(x).transpose(1, 2)
        y = F.glu(self.pw1(y), dim=1)
        y = self.pw2(F.silu(self.bn(self.dw(y))))
        return x + y.transpose(1, 2)
class Conformer(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.ff1 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 16), nn.SiLU(), nn.Dropout(0.1), nn.Linear(16, d))
        self.ln_att = nn.LayerNorm(d); self.att = nn.MultiheadAttention(d, 2, batch_first=True)
        self.conv = ConvModule(d)
        self.ff2 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 16), nn.SiLU(), nn.Linear(16, d))
        self.ln = nn.LayerNorm(d)
    def forward(self, x):
        x = x + 0.5 * self.ff1(x)
        h = self.ln_att(x)
        x = x + self.att(h, h, h, need_weights=False)[0]
        x = self.conv(x)
        x = x + 0.5 * self.ff2(x)
        return self.ln(x)
class Wav2Vec2FE(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv1d(1, 8, 10, 5, bias=False); self.gn = nn.GroupNorm(8, 8)
        self.c1 = nn.Conv1d(8, 8, 3, 2, bias=False)
    def forward(self, wav):  # B, T
        y = F.gelu(self.gn(self.c0(wav.unsqueeze(1))))
        return F.gelu(self.c1(y)).transpose(1, 2)
class XVector(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = nn.Sequential(nn.Conv1d(6, 8, 5), nn.ReLU(), nn.BatchNorm1d(8), nn.Conv1d(8, 8, 3, dilation=2), nn.ReLU(), nn.Conv1d(8, 8, 3, dilation=3), nn.ReLU())
        self.out = nn.Linear(16, 4)
    def forward(self, x):
        y = self.t(x.transpose(1, 2))
        return self.out(torch.cat([y.mean(-1), y.std(-1)], -1))


class ResBlock(nn.Module):
    def __init__(self, c, k=3, dil=(1, 3)):
        super().__init__()
        self.convs = nn.ModuleList([weight_norm(nn.Conv1d(c, c, k, dilation=d, padding=d * (k - 1) // 2)) for d in dil])
    def forward(self, x):
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, 0.1))
        return x
class TinyHiFiGAN(nn.Module):
    def __init__(self, mel=8, ch=8):
        super().__init__()
        self.conv_pre = weight_norm(nn.Conv1d(mel, ch, 7, padding=3))
        self.ups = nn.ModuleList([weight_norm(nn.ConvTranspose1d(ch, ch // 2, 4, 2, 1)), weight_norm(nn.ConvTranspose1d(ch // 2, ch // 4, 4, 2, 1))])
        self.res = nn.ModuleList([ResBlock(ch // 2), ResBlock(ch // 4)])
        self.conv_post = weight_norm(nn.Conv1d(ch // 4, 1, 7, padding=3))
    def forward(self, mel):
        x = self.conv_pre(mel)
        for up, res in zip(self.ups, self.res):
            x = res(up(F.leaky_relu(x, 0.1)))
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


CASES = [
    Case("vgg_frontend", VGG, [(3, 21, 16)], BTF, seq_lens=(21, 9, 14), other_sizes=(16, 30)),
    Case("conformer_block", Conformer, [(3, 9, 8)], BTF),
    Case("wav2vec2_feature_extractor", Wav2Vec2FE, [(3, 161)], BTF, seq_lens=(161, 90, 121), other_sizes=(120, 200)),
    Case("tiny_hifigan_generator", TinyHiFiGAN, [(3, 8, 11)], ({2: "time"},), seq_lens=(11, 5, 8)),
    Case("xvector_tdnn", XVector, [(3, 25, 6)], BTF, seq_lens=(25, 15, 20), other_sizes=(19, 30)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_model_padded(case):
    assert_padded(case)
