"""The Python package's dependencies run one way: no import cycle among lfmrt's modules, and the
scheduler reaches the model only through its public members.

The import graph is read from the source with ast and counts every import: at module level,
inside functions (they run later, but they are dependencies all the same) and under
``if TYPE_CHECKING:`` (a type a module names is one it depends on). ``from package import name``
is an edge to ``package.name`` when that is a module, else to the package; importing a package
(a room) from outside it depends on every module in it, so ``quantization`` importing
``loaders`` while ``loaders/gguf_writer.py`` imported ``quantization`` is a cycle.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import lfmrt

PACKAGE_DIR = Path(lfmrt.__file__).resolve().parent


def _module_names(root: Path, package: str) -> Dict[str, Path]:
    """Every module and package under ``root`` (extension modules too, with no source), found
    on disk without importing anything."""
    names: Dict[str, Path] = {package: root / "__init__.py"}
    for info in pkgutil.iter_modules([str(root)]):
        if info.ispkg:
            names.update(_module_names(root / info.name, f"{package}.{info.name}"))
        else:
            names[f"{package}.{info.name}"] = root / f"{info.name}.py"
    return names


def import_graph(root: Path, package: str) -> Dict[str, Set[str]]:
    """Module -> the modules of ``package`` it depends on (see the module docstring)."""
    modules = _module_names(root, package)
    packages = {name for name, source in modules.items() if source.name == "__init__.py"}
    graph: Dict[str, Set[str]] = {}
    for name, source in modules.items():
        if not source.exists():  # an extension module
            continue
        is_package = name in packages
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
        edges: Set[str] = set()
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    parts = name.split(".")
                    base_parts = parts if is_package else parts[:-1]
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules and "." in target:  # `import a.b.c` names a.b.c
                    target = target.rsplit(".", 1)[0]
                if target not in modules or target == name:
                    continue
                edges.add(target)
                if target in packages and not name.startswith(target + "."):
                    edges.update(m for m in modules if m.startswith(target + "."))  # the whole room
        graph[name] = edges
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: List[str] = []

    def visit(module: str) -> Optional[List[str]]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def test_lfmrt_has_no_import_cycle():
    graph = import_graph(PACKAGE_DIR, "lfmrt")
    assert "lfmrt.generation.scheduler" in graph and "lfmrt.text.tool_calls" in graph  # the walk saw them
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _write_package(root: Path, files: Dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def test_the_cycle_finder_sees_function_level_type_checking_and_package_imports(tmp_path):
    package = tmp_path / "pkg"
    _write_package(package, {
        "__init__.py": "from .a import A\n",  # the facade: modules below may import it
        "sub/__init__.py": "from .b import B\n",
        "sub/b.py": "def f():\n    from .. import c\n",
        "sub/d.py": "from . import B\n",  # a room's own module importing the room: no cycle
        "a.py": "from .sub import b\n",
        "c.py": "from . import a as A\n",
    })
    graph = import_graph(package, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.sub.d"] == {"pkg.sub"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]  # through a function-level import
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import A\n")
    assert find_cycle(import_graph(package, "pkg")) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("")
    assert find_cycle(import_graph(package, "pkg")) is None
    (package / "c.py").write_text("from .sub import B\n")  # the room `sub` holds b, which imports c
    assert set(find_cycle(import_graph(package, "pkg"))) == {"pkg.c", "pkg.sub", "pkg.sub.b"}


def _model_private_names() -> Set[str]:
    """Model's private methods and attributes (``_name``, not dunders), read from model.py."""
    tree = ast.parse((PACKAGE_DIR / "model.py").read_text(encoding="utf-8"))
    model = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Model")
    names = set()
    for node in ast.walk(model):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_scheduler_and_request_building_use_no_private_member_of_model():
    private = _model_private_names()
    assert {"_core", "_checkpoint"} <= private  # the reading found them
    for relative in ("generation/scheduler.py", "generation/requests.py"):
        tree = ast.parse((PACKAGE_DIR / relative).read_text(encoding="utf-8"))
        used = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)} & private)
        assert not used, f"{relative} reaches into Model's private members: {', '.join(used)}"


def test_import_lfmrt_leaves_the_heavy_libraries_for_later():
    """`import lfmrt` is fast: numpy, gguf, jinja2 and tokenizers load when a model does."""
    heavy = ("numpy", "gguf", "jinja2", "tokenizers")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_DIR.parent), os.environ.get("PYTHONPATH", "")]))
    script = f"import sys, lfmrt; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert imported.stdout.split() == []
    script = f"import sys, lfmrt; lfmrt.Model.load('demo'); print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert set(loaded.stdout.split()) == set(heavy)  # the check above can see them
