"""The import structure of saekit, read from the source (AST, every import statement including
those inside functions): no import cycle between modules, none between subpackages (the graph
collapsed to saekit.data, saekit.models, ...), and torch.distributed only in saekit/parallel/
(the single-process trainer reaches it through a strategy object)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"saekit": ROOT / "saekit", "saekit.kernels": ROOT / "kernels"}
DISTRIBUTED_HOME = "saekit.parallel"


def module_files() -> dict[str, Path]:
    """Every module of saekit (kernels/ imports as saekit.kernels) -> its file."""
    mods = {}
    for prefix, folder in PACKAGE_DIRS.items():
        for file in folder.rglob("*.py"):
            parts = list(file.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([prefix, *parts])] = file
    return mods


def imported_names(file: Path, module: str, is_package: bool) -> list[str]:
    """Dotted names this file imports, relative imports resolved; ``from a import b`` gives both
    ``a.b`` and ``a`` (the caller keeps the longest that is a module)."""
    names = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            names += [f"{base}.{a.name}" for a in node.names] + [base]
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the saekit modules it imports, plus the packages whose __init__ Python runs
    first (a target's parent packages that are not the importer's own)."""
    mods = module_files()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, file in mods.items():
        is_package = file.name == "__init__.py"
        own = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 2)}
        for name in imported_names(file, mod, is_package):
            parts = name.split(".")
            target = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in mods), None)
            if target is None:
                continue
            tparts = target.split(".")
            for i in range(1, len(tparts) + 1):
                step = ".".join(tparts[:i])
                if step in mods and step not in own and step != mod:
                    graph[mod].add(step)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_of(module: str) -> str:
    """The subpackage (or top-level module) a module belongs to: saekit.io.format -> saekit.io."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to saekit's subpackages (edges inside one package dropped)."""
    out: dict[str, set[str]] = {package_of(m): set() for m in graph}
    for mod, targets in graph.items():
        out[package_of(mod)] |= {package_of(t) for t in targets} - {package_of(mod)}
    return out


def uses_distributed(file: Path) -> list[int]:
    """Lines that import torch.distributed or reach it as an attribute (torch.distributed.x)."""
    lines = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed") for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and (
            node.module.startswith("torch.distributed")
            or (node.module == "torch" and any(a.name == "distributed" for a in node.names))
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.Attribute) and node.attr == "distributed":
            if isinstance(node.value, ast.Name) and node.value.id == "torch":
                lines.append(node.lineno)
    return lines


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "saekit.training.loop" in graph["saekit.parallel.data_parallel"]  # from a.b import c
    assert "saekit.parallel.comm" in graph["saekit.parallel.sharded_topk"]  # from package import module
    assert "saekit.dictionaries.folder" in graph["saekit.dictionaries.base"]  # an import inside a function
    assert "saekit.parallel" in graph["saekit.commands.train"]  # a parent package's __init__ runs first


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles between saekit modules: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_cycle_between_packages():
    # e.g. a dictionary method importing saekit.io while saekit.io builds dictionaries: no module
    # cycle, but the two packages can no longer be read (or moved) one without the other
    found = cycles(package_graph(import_graph()))
    assert not found, "import cycles between saekit packages: " + "; ".join(" <-> ".join(c) for c in found)
    probe = {"saekit.a.x": {"saekit.b.y"}, "saekit.b.y": set(), "saekit.b.z": {"saekit.a"}, "saekit.a": set()}
    assert cycles(package_graph(probe)) == [["saekit.a", "saekit.b"]]  # the check does see one


# the README's layout, left to right: a package imports only packages to its left
LAYERS = ["data", "models", "activations", "dictionaries", "io", "training", "evaluation", "report", "editing",
          "pipeline", "commands"]  # fmt: skip


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {f"saekit.{name}": i for i, name in enumerate(LAYERS)}
    return [
        f"{src} -> {dst}"
        for src, targets in package_graph(graph).items()
        for dst in targets
        if src in rank and dst in rank and rank[dst] > rank[src]
    ]


def test_packages_import_only_the_layers_before_them():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the README's layout order: " + "; ".join(sorted(bad))
    probe = {"saekit.evaluation.m": {"saekit.pipeline.run"}, "saekit.pipeline.run": set()}
    assert upward_imports(probe) == ["saekit.evaluation -> saekit.pipeline"]  # the check does see one


