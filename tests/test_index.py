import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from parity_helpers import Case, Fn, assert_parity

IDS = dict(dtypes=[torch.int64], high=20)


class PosEnc(nn.Module):
    """Sinusoidal table sliced with the dynamic length (as many encoders do)."""

    def __init__(self, d=6, max_len=100):
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d, 2) * (-4.0 / d))
        pe = torch.zeros(max_len, d)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[: x.size(1)]


CASES = [
    Case("Embedding", lambda: nn.Embedding(20, 6), [(3, 11)], ({1: "time"},), **IDS),
    Case("Embedding_padding_idx", lambda: nn.Embedding(20, 6, padding_idx=0), [(3, 11)], ({1: "time"},), **IDS),
    Case("F_embedding", lambda: Fn(lambda m, i: F.embedding(i, m.p0) * 2, torch.randn(20, 4)), [(3, 11)],
         ({1: "time"},), **IDS),
    Case("Embedding_then_linear", lambda: nn.Sequential(nn.Embedding(20, 6), nn.Linear(6, 3)), [(3, 11)],
         ({1: "time"},), **IDS),
    Case("posenc_slice_dynamic", lambda: PosEnc(), [(3, 11, 6)], ({1: "time"},)),
    Case("index_param_rows", lambda: Fn(lambda m, i: m.p0[i] + 1, torch.randn(20, 4)), [(3, 11)], ({1: "time"},),
         **IDS),
    Case("int32_ids", lambda: nn.Embedding(20, 6), [(3, 11)], ({1: "time"},), dtypes=[torch.int32], high=20),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_index(case):
    assert_parity(case)


def test_sort_topk_scatter():
    from parity_helpers import COVERED

    from torchdispatch_returnn.testing import assert_converts

    class M(torch.nn.Module):
        def forward(self, x):
            v, i = torch.sort(x, dim=-1, descending=True)
            t, ti = torch.topk(x, 2, dim=1)  # over time: padding never wins
            s = torch.zeros_like(x).scatter(-1, i, v * 2)
            a = torch.zeros(x.shape[0], 3).scatter_add(1, x.argmax(-1)[:, :3] % 3, x[:, :3, 0])
            return v + s, i, t.sum(1), ti, torch.argsort(x, dim=1), a, torch.msort(x.transpose(0, 2))

    net = assert_converts(M(), torch.randn(3, 7, 5), dynamic_shapes=({1: "time"},), grads=True)
    COVERED.update(net.ops_seen)
