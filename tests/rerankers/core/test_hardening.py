"""Issue 17, the core: what a careless or hostile caller gives `rank` / `rank_many` / `load_reranker`.

One test per defect (each failed on the code before the fix), and property tests with non-finite
and extreme numbers wherever numbers enter: first-stage scores, backend outputs, config floats.

The rule for numbers (README, "The contract"): a first-stage score (`Candidate.score`) is None or
a finite real number, else a `CandidateError` naming the candidate, under every backend and
policy; a backend's output that is not one finite real number per candidate is a `BackendError`
(a run-time failure, so `on_error: fallback` handles it); config floats are finite (`ConfigError`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankbridge.rerankers import (
    BackendError,
    Candidate,
    CandidateError,
    ConfigError,
    Reranker,
    Scores,
    load_reranker,
    register_backend,
)
from rankbridge.rerankers.core.base import QueryError, first_stage_scores
from rankbridge.rerankers.core.calibration import minmax
from rankbridge.rerankers.core.loader import MAX_SPEC_NODES, parse_spec_string, read_spec, validate_spec

NON_FINITE = [float("nan"), float("inf"), float("-inf")]
# every float, NaN and infinities included
any_floats = st.floats(allow_nan=True, allow_infinity=True)
extreme_finite = st.floats(min_value=-1.7976931348623157e308, max_value=1.7976931348623157e308)


class Scripted(Reranker):
    """A plugin backend whose output is set per test: what a buggy third-party backend returns.
    (FAKE: a backend, not a real part's API; it returns what real backends cannot on demand.)"""

    name = "scripted-hardening"
    output = None  # a callable (candidate list) -> Scores | None | anything

    def _score_batch(self, queries, candidate_lists):
        return [type(self).output(c) for c in candidate_lists]


register_backend("scripted-hardening", Scripted, overwrite=True)


@pytest.fixture
def scripted():
    def make(output, **config):
        Scripted.output = staticmethod(output)
        return load_reranker({"backend": "scripted-hardening", **config})

    yield make
    Scripted.output = None


def scored(*values):
    return [Candidate(text=f"doc {i}", score=v) for i, v in enumerate(values)]


# ---------------------------------------------------------------------- 1. non-finite numbers


@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
def test_non_finite_first_stage_score_with_fusion_is_a_candidate_error_naming_it(bad):
    reranker = load_reranker({"backend": "identity", "fuse_first_stage": 0.5})
    with pytest.raises(CandidateError, match="candidate 1") as info:
        reranker.rank("q", scored(1.0, bad, 2.0), score_threshold=0.9)
    assert info.value.index == 1


def test_extreme_first_stage_scores_do_not_overflow_the_fusion():
    # min-max over [-1e308, 1e308] overflowed to inf and put the best document last
    reranker = load_reranker({"backend": "lexical", "fuse_first_stage": 0.0})
    results = reranker.rank("q", scored(-1e308, 1e308, 0.0))
    assert results.indices == [1, 2, 0]
    assert results.relevances == [1.0, 0.5, 0.0]


def test_to_dict_is_valid_json_even_with_non_finite_values():
    candidate = Candidate(text="a", score=float("nan"), metadata={"x": [float("inf")], "y": {"z": float("-inf")}})
    text = json.dumps(candidate.to_dict(), allow_nan=False)  # raised: NaN is not JSON
    assert json.loads(text)["score"] == "nan"
    results = load_reranker("lexical").rank("q", [Candidate(text="q", metadata={"m": float("nan")})])
    json.dumps(results.to_dict(), allow_nan=False)
    assert math.isnan(Candidate.from_dict(candidate.to_dict()).score)


@pytest.mark.parametrize(
    "output",
    [
        lambda c: Scores([float("inf")] + [0.0] * (len(c) - 1), [0.5] * len(c)),
        lambda c: Scores([-float("inf")] * len(c), [0.5] * len(c)),
        lambda c: Scores(["1.0"] * len(c), ["0.5"] * len(c)),
        lambda c: Scores([0.0] * len(c), [float("nan")] * len(c)),
        lambda c: Scores([None] * len(c), [0.5] * len(c)),
        lambda c: Scores([True] * len(c), [0.5] * len(c)),
    ],
    ids=["+inf", "-inf", "strings", "nan-relevance", "None-values", "bools"],
)
def test_a_plugin_backend_returning_non_finite_or_non_numbers_is_a_backend_error(scripted, output):
    with pytest.raises(BackendError, match="scripted-hardening"):
        scripted(output).rank("q", ["a", "b", "c"])


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan"), "2.0"], ids=str)
def test_one_non_finite_identity_score_is_named_not_silently_discarding_the_others(bad):
    # one +inf made the identity backend fall back to input order for every candidate
    with pytest.raises(CandidateError, match="candidate 2") as info:
        load_reranker("identity").rank("q", scored(1.0, 3.0, bad))
    assert info.value.index == 2
    assert load_reranker("identity").rank("q", scored(1.0, 3.0, 2.0)).indices == [1, 2, 0]


@pytest.mark.parametrize("field", ["k1", "saturation", "b", "fuse_first_stage"])
@pytest.mark.parametrize("bad", NON_FINITE, ids=str)
def test_config_floats_reject_non_finite_values(field, bad):
    with pytest.raises(ConfigError, match=field):
        load_reranker({"backend": "lexical", field: bad})


def test_k1_too_large_to_score_is_rejected():
    # k1=1e308 made every BM25 score 0 (float32 overflow inside bm25s)
    with pytest.raises(ConfigError, match="k1"):
        load_reranker({"backend": "lexical", "k1": 1e308})


# ---------------------------------------------------------------------- 2. fallback gaps


@pytest.mark.parametrize(
    "output",
    [
        lambda c: Scores([float("nan")] * len(c), [0.5] * len(c)),
        lambda c: Scores([1.0], [0.5]),
        lambda c: None,
        lambda c: Scores(["x"] * len(c), [0.5] * len(c)),
    ],
    ids=["nan", "too-few", "None", "strings"],
)
def test_fallback_catches_a_backend_returning_nan_too_few_or_none(scripted, output):
    results = scripted(output, on_error="fallback").rank("q", scored(1.0, 3.0, 2.0))
    assert results.indices == [1, 2, 0]  # the first-stage order
    assert results.fallback_reason and "BackendError" in results.fallback_reason
    with pytest.raises(BackendError):
        scripted(output).rank("q", scored(1.0, 3.0, 2.0))


def test_rank_many_falls_back_only_for_the_query_whose_scores_are_bad(scripted):
    def output(c):
        return Scores([float("nan")] * len(c), [0.5] * len(c)) if len(c) == 2 else Scores([1.0] * len(c), [0.5] * len(c))

    good, bad = scripted(output, on_error="fallback").rank_many(["q1", "q2"], [["a", "b", "c"], ["d", "e"]])
    assert good.fallback_reason is None and bad.fallback_reason is not None


def test_the_fallback_never_crashes_on_a_non_numeric_first_stage_score():
    # first_stage_scores raised TypeError: must be real number, not str
    out = first_stage_scores([Candidate("a", score="x"), Candidate("b", score=1.0)])
    assert list(out.scores) == [2.0, 1.0]  # input order, since not every score is a number
    out = first_stage_scores([Candidate("a", score=float("inf")), Candidate("b", score=1.0)])
    assert list(out.scores) == [2.0, 1.0]


# ---------------------------------------------------------------------- 3. the caller's input


@pytest.mark.parametrize("text", [123, b"bytes", "lone \ud800 surrogate", ["a"]], ids=["int", "bytes", "surrogate", "list"])
@pytest.mark.parametrize("on_error", ["raise", "fallback"])
def test_bad_candidate_text_is_a_candidate_error_naming_the_index_under_every_policy(text, on_error):
    reranker = load_reranker({"backend": "lexical", "on_error": on_error})
    with pytest.raises(CandidateError, match="candidate 1") as info:
        reranker.rank("q", ["fine", Candidate(text=text)])
    assert info.value.index == 1


@pytest.mark.parametrize("on_error", ["raise", "fallback"])
def test_a_query_with_a_lone_surrogate_is_a_value_error(on_error):
    with pytest.raises(ValueError, match="query"):
        load_reranker({"backend": "lexical", "on_error": on_error}).rank("bad \udfff query", ["a"])


def test_a_query_error_raised_by_a_backend_is_never_hidden_by_fallback(scripted):
    def output(c):
        raise QueryError("the query is longer than the model's window")

    with pytest.raises(QueryError, match="window"):
        scripted(output, on_error="fallback").rank("q", scored(1.0, 2.0))


# ---------------------------------------------------------------------- 7. silent acceptance


def test_rank_many_rejects_a_string_of_queries():
    # "ab" was read as the two queries "a" and "b"
    with pytest.raises(TypeError, match="queries"):
        load_reranker("lexical").rank_many("ab", [["x"], ["y"]])
    with pytest.raises(TypeError, match="candidate_lists"):
        load_reranker("lexical").rank_many(["a"], "x")


@pytest.mark.parametrize("candidates", [{"paris": 1, "bananas": 2}, {"a", "b"}, frozenset({"a"})], ids=["dict", "set", "frozenset"])
def test_a_mapping_or_set_of_candidates_is_rejected(candidates):
    # a dict ranked its keys
    with pytest.raises(TypeError, match="ordered sequence"):
        load_reranker("lexical").rank("paris", candidates)


@pytest.mark.parametrize("threshold", [2, -0.1, 1.0000001, float("inf"), float("-inf"), float("nan"), True, "0.5"], ids=str)
def test_score_threshold_outside_zero_one_is_rejected(threshold):
    # 2 or inf silently returned nothing
    with pytest.raises(ValueError, match=r"score_threshold must be a number in \[0, 1\]"):
        load_reranker("lexical").rank("q", ["a"], score_threshold=threshold)


@pytest.mark.parametrize("threshold", [0, 1, 0.5, np.float32(0.25)], ids=str)
def test_score_threshold_inside_zero_one_is_accepted(threshold):
    load_reranker("lexical").rank("q", ["a"], score_threshold=threshold)


# ---------------------------------------------------------------------- 10. config size


def test_a_yaml_config_that_expands_through_aliases_is_rejected(tmp_path):
    # 388 bytes expanded to a 5.8 MB repr, ten times more per nesting level
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 7):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("backend: lexical\n" + "\n".join(lines) + "\n")
    assert path.stat().st_size < 600
    with pytest.raises(ConfigError, match=f"more than {MAX_SPEC_NODES} values"):
        load_reranker(path)
    with pytest.raises(ConfigError, match="more than"):
        load_reranker(path.read_text())  # the same as an inline mapping


