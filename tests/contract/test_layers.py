"""The layer rules of docs/DESIGN.md, enforced by reading every module's imports with `ast`:
top-level imports, imports inside functions and `if TYPE_CHECKING:` blocks, relative imports,
and `importlib.import_module("...")` / `__import__("...")` with a literal name. Every .py file
under service/, trainer_client/, bench/ and experiments/ is read (tests are not).

"Ours" means the packages service, trainer_client, bench and experiments. A rule's test
lists every violation as `file:line importer -> imported`. The self-tests at the end run each
rule on a small synthetic module that breaks it, so a rule that can no longer fail is caught.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "trainer_client", "bench", "experiments")
OURS = frozenset(PACKAGES)
WEB_FRAMEWORK = frozenset({"fastapi", "starlette", "uvicorn"})
# Allowed below the API wherever needed: the package itself (its version) and the log format.
SERVICE_ROOT = frozenset({"service", "service.logs"})


@dataclass(frozen=True)
class Import:
    path: str  # file, relative to the repo
    line: int
    importer: str  # dotted name of the importing module
    target: str  # dotted name of the imported module

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {self.importer} -> {self.target}"


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def top(name: str) -> str:
    return name.split(".", 1)[0]


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package) of a file under root."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def imports_in_source(
    source: str,
    importer: str,
    *,
    is_package: bool = False,
    path: str = "<string>",
    known: Iterable[str] = (),
) -> list[Import]:
    """Every module `source` imports, anywhere in it. `from pkg import name` counts as
    importing `pkg.name` when that is a known module, else `pkg`."""
    modules = frozenset(known)
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    found: list[Import] = []

    def add(node: ast.AST, target: str) -> None:
        found.append(Import(path, getattr(node, "lineno", 0), importer, target))

    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(node, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                add(node, candidate if candidate in modules else module)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in ("import_module", "__import__") and isinstance(first, ast.Constant):
                if isinstance(first.value, str) and not first.value.startswith("."):
                    add(node, first.value)
    return found


@functools.cache
def scan(root: Path = REPO) -> tuple[Import, ...]:
    files = sorted(f for package in PACKAGES for f in (root / package).rglob("*.py"))
    names = {f: module_name(f, root) for f in files}
    known = {name for name, _ in names.values()}
    found: list[Import] = []
    for file, (name, is_package) in names.items():
        source = file.read_text(encoding="utf-8")
        found += imports_in_source(
            source,
            name,
            is_package=is_package,
            path=str(file.relative_to(root)),
            known=known,
        )
    return tuple(found)


# --------------------------------------------------------------------------- the rules

Rule = Callable[[Import], bool]  # True: the import breaks the rule


def attribution_is_pure(i: Import) -> bool:
    return within(i.importer, "service.attribution") and (
        top(i.target) in OURS and not within(i.target, "service.attribution")
    )


def backends_import_only_errors(i: Import) -> bool:
    for backend in ("service.retrieval", "service.cache", "service.rewardmodel"):
        if within(i.importer, backend):
            allowed = (backend, "service.errors", "service.attribution")
            return (
                top(i.target) in OURS
                and not any(within(i.target, a) for a in allowed)
                and i.target not in SERVICE_ROOT
            )
    return False


def engine_has_no_web_framework(i: Import) -> bool:
    return within(i.importer, "service.engine") and top(i.target) in WEB_FRAMEWORK


def api_imports_engine_schemas_errors_config(i: Import) -> bool:
    allowed = (
        "service.api",
        "service.engine",
        "service.schemas",
        "service.errors",
        "service.config",
    )
    return (
        within(i.importer, "service.api")
        and top(i.target) in OURS
        and not any(within(i.target, a) for a in allowed)
        and i.target not in SERVICE_ROOT
    )


def only_the_cli_imports_the_client(i: Import) -> bool:
    importers = ("service.cli", "trainer_client", "experiments")
    return within(i.target, "trainer_client") and not any(within(i.importer, p) for p in importers)


def the_client_never_imports_the_service(i: Import) -> bool:
    return within(i.importer, "trainer_client") and within(i.target, "service")


def nothing_imports_experiments(i: Import) -> bool:
    return within(i.target, "experiments") and not within(i.importer, "experiments")


def violations(rule: Rule, imports: Iterable[Import]) -> list[str]:
    return [str(i) for i in imports if rule(i)]


def test_the_scan_reads_every_package() -> None:
    """Sanity: the scan finds imports in every package, inside functions and TYPE_CHECKING
    blocks too (service/api/local.py imports the engine's types only for type checking)."""
    imports = scan()
    assert {top(i.importer) for i in imports} == OURS
    assert any(
        i.path == "service/api/local.py" and i.target == "service.engine.services" for i in imports
    )
    assert any(
        i.target == "service.retrieval.demo" and i.importer == "service.engine.engine"
        for i in imports
    )


def test_attribution_imports_nothing_of_ours() -> None:
    """service.attribution (the pure math) imports nothing of ours but itself."""
    assert violations(attribution_is_pure, scan()) == []


def test_retrieval_cache_and_rewardmodel_import_only_errors() -> None:
    """service.retrieval, service.cache and service.rewardmodel import, of ours, only
    themselves, service.errors and service.attribution (and `service` / `service.logs`)."""
    assert violations(backends_import_only_errors, scan()) == []


def test_the_engine_never_imports_the_web_framework() -> None:
    """service.engine imports neither fastapi, starlette nor uvicorn."""
    assert violations(engine_has_no_web_framework, scan()) == []


def test_the_api_imports_engine_schemas_errors_and_config_only() -> None:
    """service.api imports, of ours, only itself, service.engine, service.schemas,
    service.errors and service.config (and `service` / `service.logs`)."""
    assert violations(api_imports_engine_schemas_errors_config, scan()) == []


def test_only_the_cli_imports_the_trainer_client() -> None:
    """Of ours, only service.cli imports trainer_client (besides trainer_client itself and
    the research code in experiments, which may import both)."""
    assert violations(only_the_cli_imports_the_client, scan()) == []


def test_the_trainer_client_never_imports_the_service() -> None:
    """trainer_client imports nothing from service (it ships on its own)."""
    assert violations(the_client_never_imports_the_service, scan()) == []


def test_nothing_imports_experiments() -> None:
    """No module outside experiments imports experiments."""
    assert violations(nothing_imports_experiments, scan()) == []


# --------------------------------------------------------------------------- self-tests

KNOWN = {"service", "service.errors", "service.logs", "service.cache", "service.engine"}
RULES: list[tuple[Rule, str, str, str, str]] = [
    # (rule, importing module, a source that breaks it, the import it must report, a source
    # that keeps it)
    (
        attribution_is_pure,
        "service.attribution.values",
        "from service import errors\n",
        "service.errors",
        "import numpy\nfrom service.attribution.ndcg import dcg\nfrom .segment import segment\n",
    ),
    (
        backends_import_only_errors,
        "service.cache.memory_store",
        "def load():\n    from service.engine import engine\n",
        "service.engine",
        "import redis\nfrom service import __version__\nfrom service.errors import OspoError\n",
    ),
    (
        engine_has_no_web_framework,
        "service.engine.plan",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fastapi import Request\n",
        "fastapi",
        "import anyio\nfrom service.cache import ScoreCache\nfrom service.retrieval import demo\n",
    ),
    (
        api_imports_engine_schemas_errors_config,
        "service.api.routes.reward",
        "import importlib\nimportlib.import_module('service.cache.redis_store')\n",
        "service.cache.redis_store",
        "import fastapi\nfrom service import __version__\nfrom service.engine import Limits\n",
    ),
    (
        only_the_cli_imports_the_client,
        "service.engine.engine",
        "class X:\n    def f(self):\n        import trainer_client._labels\n",
        "trainer_client._labels",
        "import httpx\nfrom service.cli import main\n",
    ),
    (
        the_client_never_imports_the_service,
        "trainer_client.adapter",
        "from service.engine.targets import parse_label\n",
        "service.engine.targets",
        "import httpx\nfrom ._labels import parse_label\nfrom trainer_client import Group\n",
    ),
    (
        nothing_imports_experiments,
        "bench.core",
        "__import__('experiments.train')\n",
        "experiments.train",
        "from service.engine import AttributionEngine\nimport bench.naive\n",
    ),
]


@pytest.mark.parametrize(
    ("rule", "importer", "source", "expected", "allowed"),
    RULES,
    ids=[r[0].__name__ for r in RULES],
)
def test_each_rule_reports_a_violating_import(
    rule: Rule, importer: str, source: str, expected: str, allowed: str
) -> None:
    found = imports_in_source(source, importer, known=KNOWN)
    assert [i.target for i in found if rule(i)] == [expected]
    kept = imports_in_source(allowed, importer, known=KNOWN)
    assert kept and not [str(i) for i in kept if rule(i)]


def test_relative_imports_are_resolved() -> None:
    source = "from . import _labels\nfrom ..service import errors\nfrom .openrlhf import core\n"
    found = imports_in_source(
        source,
        "trainer_client",
        is_package=True,
        known={"trainer_client._labels", "trainer_client.openrlhf.core"},
    )
    assert [i.target for i in found] == [
        "trainer_client._labels",
        "service",
        "trainer_client.openrlhf.core",
    ]
    nested = imports_in_source("from ..errors import InvalidRequest\n", "service.engine.plan")
    assert [i.target for i in nested] == ["service.errors"]
    assert the_client_never_imports_the_service(found[1])


def test_a_violation_in_a_scanned_tree_is_reported_with_file_and_line(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "trainer_client" / "leak.py").write_text(
        '"""A client module."""\n\nimport json\n\n\ndef f():\n    from service import errors\n'
    )
    (tmp_path / "service" / "errors.py").write_text("")
    found = violations(the_client_never_imports_the_service, scan(tmp_path))
    assert found == ["trainer_client/leak.py:7 trainer_client.leak -> service.errors"]
