"""The layers stay visible: jobs import no adapter, and adapters are chosen in the wiring module only."""

from __future__ import annotations

import ast
from pathlib import Path

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
