"""Real models from installable libraries (tests/zoo/models.py; install them with tests/zoo/install.sh):
each converts with per-op parity, is rebuilt from the written config + checkpoint at other lengths,
and, where its valid outputs do not depend on the padding, runs on a padded batch with NaN padding.
"""

import importlib.util

import pytest
import torch
from parity_helpers import COVERED
from zoo.models import ZOO

from torchdispatch_returnn import CaptureError
from torchdispatch_returnn.testing import assert_converts

#: lengths to try besides the example one (models with constraints on T)
OTHER = {
    "ta_convtasnet": [320, 480],  # a multiple of the encoder stride (8): torch's code branches on T % 8
    "asteroid_convtasnet": [240, 560],
    "ta_wav2letter": [16, 40],
    "hf_whisper_decoder": {"dec_time": [7, 21], "enc_time": [12, 26]},
    "hf_t5": {"src_time": [30, 70], "tgt_time": [12, 30]},
    "torch_transformer": {"src_time": [30, 70], "tgt_time": [12, 30]},
    "sb_conformer_asr_relpos": {"time": [40, 70], "label_time": [5, 12]},
}

#: models with an op the converter refuses, and the error (a documented limit, not a crash)
LIMITS = {
    "hf_wavlm": "merges the batch",
    "ta_emformer_rnnt": "merges the batch axis with more than one axis",
    "asteroid_dprnn": "merges the batch with another axis",
}

#: models whose deep float32 stacks accumulate more rounding than the default 1e-5
ATOL = {"ta_wav2letter": 1e-4, "sb_hifigan": 1e-4, "espnet_hifigan": 1e-4}


def _installed(library: str) -> bool:
    return library == "torch" or importlib.util.find_spec(library) is not None


@pytest.mark.slow
@pytest.mark.parametrize("z", ZOO, ids=lambda z: z.name)
def test_zoo_model_converts(z):
    if not _installed(z.library):
        pytest.skip(f"{z.library} is not installed (bash tests/zoo/install.sh)")
    torch.manual_seed(0)
    model = z.factory()
    xs = z.inputs(z.fixed_len or z.default_len)
    dyn = None if z.fixed_len else z.dynamic_shapes
    if z.name in LIMITS:
        with pytest.raises(CaptureError, match=LIMITS[z.name]) as ei:
            assert_converts(model, *xs, dynamic_shapes=dyn, lengths=z.lengths or None, grads=True)
        assert ei.value.op and ei.value.location  # names the torch callable and the line
        return
    net = _converts(z, model, xs, dyn)
    COVERED.update(net.ops_seen)
    assert net.parity.ok and len(net.parity) > 5


def _converts(z, model, xs, dyn, nested=False):
    other = OTHER.get(z.name)
    if other is None and not z.fixed_len:
        t = z.default_len
        other = [max(z.min_len, (2 * t) // 3), min(z.max_len or 10 ** 9, (3 * t) // 2)]
    return assert_converts(model, *xs, dynamic_shapes=dyn, lengths=z.lengths or None, other_lengths=other,
                           padded=z.padded, atol=ATOL.get(z.name, 1e-5), grads=True, nested=nested)


#: models also converted with nested=True (all 27 convertible zoo models pass it; these cover the kinds)
NESTED = ["hf_wav2vec2", "ta_conformer", "torch_transformer", "sb_crdnn", "espnet_ebranchformer"]


@pytest.mark.slow
@pytest.mark.parametrize("z", [z for z in ZOO if z.name in NESTED], ids=lambda z: z.name)
def test_zoo_model_converts_nested(z):
    """The module hierarchy as subnetworks: the nested config + checkpoint agree with torch like the flat one."""
    if not _installed(z.library):
        pytest.skip(f"{z.library} is not installed (bash tests/zoo/install.sh)")
    torch.manual_seed(0)
    net = _converts(z, z.factory(), z.inputs(z.fixed_len or z.default_len), None if z.fixed_len else z.dynamic_shapes,
                    nested=True)
    subnets = [d for d in net.net_dict.values() if d["class"] == "subnetwork"]
    assert net.parity.ok and subnets and all("output" in d["subnetwork"] for d in subnets)
