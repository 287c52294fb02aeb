#!/usr/bin/env bash
# The environment for sentence-transformers' own ONNX and OpenVINO backends as benchmark peers
# (benchmarks/st_backends_peer.py). optimum-onnx and optimum-intel pin transformers 4.x, so they
# get a venv of their own beside the project's; cross_encoder_speed.py finds it by this path.
# Versions: the set pip resolved for `sentence-transformers[onnx,openvino]` on 2026-12-06, pinned;
# huggingface-hub < 1.0 because transformers 4.57 needs it (a newer `datasets` would lift it).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ST_BACKENDS_VENV:-.venv-st-backends}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch==2.13.0
"$VENV/bin/pip" install -q "sentence-transformers[onnx,openvino]==5.7.0" transformers==4.57.6 optimum==2.1.0 \
    optimum-onnx==0.1.0 optimum-intel==1.27.0 onnxruntime==1.32.0 openvino==2026.4.1 nncf==3.4.0 \
    datasets==4.1.1 "huggingface-hub>=0.34,<1.0"
"$VENV/bin/python" -c "import sentence_transformers, optimum.onnxruntime, optimum.intel; print('st backends ready:', sentence_transformers.__version__)"
