#!/usr/bin/env python3
"""Print the import circles and the upward imports of src/chexpert, read from its source.

    python scripts/imports.py            # the report; exit status 0
    python scripts/imports.py --check    # exit status 1 when over the limits below

Every ``import`` of a chexpert module counts, at module level or inside a function (a lazy import
is still a dependency); imports under ``if TYPE_CHECKING:`` do not (they never run). A subpackage
(``cli``, ``evaluate``, ``frameworks``, ``labeler``, ``store``, ``synth``, ``train``) is one node: what it
does inside is its own business; ``chexpert/__init__.py``, ``__main__.py`` and ``demo.py`` (the
``python -m chexpert.demo`` entry point) are the front door and may import anything.

The layers follow DESIGN.md's flow (a module may import only from its own layer or below), with
two departures that the code has always needed, written down here rather than hidden:

- ``index`` sits below the readers: a reader (release, plus, test set) *produces* an ``Index``,
  so it must be able to import the table; the table knows no reader.
- decoding (``dicom`` below ``imaging``, its registry) sits below the readers and verify: verify
  decodes every image and Plus reads DICOM headers, while the decoders need nothing but errors,
  schema and validation.

An import on a line marked ``re-export kept for in-flight branches`` (a name left at its old place
while other branches still import it from there; the lead removes them after merging) is listed
apart and not counted.

A circle is a strongly connected component of more than one node; an upward import is an edge
from a lower layer to a higher one.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "chexpert"

# Lowest first. Names in one tuple share a layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("schema", "errors", "validation", "citation", "parallel", "safeio", "fileio", "progress"),
    ("dicom",),
    ("imaging", "augment"),
    ("index", "splits"),
    ("release",),
    ("testset", "plus", "mimic"),
    ("discover",),
    ("localize",),
    ("verify",),
    ("selection", "subgroups", "policy"),
    ("store",),
    ("sampling", "frameworks"),
    ("evaluate", "plots"),
    ("labeler",),
    ("train",),
    ("report",),
    ("synth",),
    ("cli",),
)
FRONT_DOOR = {"__init__", "__main__", "demo"}  # demo.py: ``python -m chexpert.demo``, a second __main__
MAX_CIRCLES = 1
MAX_UPWARD = 1


def _node(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "chexpert":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def edges() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the places (file:line) that import."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        module = ".".join(rel.with_suffix("").parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        source = _node(module)
        if source is None:
            continue
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, str(path))
        skip = _type_checking_lines(tree)
        lines = text.splitlines()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from chexpert import schema`` imports the module chexpert.schema.
                targets = [f"{base}.{alias.name}" if base == "chexpert" else base for alias in node.names]
            for target in targets:
                imported = _node(target)
                if imported is None or imported == source or (imported not in _LAYER and imported != "__init__"):
                    continue
                line = getattr(node, "lineno", 0)
                if _MARK in lines[line - 1]:
                    TEMPORARY.append(f"{source} -> {imported}: {rel}:{line}")
                    continue
                found[source, imported].append(f"{rel}:{line}")
    return dict(found)


_MARK = "re-export kept for in-flight branches"
TEMPORARY: list[str] = []
_LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def circles(graph: dict[tuple[str, str], list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in graph:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component, key=lambda n: (_LAYER.get(n, -1), n)))

    for v in sorted({n for edge in graph for n in edge}):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(graph: dict[tuple[str, str], list[str]]) -> list[tuple[str, str, list[str]]]:
    out = []
    for (a, b), where in sorted(graph.items()):
        if a in FRONT_DOOR or a not in _LAYER:
            continue
        if b == "__init__" or _LAYER[b] > _LAYER[a]:
            out.append((a, b, where))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"fail above {MAX_CIRCLES} circle(s) or {MAX_UPWARD} upward import(s)")
    args = parser.parse_args(argv)
    graph = edges()
    unknown = sorted({n for edge in graph for n in edge} - set(_LAYER) - FRONT_DOOR)
    if unknown:
        print(f"modules with no layer (add them to LAYERS): {', '.join(unknown)}")
    found = circles(graph)
    print(f"import circles: {len(found)}")
    for component in found:
        inner = [f"{a} -> {b}" for (a, b) in sorted(graph) if a in component and b in component]
        print(f"  {{{', '.join(component)}}}: {'; '.join(inner)}")
    up = upward(graph)
    print(f"upward imports: {len(up)}")
    for a, b, where in up:
        print(f"  {a} (layer {_LAYER[a]}) -> {b} (layer {_LAYER.get(b, 'front door')}): {', '.join(where)}")
    if TEMPORARY:
        print(f"temporary re-exports, not counted: {len(TEMPORARY)}")
        for line in TEMPORARY:
            print(f"  {line}")
    if args.check and (len(found) > MAX_CIRCLES or len(up) > MAX_UPWARD or unknown):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
