"""The allowed import directions, checked on the source (a small import graph, no imports run).

Serving, the served python models and the clients stand on the shared inference core
(``acfd.inference``), the generated scenes (``acfd.scenes``) and NMS (``acfd.kernels.nms``); none
of them may reach training code (``acfd.training``), directly or through what they import. The
core itself imports neither training, serving nor the clients.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {  # pyproject's package-dir mapping: acfd.X lives in X/
    "acfd.training": ROOT / "training",
    "acfd.kernels": ROOT / "kernels",
    "acfd.clients": ROOT / "clients",
    "acfd.serving": ROOT / "serving",
    "acfd.model_repository": ROOT / "model_repository",
    "acfd": ROOT / "acfd",
}
# folder -> module prefixes it may not import, directly or transitively
FORBIDDEN = {
    "serving": ("acfd.training",),
    "clients": ("acfd.training",),
    "model_repository": ("acfd.training",),
    "acfd/inference": ("acfd.training", "acfd.serving", "acfd.clients"),
    "acfd/scenes": ("acfd.training", "acfd.serving", "acfd.clients"),
}


def module_file(name: str) -> Path | None:
    """The source file of module ``name`` inside this project, or None (a third-party module)."""
    for prefix, folder in PACKAGE_DIRS.items():
        if name == prefix or name.startswith(prefix + "."):
            parts = name[len(prefix) :].lstrip(".").split(".") if name != prefix else []
            base = folder.joinpath(*parts) if parts else folder
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return None
    return None


def imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    """Every ``acfd`` module a file imports, at top level or (unless ``top_level_only``) inside functions."""
    found = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body if top_level_only else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("acfd"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("acfd") and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")
            )
    return found


def reachable(path: Path) -> dict[str, Path]:
    """Modules reachable from ``path`` through project imports: name -> the file that first imports it."""
    seen: dict[str, Path] = {}
    pending = [(path, False)]
    visited: set[tuple[Path, bool]] = set()
    while pending:
        current, as_parent = pending.pop()
        if (current, as_parent) in visited:
            continue
        visited.add((current, as_parent))
        for name in imports_of(current, top_level_only=as_parent):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                module = ".".join(parts[:i])
                target = module_file(module)
                if module not in seen:
                    seen[module] = current
                # a parent package runs only its top level (lazy imports in its functions do not run)
                if target is not None:
                    pending.append((target, i < len(parts)))
    return seen


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_forbidden_import_direct_or_transitive(folder):
    problems = []
    for path in sources(folder):
        for module, via in reachable(path).items():
            if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN[folder]):
                problems.append(f"{path.relative_to(ROOT)} reaches {module} (imported by {via.relative_to(ROOT)})")
    assert not problems, "\n".join(problems[:20])


def test_the_checker_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from acfd.export.graph import fuse_copy\n")
    assert "acfd.export.graph" in imports_of(probe)
    assert "acfd.export.graph" in reachable(probe)


def test_every_folder_is_named_in_the_readme_layout():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    for folder in (
        "acfd/",
        "training/",
        "kernels/",
        "serving/",
        "model_repository/",
        "clients/",
        "benchmarks/",
        "tests/",
        "scripts/",
        "docs/",
    ):
        assert f"`{folder}" in layout, f"README's layout table does not name {folder}"
