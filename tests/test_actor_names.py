"""Our actors must not shadow pykka's own attributes (a silent, nasty bug)."""

from __future__ import annotations

import ast
from pathlib import Path

import pykka

PYKKA_PRIVATE = {name for name in dir(pykka.ThreadingActor) if name.startswith("_") and not name.startswith("__")}
# deliberate: _handle_receive marks a shared inbox free again after every message (actors/_inline.py)
ALLOWED_OVERRIDES = {"_actor_loop", "_actor_loop_teardown", "_handle_failure", "_create_actor_inbox", "_handle_receive"}
ROOT = Path(__file__).resolve().parent.parent


def test_no_actor_method_or_attribute_shadows_a_pykka_internal() -> None:
    clashes = []
    for path in (ROOT / "actors").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in PYKKA_PRIVATE - ALLOWED_OVERRIDES:
                clashes.append(f"{path.name}: def {node.name}")
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                if isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in PYKKA_PRIVATE:
                    clashes.append(f"{path.name}: self.{node.attr} = ...")
    allowed = {"_deployment_state.py: def _stop"}  # not an actor
    assert set(clashes) <= allowed, clashes