def test_torch_distributed_only_in_parallel():
    outside = {
        f"{file.relative_to(ROOT)}:{line}"
        for mod, file in module_files().items()
        if mod != DISTRIBUTED_HOME and not mod.startswith(DISTRIBUTED_HOME + ".")
        for line in uses_distributed(file)
    }
    assert not outside, f"torch.distributed used outside saekit/parallel/: {sorted(outside)}"
    assert uses_distributed(ROOT / "saekit" / "parallel" / "comm.py")  # the check does see it


def import_fallbacks(file: Path) -> list[int]:
    """Lines of ``try: import saekit... except ImportError`` blocks: saekit's own modules (the
    kernels included) always ship, so such a fallback is dead code."""
    lines = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        if not isinstance(node, ast.Try):
            continue
        caught = {getattr(h.type, "id", None) for h in node.handlers}
        if not caught & {"ImportError", "ModuleNotFoundError"}:
            continue
        for inner in (n for stmt in node.body for n in ast.walk(stmt)):
            names = [a.name for a in inner.names] if isinstance(inner, ast.Import) else []
            names += [inner.module or ""] if isinstance(inner, ast.ImportFrom) and not inner.level else []
            if any(n == "saekit" or n.startswith("saekit.") for n in names):
                lines.append(node.lineno)
    return lines


def test_no_import_fallbacks_for_saekit_modules(tmp_path):
    found = {f"{file.relative_to(ROOT)}:{line}" for file in module_files().values() for line in import_fallbacks(file)}
    assert not found, f"try/except ImportError around saekit's own modules: {sorted(found)}"
    probe = tmp_path / "probe.py"  # the check does see one
    probe.write_text("try:\n    from saekit.kernels import topk_encode\nexcept ImportError:\n    topk_encode = None\n")
    assert import_fallbacks(probe) == [1]


def test_every_declared_pytest_marker_is_used():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"].get("markers", [])
    tests = "\n".join(f.read_text(encoding="utf-8") for f in (ROOT / "tests").rglob("*.py"))
    unused = [m for m in declared if f"mark.{m.split(':')[0].strip()}" not in tests]
    assert not unused, f"pytest markers declared in pyproject.toml but used by no test: {unused}"


KIND_NAMES = {"relu", "topk", "batchtopk", "jumprelu", "matryoshka", "abstopk", "gated"}


def kind_tables(file: Path) -> list[int]:
    """Lines of a literal tuple/list/set/dict holding three or more dictionary kind names: a
    table of kinds that belongs in the architecture registry (saekit/kinds.py; the classes in
    saekit/dictionaries/registry.py)."""
    lines = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"), str(file))):
        items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and items:
            names = {i.value for i in items if isinstance(i, ast.Constant) and i.value in KIND_NAMES}
            if len(names) >= 3:
                lines.append(node.lineno)
    return lines


def test_one_architecture_registry(tmp_path):
    from saekit.dictionaries.registry import ARCHITECTURES, CROSSCODERS
    from saekit.kinds import KINDS, saelens_reads

    assert list(ARCHITECTURES) == list(KINDS) and set(KINDS) == KIND_NAMES
    assert sorted(CROSSCODERS) == sorted(k for k, f in KINDS.items() if f.crosscoder)
    # every saved form is a kind saved as itself, so saekit reads back what it writes
    assert all(KINDS[f.saved_as].saved_as == f.saved_as for f in KINDS.values())
    assert {v[0] for v in saelens_reads().values()} == {f.saved_as for f in KINDS.values()}
    found = {
        f"{file.relative_to(ROOT)}:{line}"
        for mod, file in module_files().items()
        if mod not in ("saekit.kinds", "saekit.dictionaries.registry")  # the facts, the classes
        for line in kind_tables(file)
    }
    assert not found, f"tables of dictionary kinds outside the registry: {sorted(found)}"
    probe = tmp_path / "probe.py"  # the check does see one
    probe.write_text('SAE_ARCH = {"relu": "standard", "topk": "topk", "gated": "gated"}\n')
    assert kind_tables(probe) == [1]
