"""Every `>>>` example in the docstrings of the three packages runs, one test per module.

Modules are imported by their `rankbridge.*` names (the package-dir mapping), so each example
sees the installed package exactly as a user does. A module is skipped, with the reason, only
when an optional dependency it needs is not importable here. Examples that need a network or a
running server are marked `# doctest: +SKIP` in the source.
"""

from __future__ import annotations

import doctest
import importlib
import io
from pathlib import Path

import pytest

from rankbridge.rerankers.core.errors import MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"rerankers": "rankbridge.rerankers", "llm_rankers": "rankbridge.llm_rankers", "integrations": "rankbridge.integrations"}
FLAGS = doctest.ELLIPSIS


def all_modules() -> list[str]:
    names = []
    for folder, dotted in MAPPED.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join([dotted, *parts]))
    return names


def import_or_skip(name: str):
    try:
        return importlib.import_module(name)
    except MissingDependencyError as exc:
        pytest.skip(f"{name}: optional dependency missing: {exc}")
    except ModuleNotFoundError as exc:
        if exc.name and not exc.name.startswith("rankbridge"):
            pytest.skip(f"{name}: optional dependency {exc.name} is not installed")
        raise


def doctests_of(module) -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    return sorted(finder.find(module, module.__name__), key=lambda t: t.name)


@pytest.mark.parametrize("name", all_modules())
def test_docstring_examples(name):
    module = import_or_skip(name)
    tests = doctests_of(module)  # a malformed example (bad indentation, missing blank line) fails here
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed:\n{report.getvalue()}"


def test_the_runner_reports_a_failing_example():
    """The check above can fail: a wrong expected value is reported with the module's name."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "rankbridge.example", "example.py", 0)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    runner.run(test, out=report.write)
    assert runner.summarize(verbose=False).failed == 1
    assert "Expected:\n    3\nGot:\n    2" in report.getvalue()


def test_every_package_module_is_collected():
    names = all_modules()
    assert "rankbridge.rerankers.core.loader" in names and "rankbridge.llm_rankers.engines.chat" in names
    assert "rankbridge.integrations.cli.main" in names and len(names) == len(set(names))
