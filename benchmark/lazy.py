"""A stage's public names, each imported from its module on first use (PEP 562).

The driver imports a stage (``from benchmark.evaluation import ranked``) rather than its modules, and
importing one module of a stage stays as light as that module: ``benchmark report`` never loads Keras
because the training stage's face names ``build_for``.
"""

from __future__ import annotations

import importlib


def attach(package: str, modules: dict[str, list[str]]):
    """``(__getattr__, __all__)`` for ``package``: each name of ``modules`` (module → names) from that module.

    >>> getattr_, names = attach("benchmark.store", {"results": ["Status"]})
    >>> getattr_("Status").OK.value, names
    ('ok', ['Status'])
    """
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name not in where:  # a submodule, or a mistake: Python's usual AttributeError
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__, sorted(where)
