"""engine: vllm — the listwise backend on an in-process `vllm.LLM`, run in the vLLM environment.

vLLM lives in its own environment (.ci/setup_vllm), so this test runs a small script there with
rankbridge's source folders on the path. Starting an engine costs as much as starting the server
(one to three minutes on 2 cores), more than the CI budget leaves, so the test is opt-in:
RANKBRIDGE_TEST_VLLM_INPROCESS=1.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rankbridge.llm_rankers.engines.vllm_process import vllm_python

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import json, sys
from rankbridge.llm_rankers.listwise.reranker import ListwiseReranker

def main():
    reranker = ListwiseReranker({"backend": "listwise", "engine": "vllm", "model": sys.argv[1], "mode": sys.argv[2],
                                 "window_size": 4, "step": 2, "context_length": 2048, "max_output_tokens": 24,
                                 "engine_kwargs": {"dtype": "float32", "enforce_eager": True, "max_logprobs": 26}})
    results = reranker.rank("capital of france", ["Bananas.", "Paris is the capital of France.", "Cats.",
                                                   "France's capital is Paris.", "Rome is in Italy."])
    print("RESULT " + json.dumps({"indices": results.indices, "scores": results.scores,
                                  "fallback": results.fallback_reason, "stats": reranker.last_stats.to_dict()}))
    reranker.close()

if __name__ == "__main__":  # vLLM starts its engine in a spawned process
    main()
"""


@pytest.mark.skipif(os.environ.get("RANKBRIDGE_TEST_VLLM_INPROCESS") != "1", reason="opt-in: RANKBRIDGE_TEST_VLLM_INPROCESS=1")
@pytest.mark.parametrize("mode", ["first_token"])
def test_in_process_engine_ranks_with_the_same_protocol(tmp_path, smollm2_dir, mode):
    python = vllm_python()
    if not python.is_file():
        pytest.skip(f"no vLLM environment at {python}")
    package = tmp_path / "path" / "rankbridge"  # rankbridge is a namespace: link its source folders
    package.mkdir(parents=True)
    for folder in ("rerankers", "llm_rankers"):
        (package / folder).symlink_to(ROOT / folder)
    script = tmp_path / "inprocess.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "path"), "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([str(python), str(script), str(smollm2_dir), mode], capture_output=True, text=True, env=env, timeout=600)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, out.stdout[-2000:] + out.stderr[-4000:]
    result = json.loads(line[len("RESULT "):])
    assert sorted(result["indices"]) == list(range(5))
    assert result["scores"] == [5.0, 4.0, 3.0, 2.0, 1.0]
    assert result["fallback"] is None
    assert result["stats"]["calls"] == 2 and result["stats"]["prompt_tokens"] > 0
    assert result["stats"]["unusable_windows"] == 0
