"""The layout's dependency rules, each a test, read from the source with `ast` (module-level and
function-level imports alike), so a rule breaks here, not in a user's environment.

- `rankbridge.rerankers.core` imports nothing else of rankbridge;
- no backend imports another backend (modules of `rerankers/backends/` whose name starts with `_`
  are shared helpers, not backends);
- `rerankers/runtime` and `rerankers/pages` never import a backend (so never see its config class);
- `rerankers` never imports `llm_rankers`; `rerankers` and `llm_rankers` never import `integrations`;
- `import rankbridge.rerankers` loads no framework;
- every built-in backend in the registry table names a module file that exists and a class in it
  with that `name`.
(Every package folder being listed in pyproject's `packages` is `test_packaging.py`'s job.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from rankbridge.rerankers.core.registry import BUILTIN_BACKENDS

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"rerankers": "rankbridge.rerankers", "llm_rankers": "rankbridge.llm_rankers", "integrations": "rankbridge.integrations"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted and absolute
    line: int

    def __str__(self) -> str:
        return f"{self.module} (line {self.line}) imports {self.target}"


def module_name(path: Path) -> str:
    for folder, dotted in MAPPED.items():
        base = ROOT / folder
        if path.is_relative_to(base):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([dotted, *parts])
    raise ValueError(path)


@cache
def source_modules() -> dict[str, Path]:
    found = {}
    for folder in MAPPED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found[module_name(path)] = path
    return found


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    """Every import in the module's source, anywhere in it, resolved to absolute dotted names.
    `from a.b import c` yields `a.b` and `a.b.c` (c may be a submodule)."""
    path = source_modules()[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.append(Import(module, source, node.lineno))
            found += [Import(module, f"{source}.{alias.name}", node.lineno) for alias in node.names if alias.name != "*"]
    return tuple(found)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def modules_in(package: str) -> list[str]:
    return [m for m in source_modules() if within(m, package)]


def is_backend_module(name: str) -> bool:
    """A module of `rerankers/backends/` that is a backend (not the package, not a `_helper`)."""
    if not within(name, "rankbridge.rerankers.backends") or name == "rankbridge.rerankers.backends":
        return False
    return not name.rpartition(".")[2].startswith("_")


BUILTIN_MODULES = {entry.target.partition(":")[0] for entry in BUILTIN_BACKENDS.values()}


def backend_modules() -> set[str]:
    """Every backend module: those in `rerankers/backends/` and the built-ins living elsewhere
    (`llm_rankers.vllm_page`, `llm_rankers.listwise.reranker`)."""
    return {m for m in source_modules() if is_backend_module(m)} | (BUILTIN_MODULES & set(source_modules()))


def violations(modules, forbidden) -> list[str]:
    return [str(imp) for m in modules for imp in imports_of(m) if forbidden(imp)]


def test_the_import_parser_sees_function_level_and_relative_imports():
    registry = imports_of("rankbridge.rerankers.core.registry")
    assert any(i.target == "rankbridge.rerankers.core.base.Reranker" for i in registry)
    main = imports_of("rankbridge.integrations.cli.main")
    assert any(i.target.startswith("rankbridge.rerankers.core.errors") for i in main)
    assert "rankbridge.rerankers.backends.cross_encoder" in backend_modules()
    assert "rankbridge.llm_rankers.vllm_page" in backend_modules()
    # imports inside functions count (`search` imports load_reranker inside cmd_search)
    search = imports_of("rankbridge.integrations.cli.search")
    assert any(i.target.startswith("rankbridge.rerankers") and i.line > 20 for i in search)


def test_core_imports_nothing_else_of_rankbridge():
    bad = violations(
        modules_in("rankbridge.rerankers.core"),
        lambda i: within(i.target, "rankbridge") and not within(i.target, "rankbridge.rerankers.core"),
    )
    assert not bad, "rerankers.core must import only rerankers.core:\n" + "\n".join(bad)


def test_no_backend_imports_another_backend():
    backends = backend_modules()
    bad = violations(
        sorted(backends),
        lambda i: any(within(i.target, other) for other in backends if other != i.module and not within(i.module, other)),
    )
    assert not bad, "a backend imports another backend (share code through runtime/, pages/ or a backends/_helper):\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["rankbridge.rerankers.runtime", "rankbridge.rerankers.pages"])
def test_runtime_and_pages_never_import_a_backend(package):
    backends = backend_modules()
    bad = violations(
        modules_in(package),
        lambda i: within(i.target, "rankbridge.rerankers.backends") or any(within(i.target, b) for b in backends),
    )
    assert not bad, f"{package} must not see a backend (nor its config class):\n" + "\n".join(bad)


def test_rerankers_never_import_llm_rankers_or_integrations():
    bad = violations(
        modules_in("rankbridge.rerankers"),
        lambda i: within(i.target, "rankbridge.llm_rankers") or within(i.target, "rankbridge.integrations"),
    )
    assert not bad, "dependencies point one way (integrations -> llm_rankers -> rerankers):\n" + "\n".join(bad)


def test_llm_rankers_never_import_integrations():
    bad = violations(modules_in("rankbridge.llm_rankers"), lambda i: within(i.target, "rankbridge.integrations"))
    assert not bad, "dependencies point one way (integrations -> llm_rankers -> rerankers):\n" + "\n".join(bad)


FRAMEWORKS = (
    "torch", "transformers", "llama_index", "langchain_core", "qdrant_client", "onnxruntime", "httpx",
    "fastapi", "vllm", "openvino",
)  # fmt: skip


def test_importing_rankbridge_rerankers_loads_no_framework():
    code = (
        "import sys, rankbridge.rerankers\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", f"import rankbridge.rerankers loaded {out.stdout.strip()}"


def _class_names(path: Path) -> dict[str, str | None]:
    """class name -> its `name = "..."` class attribute (None when it sets none)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            out[node.name] = None
            for stmt in node.body:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                value = getattr(stmt, "value", None)
                if any(isinstance(t, ast.Name) and t.id == "name" for t in targets) and isinstance(value, ast.Constant):
                    out[node.name] = value.value
    return out


@pytest.mark.parametrize("backend", sorted(BUILTIN_BACKENDS))
def test_every_builtin_backend_names_an_existing_module_and_class(backend):
    module, _, cls = BUILTIN_BACKENDS[backend].target.partition(":")
    assert cls, f"BUILTIN_BACKENDS[{backend!r}] is not 'module:Class'"
    path = source_modules().get(module)
    assert path is not None, f"BUILTIN_BACKENDS[{backend!r}] names module {module}, which has no file"
    classes = _class_names(path)
    assert cls in classes, f"{path.relative_to(ROOT)} defines no class {cls}"
    assert classes[cls] == backend, f"{module}:{cls}.name is {classes[cls]!r}, the registry says {backend!r}"


def test_every_module_in_backends_is_a_registered_builtin_or_a_helper():
    """A newcomer finds each backend by its `backend:` name: a backend module that is not in the
    table would be a backend nobody can load by name."""
    stray = sorted(m for m in source_modules() if is_backend_module(m) and m not in BUILTIN_MODULES)
    assert not stray, "modules in rerankers/backends/ missing from BUILTIN_BACKENDS: " + ", ".join(stray)
