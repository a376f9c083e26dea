"""Stages import one way: every import in cnnkit/, inside functions too, read with ast.

The order (lowest first) is written in README.md's "Development" section; a stage may import
itself and any stage below it, never one above, and packages never import each other in a loop.
A package's private names (`_name`, or a module `_mod`) stay inside that package."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "cnnkit"
STAGES = ["errors", "fsutil", "io", "kernels", "layers", "data", "model", "train", "look", "runs",
          "distributed", "search", "serve", "keras", "cli"]
RANK = {name: i for i, name in enumerate(STAGES)}
RANK["front door"] = len(STAGES)


def module_name(path, root=ROOT):
    """cnnkit/model/saving.py -> cnnkit.model.saving; a package's __init__ is the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path, root=ROOT):
    """Yield (line, target module, imported names) for every import in one file, relative
    imports resolved against the file's own package."""
    mod = module_name(path, root)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
                if alias.name == "cnnkit" and alias.asname is None:  # `import cnnkit`, then
                    yield from front_door_uses(tree)                  # `cnnkit.run(...)`
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if node.module is None or target == "cnnkit":  # `from . import x`, `from cnnkit
                for name in names:                           # import data`: x may be a module
                    yield node.lineno, f"{target}.{name}", []
            else:
                yield node.lineno, target, names


FRONT_DOOR = "front door"  # cnnkit/__init__.py's names (cnnkit.fit, ...): above every stage


def front_door_uses(tree):
    """`cnnkit.X` read after `import cnnkit`: the front door's lazy names reach any stage."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "cnnkit":
            yield node.lineno, f"cnnkit.{node.attr}", []


def stage_of(module):
    """cnnkit.model.saving -> model; cnnkit.errors -> errors; cnnkit, cnnkit.fit -> the front
    door, which reaches every stage: a stage importing it climbs; another name -> None."""
    parts = module.split(".")
    if parts[0] != "cnnkit":
        return None
    if len(parts) == 1 or parts[1] not in RANK and parts[1] != "__main__":
        return FRONT_DOOR
    return parts[1] if parts[1] in RANK else None


def all_edges():
    """(file:line, from stage, to stage, target, names) for each import between cnnkit modules."""
    edges = []
    for path in sorted(ROOT.rglob("*.py")):
        source = stage_of(module_name(path))
        if source in (None, FRONT_DOOR):  # cnnkit/__init__.py, __main__.py: the front door
            continue                        # imports anything
        for line, target, names in imports(path):
            if target.split(".")[0] != "cnnkit" or target == "cnnkit" \
                    or target.split(".")[1].startswith("__"):  # the package, __version__
                continue
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            edges.append((where, source, stage_of(target), target, names))
    return edges


def test_every_import_names_a_known_stage():
    unknown = [f"{where} imports {target}" for where, _, to, target, _ in all_edges()
               if to is None]
    stray = [p.name for p in ROOT.iterdir() if p.suffix == ".py" and p.stem not in RANK
             and p.name not in ("__init__.py", "__main__.py")]
    stray += [p.name for p in ROOT.iterdir() if p.is_dir() and p.name not in RANK
              and any(p.glob("*.py"))]
    assert not unknown and not stray, (
        "every module belongs to a stage of the order in README.md's Development section: "
        + "; ".join(unknown + stray))


def test_no_import_climbs_to_a_higher_stage():
    climbing = [f"{where}: {source} imports {target} ({to} is above {source})"
                for where, source, to, target, _ in all_edges()
                if to is not None and RANK[to] > RANK[source]]
    assert not climbing, "imports that climb:\n" + "\n".join(climbing)


def test_no_package_level_cycle():
    graph, where = {}, {}
    for at, source, to, _, _ in all_edges():
        if to is not None and to != source:
            graph.setdefault(source, set()).add(to)
            where.setdefault((source, to), at)
    reach = {}
    for start in graph:  # every stage reachable from start
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        reach[start] = seen
    # two stages that reach each other share a loop; name one file:line per edge inside it
    loops = {frozenset(b for b in reach if a in reach[b] and b in reach[a]) | {a}
             for a in reach if a in reach[a]}
    lines = [f"{' <-> '.join(sorted(loop))}: " + "; ".join(
        f"{where[(a, b)]} ({a} -> {b})" for a in sorted(loop) for b in sorted(graph[a] & loop))
        for loop in loops]
    assert not loops, "package-level import cycles:\n" + "\n".join(sorted(lines))


def test_no_private_name_imported_from_another_package():
    private = []
    for where, source, to, target, names in all_edges():
        if to is None or to == source:
            continue
        parts = target.split(".")[2:]
        bad = [p for p in parts if p.startswith("_") and not p.startswith("__")]
        bad += [n for n in names if n.startswith("_") and not n.startswith("__")]
        if bad:
            private.append(f"{where}: {source} imports {target} {', '.join(bad)}")
    assert not private, "private names imported across packages:\n" + "\n".join(private)


@pytest.mark.parametrize("case, expected", [
    ("from ..train import api", "cnnkit.train"),
    ("from . import presets", "cnnkit.model.presets"),
    ("from .. import errors", "cnnkit.errors"),
    ("from cnnkit import fit", "cnnkit.fit"),
])
def test_relative_imports_resolve(tmp_path, case, expected):
    """The reader itself: a relative import inside a function in cnnkit/model/x.py names the
    module Python loads."""
    fake = tmp_path / "cnnkit" / "model"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text(f"def f():\n    {case}\n")
    (line, target, _), = imports(fake / "x.py", root=tmp_path / "cnnkit")
    assert (line, target) == (2, expected)
    assert stage_of(target) == {"cnnkit.fit": FRONT_DOOR}.get(target, target.split(".")[1])


def test_every_behaviour_a_lower_stage_asks_for_is_provided():
    """`provided("fit")` in a lower stage names an entry of the front door's PROVIDED table,
    provided by a stage above the one asking (below, a plain import would do), and each entry
    imports to a callable."""
    import cnnkit
    from cnnkit.model.provided import provided

    asked = {}
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "provided" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                asked.setdefault(node.args[0].value, []).append(
                    (f"{path.relative_to(ROOT.parent)}:{node.lineno}", stage_of(module_name(path))))
    missing = [f"{where} asks for {name!r}" for name, sites in asked.items()
               for where, _ in sites if name not in cnnkit.PROVIDED]
    assert not missing, "not in cnnkit/__init__.py's PROVIDED: " + "; ".join(missing)
    needless = [f"{where} asks for {name!r}, which its own stage may import" for name, sites in
                asked.items() for where, stage in sites
                if RANK[stage_of(cnnkit.PROVIDED[name].partition(":")[0])] <= RANK[stage]]
    assert not needless, "; ".join(needless)
    for name, target in cnnkit.PROVIDED.items():
        assert callable(provided(name)), target


def test_a_lazy_name_stays_itself_beside_its_submodule():
    """cnnkit.data.loader is a function in a module of the same name: importing the module (as
    the first call does) must not turn the second `cnnkit.data.loader(...)` into a module."""
    import subprocess
    import sys

    code = ("import cnnkit\n"
            "first, second = cnnkit.data.loader, cnnkit.data.loader\n"
            "print(callable(first), callable(second), first is second)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True", "True"]
