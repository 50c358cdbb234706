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
