#!/usr/bin/env python3
"""Print the import circles, the upward imports and the loose ends of src/chexpert, read from its source.

    python scripts/imports.py                 # the report; exit status 0
    python scripts/imports.py --check         # exit status 1 when over the limits below
    python scripts/imports.py --root DIR      # another package (the tests plant faults in a copy)

Every ``import`` of a module of the package counts, at module level or inside a function (a lazy
import is still a dependency); imports under ``if TYPE_CHECKING:`` do not (they never run).

Between the package's own modules: every module and subpackage found below the package is a node
(a subpackage — ``cli``, ``evaluate``, ``frameworks``, ``labeler``, ``store``, ``synth``,
``train`` — is one node: what it does inside is checked apart, below), and each must be placed
in ``LAYERS`` or ``FRONT_DOOR``; one that is not is named, and fails ``--check``, whether or not
anything imports it. ``chexpert/__init__.py``, ``__main__.py`` and ``demo.py`` (the ``python -m
chexpert.demo`` entry point) are the front door and may import anything.

The layers follow DESIGN.md's flow (a module may import only from its own layer or below), with
two departures that the code has always needed, written down here rather than hidden:

- ``index`` sits below the readers: a reader (release, plus, test set) *produces* an ``Index``,
  so it must be able to import the table; the table knows no reader.
- decoding (``dicom`` below ``imaging``, its registry) sits below the readers and verify: verify
  decodes every image and Plus reads DICOM headers, while the decoders need nothing but errors,
  schema and validation.

Inside each subpackage (``cli``, ``evaluate``, ``frameworks``, ``labeler``, ``synth``, ``train``,
``store``, and any added later): its modules must import one another without a circle (its
``__init__`` counts as one of them: a submodule importing from its own package's ``__init__``,
which imports that submodule back, is a circle), and no module may import a private name
(``_name``) of a sibling module, at any level of the package (``from .rows import _draw``): a name
shared between siblings is part of the package's inside vocabulary and is spelled without the
underscore. Importing a private *module* (``cli/_common.py``) is fine: the underscore there says
"not for users", not "not for siblings".

An import on a line marked ``re-export kept for in-flight branches`` (a name left at its old place
while other branches still import it from there; the lead removes them after merging) is listed
apart and not counted. An import of a module of the package that does not exist is named and
fails ``--check`` (it would fail at run time, or is a left-over).

A circle is a strongly connected component of more than one node; an upward import is an edge
from a lower layer to a higher one.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "chexpert"

# Lowest first. Names in one tuple share a layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("schema", "errors", "validation", "citation", "parallel", "safeio", "fileio", "progress", "version"),
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
MAX_CIRCLES = 0  # the issue allowed one; the tree has none, so a new one fails
MAX_UPWARD = 0
MAX_INNER_CIRCLES = 0  # circles between the modules of one subpackage
MAX_PRIVATE_SIBLING = 0  # private names imported from a sibling module

# Files that other branches of issue 17 are rewriting, where this script's stricter reading found
# what the old one missed: listed, marked "pending", and not counted by --check, so that the fix
# lands with the rewrite rather than as a conflict in it. The lead deletes an entry when its branch
# has merged (what is then still found fails --check, naming the line).
PENDING: dict[str, str] = {}  # none: every branch of issue 17 has merged

_MARK = "re-export kept for in-flight branches"
_LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}

Module = tuple[str, ...]  # ("chexpert", "labeler", "files"); a package is its folder's name, not "__init__"


@dataclass(frozen=True)
class Import:
    """One imported module (and, for ``from m import name`` where ``name`` is no module, the name)."""

    source: Module  # the importing module
    target: Module  # the imported module
    name: str | None  # the name taken from it, when not a module
    where: str  # file:line
    temporary: bool  # on a line marked as a re-export kept for in-flight branches


@dataclass
class Tree:
    """The modules of a package and every import between them."""

    root: Path
    modules: set[Module] = field(default_factory=set)
    packages: set[Module] = field(default_factory=set)
    imports: list[Import] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # imports of modules of the package that do not exist


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


def _files(root: Path) -> Iterator[tuple[Path, Module]]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if any(part == "__pycache__" or not part.isidentifier() for part in rel.with_suffix("").parts):
            continue
        parts = rel.with_suffix("").parts
        yield path, parts[:-1] if parts[-1] == "__init__" else parts


def read_tree(root: Path) -> Tree:
    """Every module below ``root`` (a package folder) and every import of one of them."""
    tree = Tree(root)
    files = list(_files(root))
    for path, module in files:
        tree.modules.add(module)
        if path.name == "__init__.py":
            tree.packages.add(module)
    # A folder of modules without an __init__.py is a (namespace) package all the same.
    for module in list(tree.modules):
        for i in range(1, len(module)):
            tree.packages.add(module[:i])
            tree.modules.add(module[:i])
    name = root.name
    for path, module in files:
        rel = path.relative_to(root.parent)
        package = module if path.name == "__init__.py" else module[:-1]
        text = path.read_text(encoding="utf-8")
        syntax = ast.parse(text, str(path))
        skip = _type_checking_lines(syntax)
        lines = text.splitlines()
        for node in ast.walk(syntax):
            line = getattr(node, "lineno", 0)
            if line in skip or not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            where = f"{rel}:{line}"
            temporary = _MARK in lines[line - 1]
            for target, taken in _imported(node, package, tree.modules):
                if not target or target[0] != name:
                    continue
                if target not in tree.modules:
                    tree.missing.append(f"{'.'.join(target)}: {where}")
                    continue
                tree.imports.append(Import(module, target, taken, where, temporary))
    return tree


def _imported(node: ast.Import | ast.ImportFrom, package: Module, modules: set[Module]) -> list[tuple[Module, str | None]]:
    """(module, name taken or None) for each name of one import statement in ``package``."""
    if isinstance(node, ast.Import):
        return [(tuple(alias.name.split(".")), None) for alias in node.names]
    base: Module = tuple(node.module.split(".")) if node.module else ()
    if node.level:
        base = (*package[: len(package) - (node.level - 1)], *base)
    # ``from chexpert import schema`` takes the module chexpert.schema; ``from chexpert import
    # __version__`` a name of chexpert/__init__.py.
    return [((*base, alias.name), None) if (*base, alias.name) in modules else (base, alias.name) for alias in node.names]


def _node(package: Module, module: Module) -> str | None:
    """The node of ``package``'s graph that ``module`` belongs to, or None when outside it."""
    if module[: len(package)] != package:
        return None
    return module[len(package)] if len(module) > len(package) else "__init__"


