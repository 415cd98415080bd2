"""Package layout rules that keep the code base navigable."""
import ast
import os

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ppdistill")


def _imported_modules(path):
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name


def test_engine_does_not_import_infer():
    """Inference has one home (ppdistill.infer) that uses the engine, never the other way."""
    offenders = []
    for root, _, files in os.walk(os.path.join(PACKAGE, "engine")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                offenders += [f"{name}: {m}" for m in _imported_modules(path)
                              if m == "ppdistill.infer" or m.startswith("ppdistill.infer.")]
    assert not offenders


def test_no_second_inference_module():
    assert not os.path.exists(os.path.join(PACKAGE, "utils", "inference.py"))
    assert not os.path.exists(os.path.join(PACKAGE, "engine", "infer.py"))
