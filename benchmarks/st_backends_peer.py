"""sentence-transformers' own ONNX and OpenVINO backends as peers, in the environment they need.

`CrossEncoder(backend="onnx")` needs optimum-onnx and `backend="openvino"` optimum-intel; their
releases pin transformers 4.x, while rankbridge runs on 5.x, so they cannot share its venv.
`benchmarks/setup_st_backends.sh` builds `.venv-st-backends` for them, and
`cross_encoder_speed.py` runs this file there as a persistent child process: it loads one variant
once, then scores the parent's pairs on request (one JSON line in, one JSON line out), so its
timed passes interleave with every other variant's on the same inputs. It imports nothing from
rankbridge.

Variants (each on a copy of the model folder in `--work`, so the shared folder stays read-only):
- `st-peer-env`: sentence-transformers torch in this environment (the cross-check that the two
  environments' sentence-transformers torch run alike);
- `st-onnx`, `st-onnx-o3` (`export_optimized_onnx_model("O3")`), `st-onnx-int8`
  (`export_dynamic_quantized_onnx_model("avx512_vnni")`);
- `st-openvino`, `st-openvino-int8` (`export_static_quantized_openvino_model`, calibrated on the
  strings of `--calibration-texts` instead of its default download of GLUE SST-2).

Protocol: after loading it writes `{"ready": true, "versions": {...}}` (or `{"error": ...}` and
exits 1). Then per stdin line `{"pairs": [[query, text], ...]}` it writes `{"scores": [...]}`;
`{"peak_rss_mb": true}` answers this process's VmHWM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

VARIANTS = ("st-peer-env", "st-onnx", "st-onnx-o3", "st-onnx-int8", "st-openvino", "st-openvino-int8")


def load(name: str, model: str, work: Path, calibration_texts: list[str] | None = None):
    """The CrossEncoder of one variant; exports are written into `work` (a copy of `model`)."""
    from sentence_transformers import CrossEncoder

    if name == "st-peer-env":
        return CrossEncoder(model, device="cpu")
    if not (work / "config.json").is_file():
        shutil.copytree(model, work, dirs_exist_ok=True)
    backend = "onnx" if name.startswith("st-onnx") else "openvino"
    plain = CrossEncoder(str(work), device="cpu", backend=backend)
    if name in ("st-onnx", "st-openvino"):
        return plain
    from sentence_transformers import backend as st_backend

    if name == "st-onnx-o3":
        st_backend.export_optimized_onnx_model(plain, "O3", str(work))
        return CrossEncoder(str(work), device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_O3.onnx"})
    if name == "st-onnx-int8":
        st_backend.export_dynamic_quantized_onnx_model(plain, "avx512_vnni", str(work))
        return CrossEncoder(
            str(work), device="cpu", backend="onnx", model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"}
        )
    # st-openvino-int8. Its default calibration set is GLUE SST-2 from the Hub; offline it reads a
    # local JSON dataset instead (all four dataset arguments must then be given).
    if not calibration_texts:
        raise ValueError("st-openvino-int8 needs --calibration-texts (a JSON list of strings)")
    data = work / "calibration"
    data.mkdir(exist_ok=True)
    with open(data / "train.jsonl", "w", encoding="utf-8") as handle:
        for text in calibration_texts:
            handle.write(json.dumps({"sentence": text}) + "\n")
    st_backend.export_static_quantized_openvino_model(
        plain, None, str(work), dataset_name=str(data), dataset_config_name="default", dataset_split="train",
        column_name="sentence",
    )
    return CrossEncoder(
        str(work), device="cpu", backend="openvino", model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"}
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("sentence-transformers", "transformers", "torch", "optimum", "optimum-onnx", "optimum-intel",
                    "onnxruntime", "openvino", "nncf"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def _inference_precision(model) -> str | None:
    """What an OpenVINO model's matrix multiplies run in, as compiled (optimum-intel sets no
    precision hint, so on a CPU with AVX512-BF16 or AMX OpenVINO's default is bf16); None for ONNX
    Runtime and torch, whose precision is the exported one."""
    compiled = getattr(getattr(model, "model", None), "request", None)
    if compiled is None or not hasattr(compiled, "get_property"):
        return None
    try:
        hint = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except Exception:  # an older OpenVINO without the property: fall back to the parent's table
        return None
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint, hint)


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


_PROTOCOL = None  # main() sets it: the only channel the parent reads


def _protect_stdout() -> None:
    """Keep a copy of stdout for the protocol, then point fd 1 at stderr, so what the libraries
    print (NNCF's progress, optimum's notices, C++ logs) never lands between the JSON lines."""
    global _PROTOCOL
    _PROTOCOL = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr


def _send(obj) -> None:
    _PROTOCOL.write(json.dumps(obj) + "\n")
    _PROTOCOL.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--model", required=True, help="local model folder")
    parser.add_argument("--work", required=True, help="folder for the copy of the model and its exports")
    parser.add_argument("--calibration-texts", help="JSON file: a list of strings (st-openvino-int8)")
    args = parser.parse_args(argv)
    _protect_stdout()
    texts = json.loads(Path(args.calibration_texts).read_text()) if args.calibration_texts else None
    try:
        import torch

        model = load(args.variant, args.model, Path(args.work), texts)
    except Exception as exc:  # reported to the parent as the reason this peer is missing
        _send({"error": " ".join(f"{type(exc).__name__}: {exc}".split())[:600]})
        return 1
    _send({"ready": True, "versions": _versions()})
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("peak_rss_mb"):
            _send({"peak_rss_mb": _peak_rss_mb()})
            continue
        pairs = [tuple(pair) for pair in request["pairs"]]
        # Defaults (batch 32, its own length sort), raw logits as in the parent's `st` row.
        scores = model.predict(pairs, show_progress_bar=False, activation_fn=torch.nn.Identity())
        _send({"scores": [float(s) for s in scores], "precision": _inference_precision(model)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
