"""`load_reranker` from every kind of spec, and the messages of every bad case."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from rankbridge.rerankers import (
    ConfigError,
    LexicalReranker,
    MissingDependencyError,
    available_backends,
    load_reranker,
)

DOCS = ["Bananas are yellow.", "Paris is the capital of France."]


def test_from_dict():
    reranker = load_reranker({"backend": "lexical", "k1": 1.2, "on_error": "fallback"})
    assert isinstance(reranker, LexicalReranker)
    assert reranker.config.k1 == 1.2 and reranker.config.on_error == "fallback"


def test_from_yaml_file(tmp_path):
    path = tmp_path / "rerank.yaml"
    path.write_text("backend: lexical\nb: 0.5\nstopwords: none\n")
    reranker = load_reranker(str(path))
    assert reranker.config.b == 0.5 and reranker.config.stopwords == "none"
    assert load_reranker(path).config.b == 0.5  # a Path works too


def test_yaml_file_with_top_level_reranker_key(tmp_path):
    path = tmp_path / "rerank.yml"
    path.write_text("reranker:\n  backend: identity\n  relevance: minmax\n")
    assert load_reranker(path).config.relevance == "minmax"


def test_from_json_file(tmp_path):
    path = tmp_path / "rerank.json"
    path.write_text(json.dumps({"backend": "lexical", "saturation": 2.0}))
    assert load_reranker(str(path)).config.saturation == 2.0


def test_shorthand_backend_and_backend_model():
    assert load_reranker("lexical").config.backend == "lexical"
    with pytest.raises(ConfigError, match="unknown field 'model' for backend 'identity'"):
        load_reranker("identity:some-model")


def test_from_env(monkeypatch):
    monkeypatch.setenv("RANKBRIDGE_RERANKER", "lexical")
    assert load_reranker().config.backend == "lexical"
    monkeypatch.setenv("RANKBRIDGE_RERANKER", '{"backend": "identity", "relevance": "minmax"}')
    assert load_reranker(None).config.relevance == "minmax"


def test_env_missing(monkeypatch):
    monkeypatch.delenv("RANKBRIDGE_RERANKER", raising=False)
    with pytest.raises(ConfigError, match="RANKBRIDGE_RERANKER is not set"):
        load_reranker()


def test_env_invalid_json(monkeypatch):
    monkeypatch.setenv("RANKBRIDGE_RERANKER", '{"backend": ')
    with pytest.raises(ConfigError, match=r"RANKBRIDGE_RERANKER '\{\"backend\":' was read as an inline mapping.*JSON: Expecting value"):
        load_reranker()


def test_overrides_replace_spec_fields():
    assert load_reranker({"backend": "lexical", "k1": 1.2}, k1=0.9).config.k1 == 0.9


def test_swapping_backend_is_a_config_change_only(tmp_path):
    path = tmp_path / "rerank.yaml"
    path.write_text("backend: lexical\n")
    assert load_reranker(path).rank("capital of france", DOCS).ids == [1, 0]
    path.write_text("backend: identity\n")
    assert load_reranker(path).rank("capital of france", DOCS).ids == [0, 1]


def test_unknown_backend_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        load_reranker("no-such-backend")
    message = str(info.value)
    assert "unknown backend 'no-such-backend'" in message
    for name in ["identity", "lexical", "cross-encoder", "listwise"]:
        assert name in message
    assert {"identity", "lexical", "cross-encoder", "listwise"} <= set(available_backends())


def test_missing_backend_field():
    with pytest.raises(ConfigError, match="needs a 'backend' field; known backends: .*lexical"):
        load_reranker({"k1": 1.0})


def test_invalid_field_names_field_and_allowed_values():
    with pytest.raises(ConfigError) as info:
        load_reranker({"backend": "lexical", "on_error": "explode"})
    message = str(info.value)
    assert "field 'on_error' of backend 'lexical'" in message
    assert "'raise' or 'fallback'" in message and "'explode'" in message


def test_out_of_range_field():
    with pytest.raises(ConfigError, match="field 'b' of backend 'lexical'.*less than or equal to 1"):
        load_reranker({"backend": "lexical", "b": 3})


def test_unknown_field_is_named():
    with pytest.raises(ConfigError, match="unknown field 'top_k' for backend 'lexical'"):
        load_reranker({"backend": "lexical", "top_k": 5})


def test_missing_config_file():
    with pytest.raises(ConfigError, match="'nope.yaml' was read as a config file path .* but the file was not found"):
        load_reranker("nope.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("backend: [lexical\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_reranker(path)


def test_invalid_json_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "backend": "lexical",\n}\n')
    with pytest.raises(ConfigError, match="bad.json: invalid JSON at line 3"):
        load_reranker(path)


def test_non_mapping_config(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- lexical\n")
    with pytest.raises(ConfigError, match="must be a mapping with a 'backend' key"):
        load_reranker(path)


def test_wrong_spec_type():
    with pytest.raises(ConfigError, match="not int"):
        load_reranker(42)


# ---------------------------------------------------------------- third-party backends by entry point


def install_dummy_distribution(site: Path, module_source: str, entry_points: str) -> None:
    """Write a distribution the way an installer does (module + .dist-info with entry_points.txt)."""
    (site / "rankbridge_dummy.py").write_text(textwrap.dedent(module_source))
    info = site / "rankbridge_dummy-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rankbridge-dummy\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (info / "RECORD").write_text("")


@pytest.fixture
def dummy_site(tmp_path, monkeypatch):
    from rankbridge.rerankers.core import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("rankbridge_dummy", None)


def test_third_party_backend_registered_by_entry_point(dummy_site):
    install_dummy_distribution(
        dummy_site,
        """
        from typing import Literal
        from rankbridge.rerankers import Reranker, RerankerConfig, Scores

        class ShortestFirstConfig(RerankerConfig):
            backend: Literal["shortest-first"] = "shortest-first"
            power: float = 1.0

        class ShortestFirst(Reranker):
            config_class = ShortestFirstConfig

            def _score_batch(self, queries, candidate_lists):
                return [
                    Scores([-(len(c.text) ** self.config.power) for c in cands], [1.0 / (1.0 + len(c.text)) for c in cands])
                    for cands in candidate_lists
                ]
        """,
        "[rankbridge.rerankers]\nshortest-first = rankbridge_dummy:ShortestFirst\n",
    )
    assert "shortest-first" in available_backends()
    reranker = load_reranker({"backend": "shortest-first", "power": 2})
    assert reranker.rank("q", ["a long one", "tiny", "medium"]).ids == [1, 2, 0]
    with pytest.raises(ConfigError, match="field 'power' of backend 'shortest-first'"):
        load_reranker({"backend": "shortest-first", "power": "big"})


def test_missing_optional_dependency_names_the_extra(dummy_site):
    install_dummy_distribution(
        dummy_site,
        """
        from rankbridge.rerankers.core.errors import require
        require("rankbridge_no_such_module", extra="onnx")
        """,
        "[rankbridge.rerankers]\nneeds-extra = rankbridge_dummy:Nothing\n",
    )
    with pytest.raises(MissingDependencyError, match=r"pip install 'rankbridge\[onnx\]'"):
        load_reranker("needs-extra")
