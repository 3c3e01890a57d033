"""The house's rule, checked on the source: imports run downward only (ground, the paper's
artefacts and the configuration, what the stages share, the stages, what sits on top), a stage
imports another only in the paper's order where the paper's story needs it, and no two modules
import each other (directly or around a loop). Read from the AST, so lazy imports count."""

import ast
from pathlib import Path

LW = Path(__file__).resolve().parent.parent / "lw"
LAYERS = {
    0: {"errors", "text", "stats", "records", "store", "paths", "scoring", "progress", "llm",
        "prompts", "resources", "conversations"},
    1: {"paper", "profiles"},
    2: {"generation", "judge"},
    3: {"ruler", "agentwrite", "longbench", "data", "sft", "controlled"},
    4: {"plots", "report", "run", "preflight", "serve"},
}
# Stage -> stage imports the paper's story needs (a later stage using an earlier one).
STAGE_EDGES = {("longbench", "agentwrite"),  # AgentWrite evaluated as a model
               ("data", "agentwrite"),  # LongWriter-6k is written by AgentWrite
               ("controlled", "sft")}  # the controlled experiment trains


def _modules() -> dict[str, set[str]]:
    graph = {}
    for path in LW.rglob("*.py"):
        parts = path.relative_to(LW.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("lw")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.startswith("lw"):  # `from lw import x` depends on lw.x, not on lw
                    deps |= {f"{base}.{a.name}" for a in node.names} | ({base} - {"lw"})
        graph[name] = deps
    known = set(graph)
    return {m: {d for d in deps if d in known and d != m} for m, deps in graph.items()}


def _top(module: str) -> str:
    return module.split(".")[1] if "." in module else "lw"


def _layer(module: str) -> int:
    top = _top(module)
    return next((k for k, names in LAYERS.items() if top in names), 5)  # 5: the package itself


def test_every_module_has_a_layer():
    assert {_top(m) for m in _modules()} - {"lw"} <= set().union(*LAYERS.values())


def test_imports_run_downward_only():
    upward = []
    for module, deps in _modules().items():
        for dep in deps:
            if dep.startswith(module + "."):
                continue  # a package's own submodules
            a, b = _layer(module), _layer(dep)
            if b > a or (a == b == 3 and _top(module) != _top(dep)
                         and (_top(module), _top(dep)) not in STAGE_EDGES):
                upward.append(f"{module} -> {dep}")
    assert not upward, upward


def test_no_bare_package_import():
    # `import lw` then `lw.x.y(...)` at call time would reach any module unseen by the checks
    # above; a module names what it uses (only the package's own __init__ imports itself).
    bare = sorted(m for m, deps in _modules().items() if "lw" in deps and m != "lw")
    assert not bare, bare


def test_no_import_loops():
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in _modules().items()}
    seen, loops = {}, []

    def visit(m, stack):
        if seen.get(m) == "done":
            return
        if m in stack:
            loops.append(stack[stack.index(m):] + [m])
            return
        for d in sorted(graph.get(m, ())):
            visit(d, stack + [m])
        seen[m] = "done"

    for m in sorted(graph):
        visit(m, [])
    assert not loops, loops
