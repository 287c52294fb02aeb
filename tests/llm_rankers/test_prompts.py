"""Listwise prompt files: built-in names never become paths, and a YAML file cannot expand without bound."""

from __future__ import annotations

import pytest

from rankbridge.llm_rankers.listwise.prompts import PromptTemplate
from rankbridge.rerankers import ConfigError


@pytest.mark.parametrize("name", ["../../no-such-folder/x", "../templates/first", "first/.."])
def test_a_prompt_name_is_never_a_path_out_of_the_package(name):
    with pytest.raises(ConfigError, match="prompt .* is not a plain name"):
        PromptTemplate.load(name)


def test_a_prompt_file_whose_aliases_expand_without_bound_is_a_config_error(tmp_path):
    # 9 levels of 10 aliases each: a few hundred bytes that expand to 10^9 strings
    lines = ['a0: &a0 "xxxxxxxxxx"']
    lines += [f"a{i}: &a{i} [{', '.join(['*a' + str(i - 1)] * 10)}]" for i in range(1, 10)]
    lines += ["name: bomb", "labels: numeric", "system: *a9", "prefix: p", "passage: q", "suffix: s"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    with pytest.raises(ConfigError, match="bomb.yaml"):
        PromptTemplate.load(path)


def test_a_builtin_prompt_still_loads_by_name():
    assert PromptTemplate.load("rankgpt").name and PromptTemplate.load("first").labels == "alpha"
