"""The permutation parser: every answer shape a model produces, and never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankbridge.llm_rankers import parse_permutation


@given(text=st.text(), n=st.integers(min_value=-3, max_value=60), labels=st.sampled_from(["numeric", "alpha"]))
@settings(max_examples=400, deadline=None)
def test_any_string_and_any_n_gives_a_permutation(text, n, labels):
    parsed = parse_permutation(text, n, labels=labels)
    assert sorted(parsed.order) == list(range(max(n, 0)))
    assert parsed.order == parsed.found + parsed.missing


_ANSWER_PIECES = st.one_of(
    st.integers(min_value=-5, max_value=40).map(str),
    st.integers(min_value=0, max_value=40).map(lambda k: f"[{k}]"),
    st.sampled_from([" > ", ">", ", ", " ", "\n", "<think>", "</think>", "[", "]", "passage", "１", "٣"]),
)


@given(pieces=st.lists(_ANSWER_PIECES, max_size=40), n=st.integers(min_value=0, max_value=30))
@settings(max_examples=400, deadline=None)
def test_answer_like_strings_give_a_permutation_that_keeps_valid_ids_in_answer_order(pieces, n):
    parsed = parse_permutation("".join(pieces), n)
    assert sorted(parsed.order) == list(range(n))
    assert len(set(parsed.found)) == len(parsed.found)
    assert parsed.order[: len(parsed.found)] == parsed.found


@given(perm=st.permutations(list(range(12))), bracketed=st.booleans())
@settings(deadline=None)  # the default 200 ms per example is a wall-clock limit a loaded CI machine can miss
def test_a_clean_answer_is_read_exactly_and_counts_no_repair(perm, bracketed):
    fmt = "[{}]" if bracketed else "{}"
    text = " > ".join(fmt.format(i + 1) for i in perm)
    parsed = parse_permutation(text, 12)
    assert parsed.order == list(perm)
    assert not parsed.repaired
    assert parsed.repairs() == {"duplicates": 0, "out_of_range": 0, "missing": 0, "think_removed": 0, "unusable": 0}


@pytest.mark.parametrize(
    ("text", "n", "order"),
    [
        ("[3] > [1] > [2]", 3, [2, 0, 1]),
        ("3 > 1 > 2", 3, [2, 0, 1]),
        ("3 1 2", 3, [2, 0, 1]),
        ("The most relevant is [2], then [3], finally [1].", 3, [1, 2, 0]),
        ("Here is my ranking of the 4 passages:\n[4] > [2] > [1] > [3]\nHope this helps!", 4, [3, 1, 0, 2]),
        ("<think>[1] looks best... or [3]?</think>\n[2] > [1] > [3]", 3, [1, 0, 2]),
        ("I compared them carefully.</think>[3] > [2] > [1]", 3, [2, 1, 0]),
        ("［３］ ＞ ［１］ ＞ ［２］", 3, [2, 0, 1]),  # fullwidth brackets, digits and >
        ("٣ > ١ > ٢", 3, [2, 0, 1]),  # Arabic-Indic digits
        ("३ > १ > २", 3, [2, 0, 1]),  # Devanagari digits
        ("[2] ≻ [1]", 2, [1, 0]),
    ],
)
def test_answer_shapes(text, n, order):
    assert parse_permutation(text, n).order == order


def test_duplicates_out_of_range_and_missing_are_repaired_and_recorded():
    parsed = parse_permutation("[4] > [2] > [4] > [0] > [17] > [1]", 5)
    assert parsed.order == [3, 1, 0, 2, 4]
    assert parsed.duplicates == [3]
    assert parsed.out_of_range == [0, 17]
    assert parsed.missing == [2, 4]  # appended in their previous order
    assert parsed.repaired and parsed.usable


def test_the_longest_chain_wins_over_numbers_in_prose():
    parsed = parse_permutation("Of the 20 passages, 2 stand out: [5] > [3] > [1] > [2] > [4].", 5)
    assert parsed.order == [4, 2, 0, 1, 3]
    assert parsed.strategy == "chain"


@pytest.mark.parametrize("text", ["", "I cannot rank these passages.", "<think>[1] > [2]", None, 42, "[0] > [99]"])
def test_an_unusable_answer_keeps_the_previous_order_and_says_so(text):
    parsed = parse_permutation(text, 4)
    assert parsed.order == [0, 1, 2, 3]
    assert not parsed.usable
    assert parsed.repairs()["unusable"] == 1


def test_unfinished_think_block_is_not_read_as_an_answer():
    parsed = parse_permutation("[2] > [1] <think>actually [3] > [1]", 3)
    assert parsed.order == [1, 0, 2]
    assert parsed.think_removed


def test_alpha_labels():
    parsed = parse_permutation("C > A > B > Z", 3, labels="alpha")
    assert parsed.order == [2, 0, 1]
    assert parsed.out_of_range == ["Z"]
    assert parse_permutation("[B] [A]", 2, labels="alpha").order == [1, 0]


def test_bad_n_never_raises():
    assert parse_permutation("[1] > [2]", "many").order == []
    assert parse_permutation("[1] > [2]", -4).order == []
