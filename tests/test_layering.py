"""The import layering of the tree, read from the source (every import, module level or inside a
function): the ground floor imports nothing above it, and no module takes a private name from another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vjengine", "bank_builder")

# package -> the vjengine packages it must never import
FORBIDDEN = {
    "vjengine.mapping": ("vjengine.render", "vjengine.show", "vjengine.control", "vjengine.app", "vjengine.frameloop"),
    "vjengine.audio": ("vjengine.render", "vjengine.show", "vjengine.control", "vjengine.app", "vjengine.frameloop"),
    "vjengine.bank": ("vjengine.render", "vjengine.show", "vjengine.control", "vjengine.app", "vjengine.frameloop",
                      "vjengine.mapping", "vjengine.audio"),
}
GROUND_FLOOR = ("vjengine.effects", "vjengine.errors", "vjengine.logonce", "vjengine.netaddr")
# Private names still taken across modules (none now; add one only with the reason beside it).
KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, imported name or None, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return found


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_tree_is_there():
    names = {module_name(p) for p in sources()}
    assert {"vjengine.effects", "vjengine.mapping.preset", "vjengine.render.compositor", "vjengine.frameloop"} <= names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_import_nothing_from_above(package):
    bad = []
    for path in sources():
        here = module_name(path)
        if not within(here, package):
            continue
        for module, name, line in imports(path):
            full = f"{module}.{name}" if name else module
            for above in FORBIDDEN[package]:
                if within(module, above) or within(full, above):
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {full}")
    assert not bad, "\n".join(bad)


def test_the_ground_floor_imports_nothing_from_vjengine():
    bad = []
    for path in sources():
        if module_name(path) not in GROUND_FLOOR:
            continue
        bad += [f"{path.relative_to(ROOT)}:{line} imports {module}" for module, _, line in imports(path)
                if within(module, "vjengine") or within(module, "bank_builder")]
    assert not bad, "\n".join(bad)


def test_no_module_imports_a_private_name_from_another():
    bad = []
    for path in sources():
        here = module_name(path)
        for module, name, line in imports(path):
            if not (within(module, "vjengine") or within(module, "bank_builder")) or module == here:
                continue
            private = [part for part in [*module.split("."), name or ""] if part.startswith("_")
                       and not (part.startswith("__") and part.endswith("__"))]
            full = f"{module}.{name}" if name else module
            if private and (path.relative_to(ROOT).as_posix(), full) not in KNOWN_PRIVATE_IMPORTS:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {full}")
    assert not bad, "\n".join(bad)
