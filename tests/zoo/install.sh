#!/usr/bin/env bash
# Install the zoo's model libraries (pinned) into the active venv; torch stays 2.13.0.
# Needs only PyPI. Idempotent. Usage: . venv/bin/activate && bash tests/zoo/install.sh
set -euo pipefail

PY=${PYTHON:-python}
TORCH=2.13.0
pip() { "$PY" -m pip --disable-pip-version-check --no-input "$@"; }

# A constraints file so that no step can re-resolve torch.
cons=$(mktemp)
trap 'rm -f "$cons"' EXIT
printf '%s\n' "torch==$TORCH" huggingface-hub==2.4.0 tokenizers==0.23.3 safetensors==0.8.0 >"$cons"

"$PY" -c "import torch" 2>/dev/null || pip install -c "$cons" "torch==$TORCH"
"$PY" -c "import torch, sys; sys.exit(not torch.__version__.startswith('$TORCH'))" ||
    { echo "install.sh: torch is not $TORCH in this venv" >&2; exit 1; }

# Libraries with their own (torch-free) dependencies, plus the light deps of the next group.
pip install -c "$cons" numpy transformers==5.24.0 \
    scipy==1.17.1 hyperpyyaml==1.2.3 soundfile==0.14.0 requests==2.34.2 typeguard==4.6.1

# These pin/pull torch, torchaudio or huge extras (lightning, librosa, ...): no deps.
pip install -c "$cons" --no-deps torchaudio==2.11.1 speechbrain==1.1.2 espnet==202511 \
    asteroid==0.7.0 asteroid-filterbanks==0.4.0

# torchaudio's PyPI wheel ships a CUDA-linked extension that cannot load with the CPU torch;
# without the .so files torchaudio runs in its pure-python mode (models are pure python).
ta=$("$PY" -c "import importlib.util as u, os; print(os.path.dirname(u.find_spec('torchaudio').origin))")
rm -f "$ta"/lib/*.so

"$PY" - <<'PYEOF'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
import asteroid.models, speechbrain.lobes.models.ECAPA_TDNN, torchaudio.models, transformers  # noqa
import espnet2.asr.encoder.conformer_encoder  # noqa
print("zoo libraries ok; torch", torch.__version__, "torchaudio", torchaudio.__version__,
      "transformers", transformers.__version__)
PYEOF
