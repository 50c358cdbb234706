"""FFT family and STFT (handlers/fft.py): torch.fft transforms, complex-to-real ops, stft."""

import pytest
import torch
from parity_helpers import Case, Fn, assert_padded, assert_parity

from torchdispatch_returnn import UnsupportedOpError, returnn_capture

DYN = ({1: "time"},)
F = torch.fft


def fc(name, fn, shapes=[(3, 11, 8)], dyn=DYN, **kw):
    return Case(name, lambda: Fn(lambda m, *xs: fn(*xs)), shapes, dyn, **kw)


CASES = [
    fc("rfft_abs", lambda x: F.rfft(x).abs()),
    fc("rfft_real_imag", lambda x: F.rfft(x, dim=-1).real * 2 + F.rfft(x).imag),
    fc("rfft_n_ortho_view_as_real", lambda x: torch.view_as_real(F.rfft(x, n=10, norm="ortho"))),
    fc("fft_forward_angle", lambda x: torch.angle(F.fft(x, norm="forward")) * (x[..., :1] > -9)),
    fc("ifft_of_fft", lambda x: F.ifft(F.fft(x)).real),
    fc("irfft_of_rfft", lambda x: F.irfft(F.rfft(x), n=8)),
    fc("irfft_real_input", lambda x: F.irfft(x, norm="ortho")),
    fc("hfft", lambda x: F.hfft(x, n=12)),
    fc("ihfft_abs", lambda x: F.ihfft(x).abs()),
    fc("rfft_time_n", lambda x: F.rfft(x, n=16, dim=1).abs()),
    fc("fft2_abs", lambda x: F.fft2(x).abs(), [(3, 11, 4, 6)]),
    fc("ifft2_real", lambda x: F.ifft2(x, s=(5, 6), norm="forward").real, [(3, 11, 4, 6)]),
    fc("rfft2_view_as_real", lambda x: torch.view_as_real(F.rfft2(x, dim=(0, 2))), grads=False),
    fc("rfft2_static", lambda x: torch.view_as_real(F.rfft2(x, norm="forward")), [(3, 11, 4, 6)]),
    fc("irfft2_of_rfft2", lambda x: F.irfft2(F.rfft2(x, s=(4, 8), dim=(1, 2)), s=(4, 8), dim=(1, 2))),
    fc("fftn_ifftn", lambda x: F.ifftn(F.fftn(x, dim=(-1,)), dim=(2, 3), norm="ortho").imag, [(3, 11, 4, 6)]),
    fc("rfftn_irfftn", lambda x: F.irfftn(F.rfftn(x, dim=(2,)), dim=(2,))),
    fc("hfft2_ihfft2", lambda x: F.hfft2(F.ihfft2(x), s=(4, 6)), [(3, 11, 4, 6)]),
    fc("hfftn_ihfftn", lambda x: F.hfftn(F.ihfftn(x, dim=(2,)), dim=(2,), s=(8,))),
    fc("fftshift", lambda x: F.fftshift(x, dim=-1) + F.ifftshift(x, dim=(2,))),
    fc("fftshift_complex", lambda x: F.fftshift(F.fft(x), dim=-1).abs()),
    fc("conj_imag", lambda x: F.fft(x).conj().imag + torch.conj(x)),
    fc("complex_polar", lambda x: torch.complex(x, x * 2).abs() + torch.angle(torch.polar(x.abs(), x))),
    fc("view_as_complex", lambda x: torch.view_as_complex(x.view(3, -1, 4, 2)).abs()),
    fc("rfftfreq_constants", lambda x: x * F.rfftfreq(14)[:8] + F.fftfreq(8, d=0.5)),
    fc("real_of_real", lambda x: torch.real(x) + torch.conj(x).resolve_conj() + torch.angle(x - 0.5)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fft(case):
    assert_parity(case)


class Stft(torch.nn.Module):
    def __init__(self, n_fft=16, hop=4, win=None, window="hann", center=True, pad_mode="reflect", out="abs", **kw):
        super().__init__()
        self.n_fft, self.hop, self.win, self.center, self.pad_mode, self.out, self.kw = \
            n_fft, hop, win, center, pad_mode, out, kw
        self.register_buffer("window", torch.hann_window(win or n_fft) if window == "hann" else None)

    def forward(self, x):
        z = torch.stft(x, self.n_fft, self.hop, self.win, self.window, center=self.center, pad_mode=self.pad_mode,
                       return_complex=True, **self.kw)
        if self.out == "abs":
            return z.abs().pow(2)
        return torch.view_as_real(z)


def mel_filterbank(n_freq, n_mels, sample_rate):
    """Triangular mel filters (HTK mel scale), (n_freq, n_mels)."""
    def mel(f):
        return 2595.0 * torch.log10(1.0 + f / 700.0)

    freqs = torch.linspace(0, sample_rate / 2, n_freq)
    pts = 700.0 * (10 ** (torch.linspace(mel(torch.tensor(0.0)), mel(torch.tensor(sample_rate / 2)), n_mels + 2)
                          / 2595.0) - 1.0)
    lo, mid, hi = pts[:-2], pts[1:-1], pts[2:]
    up = (freqs[:, None] - lo) / (mid - lo)
    down = (hi - freqs[:, None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0)


class LogMel(torch.nn.Module):
    def __init__(self, n_fft=32, hop=8, n_mels=10):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer("fb", mel_filterbank(n_fft // 2 + 1, n_mels, 16000))

    def forward(self, x):  # (B, T) -> (B, frames, n_mels)
        spec = torch.stft(x, self.n_fft, hop_length=self.hop, window=self.window, return_complex=True)
        power = spec.abs().pow(2)
        mel = torch.matmul(power.transpose(1, 2), self.fb)
        return torch.log(torch.clamp(mel, min=1e-10))


SDYN = ({1: "time"},)
STFT = [
    Case("stft_power", lambda: Stft(), [(3, 40)], SDYN, seq_lens=(40, 25, 31), other_sizes=(25, 33)),
    Case("stft_view_as_real_normalized", lambda: Stft(out="real", normalized=True), [(3, 40)], SDYN,
         seq_lens=(40, 25, 31), other_sizes=(25, 33)),
    Case("stft_constant_pad_win", lambda: Stft(n_fft=15, hop=5, win=9, pad_mode="constant"), [(3, 40)], SDYN,
         seq_lens=(40, 22, 31)),
    Case("stft_no_window_twosided", lambda: Stft(window=None, onesided=False, out="real"), [(3, 40)], SDYN,
         seq_lens=(40, 25, 31), other_sizes=(25, 33)),
    Case("stft_not_centered", lambda: Stft(n_fft=12, hop=3, center=False), [(3, 40)], SDYN, seq_lens=(40, 25, 31),
         other_sizes=(25, 33)),
    Case("log_mel", lambda: LogMel(), [(3, 64)], SDYN, other_sizes=(40, 57), seq_lens=(64, 41, 50), atol=1e-4),
]


@pytest.mark.parametrize("case", STFT, ids=str)
def test_stft_padded(case):
    assert_padded(case)


class Istft(torch.nn.Module):
    def __init__(self, n_fft=16, hop=4, center=True, length=None):
        super().__init__()
        self.n_fft, self.hop, self.center, self.length = n_fft, hop, center, length
        self.register_buffer("window", torch.hann_window(n_fft))

    def forward(self, x):
        z = torch.stft(x, self.n_fft, self.hop, window=self.window, center=self.center, return_complex=True)
        return torch.istft(z, self.n_fft, self.hop, window=self.window, center=self.center,
                           length=self.length)


ISTFT = [
    Case("istft_roundtrip", lambda: Istft(), [(3, 40)], SDYN, seq_lens=(40, 25, 31), other_sizes=(25, 33)),
    Case("istft_length", lambda: Istft(n_fft=12, hop=3, length=30), [(3, 40)], SDYN, seq_lens=(40, 25, 31),
         other_sizes=(25, 33)),
]


@pytest.mark.parametrize("case", ISTFT, ids=str)
def test_istft_padded(case):
    assert_padded(case)


@pytest.mark.parametrize("fn, why", [
    (lambda x: F.rfft(x, dim=1).abs(), "without n="),
    (lambda x: F.fftshift(x, dim=1), "dynamic axis"),
], ids=["fft_dynamic_no_n", "fftshift_dynamic"])
def test_refused(fn, why):
    with pytest.raises(UnsupportedOpError, match=why):
        with returnn_capture(dynamic_shapes=DYN):
            Fn(lambda m, x: fn(x))(torch.randn(3, 11, 8))


def test_complex_values_go_through_other_ops():
    """Complex layers (complex64): a spectrum transposed, sliced and scaled before its magnitude."""
    assert_parity(Case("complex_through_ops", lambda: Fn(lambda m, x: (F.rfft(x).transpose(1, 2)[:, 1:] * 2).abs()),
                       [(3, 11, 8)], DYN))


def test_inverse_fft_of_real_input_over_time():
    """ifft/ihfft of a real input give torch results with the conjugate bit set: the self-checks (other
    length, padded batch with NaN padding) compare them too."""
    for fn in (lambda m, x: torch.fft.ifft(x, dim=-1), lambda m, x: torch.fft.ihfft(x, dim=-1)):
        net = assert_parity(Case("inverse_fft", lambda: Fn(fn), [(3, 9, 6)], ({1: "time"},), grads=False))
        assert any(c.what.startswith("padded batch") and c.ok for c in net.parity.self_checks)