def _file(where: str) -> str:
    return where.rpartition(":")[0]


def edges(tree: Tree, package: Module, skip: frozenset[str] = frozenset()) -> dict[tuple[str, str], list[str]]:
    """(importer, imported) -> the places (file:line) that import, between the nodes of ``package``
    (imports from the files in ``skip`` left out)."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in tree.imports:
        a, b = _node(package, item.source), _node(package, item.target)
        if a is None or b is None or a == b or item.temporary or _file(item.where) in skip:
            continue
        if item.where not in found[a, b]:  # one place per statement, however many names it takes
            found[a, b].append(item.where)
    return dict(found)


def nodes(tree: Tree, package: Module) -> set[str]:
    """The modules and subpackages directly in ``package``, and its ``__init__``."""
    return {module[len(package)] for module in tree.modules if module[: len(package)] == package and len(module) > len(package)} | {"__init__"}


def temporary(tree: Tree, package: Module) -> list[str]:
    out = []
    for item in tree.imports:
        a, b = _node(package, item.source), _node(package, item.target)
        if item.temporary and a is not None and b is not None and a != b:
            out.append(f"{a} -> {b}: {item.where}")
    return out


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
        if a in FRONT_DOOR or a not in _LAYER or (b not in _LAYER and b != "__init__"):
            continue  # an unplaced module is reported as such, not guessed at
        if b == "__init__" or _LAYER[b] > _LAYER[a]:
            out.append((a, b, where))
    return out


def unplaced(tree: Tree) -> list[str]:
    """Modules and subpackages directly in the package that LAYERS and FRONT_DOOR do not place."""
    return sorted(nodes(tree, (tree.root.name,)) - set(_LAYER) - FRONT_DOOR)


def private_siblings(tree: Tree, skip: frozenset[str] = frozenset()) -> list[tuple[str, str, str, str, str]]:
    """``from .x import _y`` where x is another module of the importer's package (at any depth):
    each as (package, importer, sibling, name, file:line)."""
    out = []
    for item in tree.imports:
        name = item.name
        if name is None or not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        if item.temporary or _file(item.where) in skip:
            continue
        # The innermost package holding both: there they are two siblings (two nodes).
        common: list[str] = []
        for mine, theirs in zip(item.source, item.target):
            if mine != theirs:
                break
            common.append(mine)
        package = tuple(common)
        if package not in tree.packages:
            package = package[:-1]
        a, b = _node(package, item.source), _node(package, item.target)
        if a is not None and b is not None and a != b:
            out.append((".".join(package), a, b, name, item.where))
    return sorted(out)


@dataclass
class Findings:
    """What the checks find, each as the lines to print keyed by what identifies it."""

    circles: dict[tuple[str, ...], str]
    upward: dict[tuple[str, str], str]
    inner: dict[tuple[str, ...], str]
    private: dict[tuple[str, ...], str]


def findings(tree: Tree, skip: frozenset[str] = frozenset()) -> Findings:
    """Every circle, upward import, circle inside a subpackage and private sibling import, with
    the imports made in the files of ``skip`` left out."""
    top: Module = (tree.root.name,)
    graph = edges(tree, top, skip)
    found = Findings({}, {}, {}, {})
    for component in circles(graph):
        inner = [f"{a} -> {b}" for (a, b) in sorted(graph) if a in component and b in component]
        found.circles[tuple(component)] = f"{{{', '.join(component)}}}: {'; '.join(inner)}"
    for a, b, where in upward(graph):
        found.upward[a, b] = f"{a} (layer {_LAYER[a]}) -> {b} (layer {_LAYER.get(b, 'front door')}): {', '.join(where)}"
    for package in sorted(tree.packages - {top}):
        local = edges(tree, package, skip)
        for component in circles(local):
            steps = [f"{a} -> {b} ({', '.join(local[a, b])})" for (a, b) in sorted(local) if a in component and b in component]
            found.inner[(".".join(package), *component)] = f"{'.'.join(package)}: {{{', '.join(component)}}}: {'; '.join(steps)}"
    for key in private_siblings(tree, skip):
        inside, importer, sibling, taken, place = key
        found.private[key] = f"{inside}: {importer} -> {sibling}.{taken} ({place})"
    return found


def _report(title: str, every: dict[Any, str], counted: dict[Any, str]) -> int:
    """Print ``every`` finding, marking those not ``counted``; return how many count."""
    pending = len(every) - len(counted)
    print(f"{title}: {len(counted)}" + (f" (and {pending} pending on other branches, not counted)" if pending else ""))
    for key, line in every.items():
        print(f"  {line}" + ("" if key in counted else "  [pending]"))
    return len(counted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"fail above {MAX_CIRCLES} circle(s) or {MAX_UPWARD} upward import(s) between the modules, "
        f"{MAX_INNER_CIRCLES} circle(s) inside a subpackage or {MAX_PRIVATE_SIBLING} private sibling import(s), "
        "or on a module not in LAYERS or an import of a module that does not exist",
    )
    parser.add_argument("--root", type=Path, default=PACKAGE, help=f"the package folder to read (default {PACKAGE})")
    args = parser.parse_args(argv)
    tree = read_tree(args.root.resolve())
    top: Module = (tree.root.name,)
    failed = False

    unknown = unplaced(tree)
    if unknown:
        print(f"modules with no layer (add them to LAYERS): {', '.join(unknown)}")
        failed = True
    stale = sorted(set(_LAYER) - nodes(tree, top))
    if stale:
        print(f"in LAYERS but not in the package (remove them): {', '.join(stale)}")
    if tree.missing:
        print(f"imports of modules that do not exist: {len(tree.missing)}")
        for line in tree.missing:
            print(f"  {line}")
        failed = True

    every = findings(tree)
    counted = findings(tree, frozenset(PENDING))
    failed |= _report("import circles", every.circles, counted.circles) > MAX_CIRCLES
    failed |= _report("upward imports", every.upward, counted.upward) > MAX_UPWARD
    failed |= _report("import circles inside subpackages", every.inner, counted.inner) > MAX_INNER_CIRCLES
    failed |= _report("private names imported from a sibling module", every.private, counted.private) > MAX_PRIVATE_SIBLING
    pending = sorted({_file(i.where) for i in tree.imports} & set(PENDING))
    for path in pending:
        print(f"pending: {path}: {PENDING[path]}")

    moved = [line for package in sorted(tree.packages) for line in temporary(tree, package)]
    if moved:
        print(f"temporary re-exports, not counted: {len(moved)}")
        for line in moved:
            print(f"  {line}")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
