"""wrapcert's modules import one way: ``cli`` on top, dispatching to ``commands``, which sits on
the pure modules. Imports inside functions count too: a lazy import still closes a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

WRAPCERT = Path(__file__).resolve().parent.parent / "src" / "tlswrap" / "wrapcert"
PACKAGE = "tlswrap.wrapcert"


def wrapcert_imports(path: Path) -> set[str]:
    """The wrapcert modules (by file stem) that *path* imports anywhere in its text."""
    modules = {p.stem for p in WRAPCERT.glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = PACKAGE.split(".")
            anchor = parts[: len(parts) - node.level + 1] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            # 'from tlswrap.wrapcert import commands' names a module as well as an attribute
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target.startswith(PACKAGE + "."):
                name = target[len(PACKAGE) + 1 :].split(".")[0]
                if name in modules and name != path.stem:
                    found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    return {path.stem: wrapcert_imports(path) for path in sorted(WRAPCERT.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    path: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if (cycle := visit(child)) is not None:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycle_among_wrapcert_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cli_dispatches_to_commands_and_nothing_imports_cli():
    graph = import_graph()
    assert "commands" in graph["cli"]  # imported inside main(): lazy imports are seen
    assert sorted(name for name, deps in graph.items() if "cli" in deps) == ["__main__"]


def test_find_cycle_reports_a_cycle_through_several_modules():
    graph = {"cli": {"commands"}, "commands": {"build"}, "build": {"cli"}, "dn": set()}
    assert find_cycle(graph) == ["build", "cli", "commands", "build"]
    assert find_cycle({"cli": {"commands"}, "commands": set()}) is None


def test_relative_and_lazy_imports_are_seen(tmp_path):
    # read as if it were a wrapcert module; its name is none of theirs, so each import counts
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n"
        "    from . import cli\n"
        "    from .build import issue\n"
        "    import tlswrap.wrapcert.dn\n"
        "    from tlswrap.wrapcert import commands\n"
        "    from tlswrap import errors\n"
    )
    assert wrapcert_imports(probe) == {"cli", "build", "dn", "commands"}
