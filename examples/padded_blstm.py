"""A BLSTM tagger whose forward takes the sequence lengths: capture with the lengths tied to the time
dim, then run a padded batch and compare each sequence with PyTorch on that sequence alone.

    python examples/padded_blstm.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torchdispatch_returnn import returnn_capture


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(20, 32, num_layers=2, bidirectional=True, batch_first=True)
        self.out = nn.Linear(64, 10)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        y, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        return self.out(y).log_softmax(-1)


def main():
    torch.manual_seed(0)
    model = Tagger().eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"}, None), lengths={"lengths": "time"}) as net:
        model(torch.randn(3, 30, 20), torch.tensor([30, 12, 21]))
    print(f"parity {'OK' if net.parity.ok else 'FAILED'} over {len(net.parity)} ops")
    lengths = torch.tensor([50, 17, 33, 8])
    x = torch.randn(4, 50, 20)
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = float("nan")  # garbage in the padding
    out = net.run(x, lengths)
    worst = 0.0
    with torch.no_grad():
        for b, n in enumerate(lengths.tolist()):
            want = model(x[b:b + 1, :n], lengths[b:b + 1])[0].numpy()
            worst = max(worst, float(np.abs(out[b, :n] - want).max()))
    print(f"padded batch of lengths {lengths.tolist()}: max abs diff per sequence vs torch alone {worst:.2e}")
    return 0 if net.parity.ok and worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