def test_a_recursive_yaml_config_is_rejected(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("backend: lexical\nloop: &x [*x]\n")
    with pytest.raises(ConfigError, match="nests deeper"):
        read_spec(path)


def test_an_oversized_config_file_is_rejected(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"backend": "lexical", "pad": "x" * (2 << 20)}))
    with pytest.raises(ConfigError, match="at most"):
        load_reranker(path)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("backend: lexical\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_reranker(path)


# ---------------------------------------------------------------------- 12. one rule for string specs


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"backend": "lexical", "k1": 1.2, "fuse_first_stage": 0.5}', {"backend": "lexical", "k1": 1.2, "fuse_first_stage": 0.5}),
        ("{backend: lexical, k1: 1.2}", {"backend": "lexical", "k1": 1.2}),
        ("backend: lexical\nk1: 1.2", {"backend": "lexical", "k1": 1.2}),
        ("backend: lexical", {"backend": "lexical"}),
        ("cross-encoder:minilm-l6-ce-weak", {"backend": "cross-encoder", "model": "minilm-l6-ce-weak"}),
        ("lexical", {"backend": "lexical"}),
    ],
)
def test_every_string_spec_follows_one_rule(text, expected):
    # '{"backend": ...}' was split at its first colon: "unknown backend '{"backend"'"
    assert parse_spec_string(text) == expected
    assert read_spec(text) == expected


