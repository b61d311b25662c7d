"""The layers stay visible: each layer imports only the layers below it, and adapters are chosen in wiring only.

::

    entry points (cli, dashboard, aws, scheduler, warmup)  ->  wiring  ->  adapters, jobs
    jobs  ->  ml (lazily), reporting, inference, state, config  ->  core  ->  errors
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "scalpbot"
ADAPTER_CLASSES = ("PaperBroker", "CcxtBroker", "FolderStore", "S3Store", "MemoryStore", "CcxtMarketData")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _constructed(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ADAPTER_CLASSES
    }


LAYERS = {
    "core": {"core", "errors"},
    "state": {"core", "errors", "ports", "state"},
    "inference": {"core", "errors", "ports", "state", "inference"},
    "reporting": {"core", "errors", "reporting"},
    "ml": {"core", "errors", "ports", "ml", "adapters.progress"},
    "jobs": {"core", "errors", "ports", "config", "state", "inference", "ml", "reporting", "jobs"},
}
"""What each layer may import from scalpbot (a package, or one module of one: ``adapters.progress`` draws the
model fit's progress bar)."""
CORE_LIBRARIES = {"numpy", "pandas", "numba"}


def _scalpbot_imports(path: Path) -> set[str]:
    return {m.removeprefix("scalpbot.") for m in _imports(path) if m.startswith("scalpbot.")}


def _allowed(module: str, layers: set[str]) -> bool:
    return any(module == layer or module.startswith(layer + ".") for layer in layers)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_the_layers_below_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no layer {layer}"
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            m for m in _scalpbot_imports(path) if not _allowed(m, LAYERS[layer])
        )
        for path in files
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_core_uses_no_library_beyond_numpy_pandas_and_numba() -> None:
    outside = {
        str(path.relative_to(PACKAGE)): sorted(
            top
            for top in {m.split(".")[0] for m in _imports(path)}
            if top not in sys.stdlib_module_names and top not in CORE_LIBRARIES | {"scalpbot"}
        )
        for path in sorted((PACKAGE / "core").rglob("*.py"))
    }
    assert {name: libs for name, libs in outside.items() if libs} == {}


def test_the_layer_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from scalpbot.adapters.store import MemoryStore\nimport ccxt\n")
    assert not _allowed("adapters.store", LAYERS["core"])
    assert _scalpbot_imports(bad) == {"adapters.store"}
    assert "ccxt" in _imports(bad)


def test_no_job_imports_an_adapter() -> None:
    offenders = {
        path.name: sorted(m for m in _imports(path) if m.startswith("scalpbot.adapters"))
        for path in sorted((PACKAGE / "jobs").glob("*.py"))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_brokers_stores_and_sources_are_constructed_only_in_the_wiring_module_and_their_own_package() -> None:
    outside = {
        str(path.relative_to(PACKAGE)): sorted(_constructed(path))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "adapters" not in path.parts and path.name != "wiring.py"
    }
    assert {name: classes for name, classes in outside.items() if classes} == {}


def test_every_error_class_lives_in_the_one_error_module() -> None:
    import importlib
    import pkgutil

    import scalpbot
    from scalpbot.errors import ScalpbotError

    skipped = {
        "scalpbot.aws",
        "scalpbot.__main__",
        "scalpbot.warmup",
    }  # entry points with import-time effects
    for module in pkgutil.walk_packages(scalpbot.__path__, "scalpbot."):
        if module.name not in skipped:
            importlib.import_module(module.name)
    elsewhere: list[str] = []
    pending = [ScalpbotError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__module__.startswith("scalpbot.") and cls.__module__ != "scalpbot.errors":
            elsewhere.append(f"{cls.__module__}.{cls.__qualname__}")
    assert elsewhere == []
