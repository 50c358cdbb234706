"""Convert a small PyTorch encoder to RETURNN, then load the written config + checkpoint with plain
RETURNN (as a RETURNN user would) and run it at another length.

    python examples/convert_encoder.py [--out out/example]
"""

import argparse
import io
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import torch

from torchdispatch_returnn import returnn_capture
from torchdispatch_returnn.demo import Encoder


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="out/example")
    args = p.parse_args()
    torch.manual_seed(0)
    model = Encoder(num_blocks=2).eval()
    with torch.no_grad(), returnn_capture(dynamic_shapes=({1: "time"},)) as net:
        model(torch.randn(2, 40, 40))
    print(net.parity)
    config = net.save_config(os.path.join(args.out, "encoder.config"))
    ckpt = net.save_checkpoint(os.path.join(args.out, "encoder"))

    # plain RETURNN from here on
    import tensorflow as tf
    from returnn.config import Config
    from returnn.tf.network import TFNetwork

    cfg = Config()
    cfg.load_file(io.StringIO(open(config).read()))
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        network = TFNetwork(config=cfg, train_flag=False)
        network.construct_from_dict(cfg.typed_value("network"))
        network.load_params_from_file(ckpt, session)
        data = network.extern_data.get_default_input_data()
        x = torch.randn(2, 63, 40)
        out = session.run(network.get_layer("output").output.placeholder,
                          {data.placeholder: x.numpy(), data.get_sequence_lengths(): [63, 63]})
    with torch.no_grad():
        diff = float(np.abs(out - model(x).numpy()).max())
    print(f"plain RETURNN from {config} + {ckpt}: output {out.shape}, max abs diff vs torch {diff:.2e}")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