def test_the_environment_variable_follows_the_same_rule(monkeypatch):
    monkeypatch.setenv("RANKBRIDGE_RERANKER", "backend: lexical\nk1: 1.1")
    assert load_reranker().config.k1 == 1.1
    monkeypatch.setenv("RANKBRIDGE_RERANKER", "nosuch-backend")
    with pytest.raises(ConfigError, match=r"\$RANKBRIDGE_RERANKER 'nosuch-backend' was read as the '<backend>:<model>' shorthand"):
        load_reranker()


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"backend": "lexical",', "was read as an inline mapping (it starts with '{')"),
        ("backend: [1", "was read as an inline mapping (it has YAML 'key: value' lines)"),
        ("missing.yaml", "was read as a config file path (it ends in .yaml), but the file was not found"),
        ("nosuch", "was read as the '<backend>:<model>' shorthand"),
        ("a b c", "is not an inline mapping"),
    ],
)
def test_a_bad_string_spec_says_what_it_was_read_as(text, says):
    with pytest.raises(ConfigError) as info:
        validate_spec(text)
    assert says in str(info.value)


def test_a_spec_file_is_read_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfbackend: lexical\nk1: 1.3\n")
    assert load_reranker(str(path)).config.k1 == 1.3


# ---------------------------------------------------------------------- 4. secrets in config errors


