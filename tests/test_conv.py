import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

D1 = ({2: "time"},)
D2 = ({2: "time"},)


def c1(name, factory, shape=(3, 4, 17), **kw):
    return Case(name, factory, [shape], D1, **kw)


def c2(name, factory, shape=(3, 2, 17, 10), **kw):
    return Case(name, factory, [shape], D2, **kw)


CASES = [
    Case("unfold_frames", lambda: Fn(lambda m, x: F.unfold(x.unsqueeze(-1), (4, 1), padding=(4, 0), stride=(2, 1))),
         [(2, 3, 13)], ({2: "time"},)),
    Case("unfold_2d", lambda: Fn(lambda m, x: F.unfold(x, (2, 3), stride=(1, 2))), [(2, 3, 5, 7)], None),
    c1("conv1d", lambda: nn.Conv1d(4, 6, 3)),
    c1("conv1d_pad", lambda: nn.Conv1d(4, 6, 3, padding=1)),
    c1("conv1d_stride2", lambda: nn.Conv1d(4, 6, 5, stride=2)),
    c1("conv1d_stride3_pad2", lambda: nn.Conv1d(4, 6, 4, stride=3, padding=2)),
    c1("conv1d_same", lambda: nn.Conv1d(4, 6, 5, padding="same")),
    c1("conv1d_valid", lambda: nn.Conv1d(4, 6, 3, padding="valid")),
    c1("conv1d_dilation", lambda: nn.Conv1d(4, 6, 3, dilation=2)),
    c1("conv1d_same_dilation", lambda: nn.Conv1d(4, 6, 3, dilation=3, padding="same")),
    c1("conv1d_groups", lambda: nn.Conv1d(4, 6, 3, groups=2)),
    c1("conv1d_depthwise", lambda: nn.Conv1d(4, 8, 3, groups=4, padding=1)),
    c1("conv1d_groups_stride_pad_dilation", lambda: nn.Conv1d(4, 6, 3, padding=2, dilation=2, groups=2)),
    c1("conv1d_groups_stride_pad", lambda: nn.Conv1d(4, 6, 4, stride=2, padding=2, groups=2)),
    c1("conv1d_groups_weight_norm", lambda: torch.nn.utils.parametrizations.weight_norm(
        nn.Conv1d(4, 8, 6, padding=3, groups=2), dim=2)),  # (wav2vec2's positional conv)
    c1("conv1d_nobias", lambda: nn.Conv1d(4, 6, 3, bias=False)),
    c1("conv1d_stack", lambda: nn.Sequential(nn.Conv1d(4, 6, 3, stride=2), nn.ReLU(), nn.Conv1d(6, 5, 3, stride=2))),
    c1("F_conv1d", lambda: Fn(lambda m, x: F.conv1d(x, m.p0, m.p1, stride=2, padding=1), torch.randn(5, 4, 3),
                             torch.randn(5))),
    c2("conv2d", lambda: nn.Conv2d(2, 4, 3)),
    c2("conv2d_stride_pad", lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1)),
    c2("conv2d_rect", lambda: nn.Conv2d(2, 4, (3, 5), stride=(2, 1), padding=(1, 2))),
    c2("conv2d_same", lambda: nn.Conv2d(2, 4, 3, padding="same")),
    c2("conv2d_dilation", lambda: nn.Conv2d(2, 4, 3, dilation=2)),
    c2("conv2d_dilation_stride_pad", lambda: nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3))),
    c2("conv2d_dilation_same", lambda: nn.Conv2d(2, 4, 3, padding="same", dilation=2)),
    c2("conv2d_groups", lambda: nn.Conv2d(2, 4, 3, groups=2, bias=False)),
    c2("conv2d_depthwise", lambda: nn.Conv2d(2, 6, 3, groups=2, padding=1)),
    c2("conv2d_subsampling", lambda: nn.Sequential(nn.Conv2d(2, 4, 3, 2), nn.ReLU(), nn.Conv2d(4, 4, 3, 2))),
    c1("convT1d", lambda: nn.ConvTranspose1d(4, 3, 4, stride=2, padding=1)),
    c1("convT1d_plain", lambda: nn.ConvTranspose1d(4, 3, 3)),
    c1("convT1d_outpad", lambda: nn.ConvTranspose1d(4, 3, 3, stride=2, output_padding=1, bias=False)),
    c1("convT1d_k10_s5_p3_op1", lambda: nn.ConvTranspose1d(4, 3, kernel_size=10, stride=5, padding=3,
                                                             output_padding=1)),
    c1("convT1d_k_lt_s", lambda: nn.ConvTranspose1d(4, 3, kernel_size=2, stride=3)),
    c1("F_conv_transpose1d", lambda: Fn(lambda m, x: F.conv_transpose1d(x, m.p0, stride=2), torch.randn(4, 5, 3))),
    c2("convT2d", lambda: nn.ConvTranspose2d(2, 3, 3, stride=2)),
    Case("convT2d_k10x3_s5_p23_op1", lambda: nn.ConvTranspose2d(2, 3, kernel_size=(10, 3), stride=5, padding=(2, 3),
                                                                output_padding=1), [(2, 2, 7, 9)],
         ({2: "height", 3: "width"},)),
    Case("conv2d_both_dynamic", lambda: nn.Conv2d(2, 3, (3, 5), stride=2), [(2, 2, 17, 19)],
         ({2: "height", 3: "width"},)),
    c2("convT2d_pad", lambda: nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1)),
    c1("convT1d_groups", lambda: nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2)),
    c1("convT1d_dilation", lambda: nn.ConvTranspose1d(4, 3, 3, stride=2, dilation=3, padding=1)),
    c1("convT1d_outpad_ge_stride", lambda: nn.ConvTranspose1d(4, 3, 3, stride=2, dilation=3, output_padding=2)),
    c2("convT2d_groups_dilation_outpad", lambda: nn.ConvTranspose2d(2, 4, (4, 3), stride=(3, 2), padding=(1, 2),
                                                                    output_padding=(2, 3), groups=2, dilation=4)),
    Case("conv3d", lambda: nn.Conv3d(2, 3, (3, 2, 2), stride=(2, 1, 1), padding=(1, 0, 1)), [(2, 2, 11, 4, 5)],
         ({2: "time"},)),
    Case("conv3d_dilation_groups", lambda: nn.Conv3d(2, 4, 2, dilation=(2, 1, 2), groups=2), [(2, 2, 9, 4, 5)],
         ({2: "time"},)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_conv(case):
    assert_parity(case)
