"""Import every module of a package so that their ``@REGISTRY.register()`` decorators run."""
import importlib
import pkgutil


def import_submodules(package_name, package_path):
    """Import all direct submodules of ``package_name`` (sorted, deterministic)."""
    for info in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