@pytest.mark.parametrize("key", [12345, ["sk-list-secret"], {"k": "sk-dict-secret"}])
def test_a_wrongly_typed_api_key_is_never_echoed(key):
    pytest.importorskip("httpx")
    with pytest.raises(ConfigError, match="api_key") as info:
        load_reranker({"backend": "listwise", "model": "m", "api_key": key})
    message = str(info.value)
    assert "12345" not in message and "secret" not in message and "**********" in message


def test_a_model_level_config_error_masks_the_secret_in_the_echoed_input():
    pytest.importorskip("httpx")
    with pytest.raises(ConfigError) as info:
        load_reranker({"backend": "listwise", "model": "m", "api_key": "sk-live-123", "timeout": "soon"})
    assert "sk-live-123" not in str(info.value)


# ---------------------------------------------------------------------- property tests

first_stage_values = st.one_of(any_floats, extreme_finite, st.integers(-(10**400), 10**400), st.none())


def _finite(value) -> bool:
    if value is None:
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(first_stage_values, min_size=1, max_size=12), weight=st.floats(0, 1), threshold=st.floats(0, 1))
def test_fused_first_stage_scores_either_rank_cleanly_or_name_the_bad_candidate(values, weight, threshold):
    reranker = load_reranker({"backend": "identity", "fuse_first_stage": weight})
    candidates = [Candidate(text=f"d{i}", score=v) for i, v in enumerate(values)]
    bad = [i for i, v in enumerate(values) if not _finite(v)]
    if bad:
        with pytest.raises(CandidateError) as info:
            reranker.rank("q", candidates, score_threshold=threshold)
        assert info.value.index == bad[0]
        return
    full = reranker.rank("q", candidates)
    assert sorted(full.indices) == list(range(len(values)))
    assert all(0.0 <= r.relevance <= 1.0 and math.isfinite(r.score) for r in full)
    kept = reranker.rank("q", candidates, score_threshold=threshold)
    assert all(r.relevance >= threshold for r in kept)  # NaN passed every threshold
    json.dumps(full.to_dict(), allow_nan=False)
    if weight == 0.0:  # the first-stage order exactly, best first, ties in input order
        order = sorted(range(len(values)), key=lambda i: (-float(values[i]), i))
        assert full.indices == order


@settings(max_examples=200, deadline=None)
@given(values=st.lists(extreme_finite, min_size=1, max_size=30))
def test_minmax_is_safe_over_the_whole_float_range(values):
    out = minmax(values)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    x = np.asarray(values)
    if x.max() > x.min():
        assert out[int(np.argmax(x))] == 1.0 and out[int(np.argmin(x))] == 0.0
        # monotone: a larger score never gets a smaller value
        order = np.argsort(x, kind="stable")
        assert np.all(np.diff(out[order]) >= 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=st.lists(st.one_of(any_floats, extreme_finite), min_size=1, max_size=8), rel=st.one_of(any_floats, st.floats(-10, 10)))
def test_backend_outputs_are_finite_or_a_backend_error_that_fallback_catches(scripted, raw, rel):
    n = len(raw)
    output = lambda c: Scores(list(raw), [rel] * n)  # noqa: E731
    candidates = scored(*[float(i) for i in range(n)])
    finite = all(math.isfinite(v) for v in raw) and math.isfinite(rel)
    if finite:
        results = scripted(output).rank("q", candidates)
        assert sorted(results.indices) == list(range(n))
        assert all(0.0 <= r.relevance <= 1.0 for r in results)
        assert results.scores == sorted(results.scores, reverse=True)
    else:
        with pytest.raises(BackendError):
            scripted(output).rank("q", candidates)
        fallback = scripted(output, on_error="fallback").rank("q", candidates)
        assert fallback.indices == list(reversed(range(n))) and fallback.fallback_reason


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(["k1", "b", "saturation", "fuse_first_stage"]), value=st.one_of(any_floats, extreme_finite))
def test_config_floats_are_finite_and_in_range_or_a_config_error(field, value):
    bounds = {"k1": (0, 100, False), "b": (0, 1, True), "saturation": (0, math.inf, False), "fuse_first_stage": (0, 1, True)}
    lo, hi, low_inclusive = bounds[field]
    valid = math.isfinite(value) and (value >= lo if low_inclusive else value > lo) and value <= hi
    if valid:
        reranker = load_reranker({"backend": "lexical", field: value})
        candidates = scored(*[1.0] * 3) if field == "fuse_first_stage" else ["paris capital", "bananas", "paris"]
        results = reranker.rank("paris capital", candidates)
        assert all(0.0 <= r.relevance <= 1.0 and math.isfinite(r.score) for r in results)
    else:
        with pytest.raises(ConfigError, match=field):
            load_reranker({"backend": "lexical", field: value})
