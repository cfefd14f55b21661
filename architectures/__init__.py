"""The architecture registry.

Every module in this folder is imported on first use, so adding an architecture
is one new file::

    # architectures/tiny.py
    import keras
    from keras import layers
    from architectures import register

    @register("tiny", tags=("small",), description="One conv block and a sigmoid unit.")
    def build(input_shape):
        inputs = keras.Input(shape=input_shape)
        x = layers.Conv2D(8, 3, activation="relu")(inputs)
        x = layers.GlobalAveragePooling2D()(x)
        outputs = layers.Dense(1, activation="sigmoid")(x)
        return keras.Model(inputs, outputs, name="tiny")

A builder takes ``input_shape`` (height, width, channels), receives pixels
already scaled to [0, 1], and returns a ``keras.Model`` ending in one sigmoid
unit. Then::

    >>> import architectures
    >>> "baseline" in architectures.list_architectures()
    True
    >>> architectures.list_architectures("pyramid_*")
    ['pyramid_bn_gap', 'pyramid_down', 'pyramid_up']

Files kept elsewhere are loaded with :func:`load_file` (``--arch-module``), and
installed packages can register through the ``benchmark.architectures``
entry-point group (each entry point names a module to import).
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ArchSpec",
    "Registry",
    "RegistryError",
    "register",
    "list_architectures",
    "get",
    "create",
    "select",
    "load_file",
    "REGISTRY",
]

ENTRY_POINT_GROUP = "benchmark.architectures"


class RegistryError(ValueError):
    """A user-fixable problem with the registry (duplicate name, unknown name, bad file)."""


@dataclass(frozen=True)
class ArchSpec:
    """One registered architecture."""

    name: str
    build: Callable
    tags: tuple[str, ...] = ()
    description: str = ""
    source: str = ""  # the file that registered it, for error messages


@dataclass
class Registry:
    """Name → :class:`ArchSpec`, filled by the :meth:`register` decorator.

    ``package`` is the import name of a package whose modules are imported
    (once) before the first lookup, so that dropping a file there is enough.
    """

    package: str | None = None
    entry_point_group: str | None = None
    _specs: dict[str, ArchSpec] = field(default_factory=dict)
    _discovered: bool = False

    def register(self, name: str, *, tags: Iterable[str] = (), description: str = ""):
        """Decorator that adds ``build`` to the registry under ``name``."""

        def decorator(build: Callable) -> Callable:
            source = inspect.getsourcefile(build) or "<unknown>"
            if name in self._specs and self._specs[name].source != source:
                raise RegistryError(
                    f"architecture name {name!r} is registered twice: in "
                    f"{self._specs[name].source} and in {source}. Rename one of them."
                )
            self._specs[name] = ArchSpec(name, build, tuple(tags), description, source)
            return build

        return decorator

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        if self.package:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    _import_reporting_errors(f"{self.package}.{info.name}")
        if self.entry_point_group:
            for ep in importlib.metadata.entry_points(group=self.entry_point_group):
                _import_reporting_errors(ep.value.split(":")[0])

    def specs(self) -> dict[str, ArchSpec]:
        self._discover()
        return dict(sorted(self._specs.items()))

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (``"pyramid_*"``)."""
        return [n for n in self.specs() if fnmatch.fnmatchcase(n, pattern)]

    def get(self, name: str) -> ArchSpec:
        specs = self.specs()
        if name not in specs:
            raise RegistryError(
                f"unknown architecture {name!r}. Known: {', '.join(specs)}. Run `benchmark list` to see them all."
            )
        return specs[name]

    def create(self, name: str, input_shape: tuple[int, ...]):
        """Build a fresh, uncompiled model of architecture ``name``."""
        return self.get(name).build(tuple(input_shape))

    def select(self, expression: str) -> list[str]:
        """Names chosen by ``--archs``: ``all``, names, ``pattern*`` or ``tag:NAME``, comma-separated.

        Order follows the expression; duplicates are dropped. A term that
        matches nothing is an error, so a typo never silently shrinks a run.
        """
        specs = self.specs()
        chosen: list[str] = []
        for term in (t.strip() for t in expression.split(",")):
            if not term:
                continue
            if term == "all":
                matched = list(specs)
            elif term.startswith("tag:"):
                matched = [n for n, s in specs.items() if term[4:] in s.tags]
            else:
                matched = [n for n in specs if fnmatch.fnmatchcase(n, term)]
            if not matched:
                raise RegistryError(
                    f"--archs term {term!r} matches no architecture. Known: "
                    f"{', '.join(specs)}; tags: {', '.join(sorted({t for s in specs.values() for t in s.tags}))}."
                )
            chosen += [n for n in matched if n not in chosen]
        if not chosen:
            raise RegistryError("--archs is empty: give `all`, names, patterns or tag:NAME.")
        return chosen

    def load_file(self, path: str | Path) -> None:
        """Import an architecture file kept outside this package (``--arch-module``)."""
        path = Path(path)
        if not path.is_file():
            raise RegistryError(f"--arch-module {path}: no such file. Give the path of a .py file.")
        self._discover()  # so that duplicate names are detected against the built-ins
        module_name = f"_benchmark_arch_{path.stem}_{abs(hash(str(path.resolve())))}"
        if module_name in sys.modules:
            return  # already loaded (a worker process reused for another task)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as err:
            raise RegistryError(
                f"--arch-module {path}: syntax error at line {err.lineno}: {err.msg}. Fix the file and run again."
            ) from None
        sys.modules[module_name] = module


def _import_reporting_errors(module: str) -> None:
    try:
        importlib.import_module(module)
    except SyntaxError as err:
        raise RegistryError(
            f"architecture module {err.filename}: syntax error at line {err.lineno}: {err.msg}. "
            "Fix the file and run again."
        ) from None


REGISTRY = Registry(package=__name__, entry_point_group=ENTRY_POINT_GROUP)
register = REGISTRY.register
list_architectures = REGISTRY.list
get = REGISTRY.get
create = REGISTRY.create
select = REGISTRY.select
load_file = REGISTRY.load_file
