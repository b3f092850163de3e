"""The package's imports follow its rooms: a room imports only itself and rooms below it.

Order (docs/architecture.md): core < ingest, features < evaluation, simulate < modeling <
scoring, reporting < tracking < cli. Rooms on one level do not import each other. The
package's front door (``crs_ml/__init__.py``: ``crs_ml.score(model, cohort)`` resolves any
model, and ``__main__``) stands with the cli. Every
``import`` statement counts, including those inside functions (lazy imports). No module
imports another module's underscore names, nor a private (underscore) module from outside
its own room.
"""

from __future__ import annotations

import ast
from pathlib import Path

import crs_ml

PACKAGE = Path(crs_ml.__file__).parent

#: room -> level; a module may import its own room or a room of a lower level
LEVELS = {
    "core": 0,
    "ingest": 1,
    "features": 1,
    "evaluation": 2,
    "simulate": 2,
    "modeling": 3,
    "scoring": 4,
    "reporting": 4,
    "tracking": 5,
    "cli": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


#: the package's front door (``crs_ml.score(...)``, ``python -m crs_ml``) stands with the cli
FRONT_DOOR = {"crs_ml", "crs_ml.__main__"}


def room(module: str) -> str:
    """``crs_ml.ingest.load`` -> ingest; ``crs_ml.config`` -> core; ``crs_ml`` -> cli."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LEVELS:
        return parts[1]
    if module in FRONT_DOOR:
        return "cli"
    return "core"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import of a crs_ml module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "crs_ml":
                    found.append((node.lineno, a.name, []))
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                base = name.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if mod.split(".")[0] == "crs_ml":
                found.append((node.lineno, mod, [a.name for a in node.names]))
    return found


def resolve(target: str, names: list[str], known: dict[str, Path]) -> list[tuple[str, str]]:
    """(module, name) pairs: ``from crs_ml.ingest import load`` imports module crs_ml.ingest.load."""
    out = []
    for n in names or [""]:
        sub = f"{target}.{n}" if n else target
        out.append((sub, "") if sub in known else (target, n))
    return out


def violations() -> list[str]:
    known = modules()
    problems = []
    for name, path in known.items():
        here = room(name)
        rel = path.relative_to(PACKAGE.parent)
        for line, target, names in imports(path, name):
            for mod, attr in resolve(target, names, known):
                there = room(mod)
                if there != here and LEVELS[there] >= LEVELS[here]:
                    problems.append(
                        f"{rel}:{line}: {here} (level {LEVELS[here]}) imports {mod} "
                        f"({there}, level {LEVELS[there]}): against the order"
                    )
                if attr.startswith("_") and mod != name:
                    problems.append(f"{rel}:{line}: imports the private name {mod}.{attr}")
                private = [p for p in mod.split(".") if p.startswith("_") and p != "__init__"]
                if private and there != here:
                    problems.append(f"{rel}:{line}: imports the private module {mod}")
        for line, mod, attr in private_attributes(path, name, known):
            problems.append(f"{rel}:{line}: uses the private name {mod}.{attr}")
    return sorted(set(problems))


def private_attributes(path: Path, name: str, known: dict[str, Path]):
    """``alias._name`` where ``alias`` is another crs_ml module (``tracking._retry``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("crs_ml"):
            for a in node.names:
                if f"{node.module}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in known:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and aliases[node.value.id] != name
        ):
            yield node.lineno, aliases[node.value.id], node.attr


def test_every_room_is_known():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages <= set(LEVELS), subpackages - set(LEVELS)


def test_imports_follow_the_order_of_the_rooms():
    problems = violations()
    assert not problems, "\n".join(problems)


def test_the_walk_sees_lazy_imports():
    """The check is not vacuous: it finds function-level imports and crosses rooms."""
    known = modules()
    seen = {
        (room(name), room(mod))
        for name, path in known.items()
        for _, target, names in imports(path, name)
        for mod, _ in resolve(target, names, known)
    }
    assert ("cli", "scoring") in seen and ("modeling", "evaluation") in seen
    lazy = [
        node
        for node in ast.walk(ast.parse(known["crs_ml.cli.scoring"].read_text()))
        if isinstance(node, ast.FunctionDef)
        for inner in ast.walk(node)
        if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("crs_ml")
    ]
    assert lazy
