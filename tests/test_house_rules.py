"""The house rules, read from the code: imports point down and never go round
in a cycle, pure cores import no I/O, no class mixes project classes, no
module is too long to read in one sitting."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocol", "transport", "actors")
MAX_LINES = 450

# modules that decide and must stay sans-IO: no socket, thread, actor or clock of their own
PURE = (
    "actors.serve._app",
    "actors.serve._autoscaling",
    "actors.serve._gangs",
    "actors.serve._options",
    "actors.serve.head._agenda",
    "actors.serve.head._command_effects",
    "actors.serve.head._commands",
    "actors.serve.head._control_plane",
    "actors.serve.head._controller_metrics",
    "actors.serve.head._controller_views",
    "actors.serve.head._deployment_recovery",
    "actors.serve.head._deployment_state",
    "actors.serve.head._deployment_status",
    "actors.serve.head._effects",
    "actors.serve.head._events",
    "actors.serve.head._gang_placement",
    "actors.serve.head._gang_state",
    "actors.serve.head._ids",
    "actors.serve.head._metrics_store",
    "actors.serve.head._placement",
    "actors.serve.head._reconcile",
    "actors.serve.head._recovery",
    "actors.serve.head._replica_states",
    "actors.serve.worker._devices",
    "protocol._payload",
    "scripts._supervisor:Backoff",
)
IO_MODULES = ("zmq", "pykka", "socket", "threading", "subprocess", "transport", "actors._system", "actors._actor")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every module of ours (or outside name) that ``name`` imports, type-only imports included."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                out.add(candidate if candidate in MODULES else target)
    resolved = set()
    for target in out:
        while target not in MODULES and "." in target:
            target = target.rpartition(".")[0]
        resolved.add(target)
    return resolved - {name}


GRAPH = {name: {t for t in _imports(name) if t in MODULES} for name in MODULES}


def test_there_is_no_import_cycle_among_our_modules() -> None:
    cycles = []
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state[nxt] == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif state[nxt] == 0:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if state[name] == 0:
            visit(name)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_protocol_transport_actors() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        top = name.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if top == "protocol" and other != "protocol":
                wrong.append(f"{name} -> {target}")
            if top == "transport" and other == "actors":
                wrong.append(f"{name} -> {target}")
    assert wrong == []


@pytest.mark.parametrize("side, forbidden", [
    ("actors.serve.client", ("actors.serve.head", "actors.serve.worker", "actors.serve._api", "actors.serve._embedded")),
    ("actors.serve.head", ("actors.serve.client", "actors.serve.worker", "actors.serve._api", "actors.serve._embedded")),
    ("actors.serve.worker", ("actors.serve.head", "actors.serve._api", "actors.serve._embedded")),
])
def test_each_side_of_the_serving_layer_imports_only_what_its_house_rules_allow(side: str, forbidden: tuple[str, ...]) -> None:
    wrong = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name == side or name.startswith(side + ".")
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    ]
    assert wrong == []


def test_the_shared_definitions_import_no_side_of_the_serving_layer() -> None:
    shared = [n for n in MODULES if n.startswith("actors.serve._") and n not in ("actors.serve._api", "actors.serve._embedded")]
    wrong = [f"{n} -> {t}" for n in shared for t in GRAPH[n] if t.startswith(("actors.serve.client", "actors.serve.head", "actors.serve.worker"))]
    assert wrong == []


def test_pure_cores_import_no_socket_thread_or_actor_code() -> None:
    wrong = []
    for entry in PURE:
        name = entry.split(":")[0]
        if name not in MODULES:
            continue  # scripts are checked below by name only
        imported = _imports(name)
        wrong += [f"{name} -> {t}" for t in imported if any(t == io or t.startswith(io + ".") for io in IO_MODULES)]
    assert wrong == []


def test_no_class_inherits_from_more_than_one_project_class() -> None:
    ours = {node.name for path in MODULES.values() for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)}
    mixed = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in ours]
                if len(bases) > 1:
                    mixed.append(f"{name}.{node.name}({', '.join(bases)})")
    assert mixed == []


def test_no_module_declares_another_class_attributes_for_the_type_checker() -> None:
    found = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                found.append(name)
    assert found == []


def test_no_module_is_longer_than_one_sitting() -> None:
    long = {name: n for name, path in MODULES.items() if (n := path.read_text().count("\n")) > MAX_LINES}
    assert long == {}
