"""The architecture registry.

Every module in this folder is imported on first use, so adding an architecture
is one new file; the function's name is the architecture's name and the first
line of its docstring its description::

    # architectures/tiny.py
    import keras
    from keras import layers
    from architectures import register

    @register
    def tiny(input_shape, width=8):
        '''One conv block and a sigmoid unit.'''
        inputs = keras.Input(shape=input_shape)
        x = layers.Conv2D(width, 3, activation="relu")(inputs)
        x = layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))

``@register("name", tags=(...), description=...)`` says them explicitly. A
builder takes ``input_shape`` (height, width, channels) and any keyword
arguments of its own (``create("tiny", shape, width=16)``), receives pixels
already scaled to [0, 1], and returns a ``keras.Model`` ending in one sigmoid
unit; the tool names the trained model after the registry entry. Then::

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
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from architectures import _applications
from architectures._applications import PREFIX as APPLICATION_PREFIX

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
    "load_files",
    "check",
    "REGISTRY",
    "APPLICATION_PREFIX",
]

ENTRY_POINT_GROUP = "benchmark.architectures"
VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a Keras model name, a folder name, an --archs term


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
    broken: list[str] = field(default_factory=list)  # why each module that failed to import failed

    def register(self, name: str | Callable | None = None, *, tags: Iterable[str] = (), description: str = ""):
        """Add a builder to the registry: ``@register``, or ``@register("name", tags=..., description=...)``.

        The name defaults to the function's, the description to its docstring's first line.
        """
        if callable(name):  # used bare: @register
            return self.register()(name)

        def decorator(build: Callable) -> Callable:
            key = name or getattr(build, "__name__", None)
            if not key:
                raise RegistryError(f"register a {type(build).__name__} with a name: @register('name').")
            source = _source(build)
            if not VALID_NAME.fullmatch(key):  # the model, its folder and --archs all carry the name
                raise RegistryError(
                    f"architecture name {key!r} (in {source}): use letters, digits, '_', '.' and '-' only, starting "
                    f"with a letter or digit, e.g. {re.sub(r'[^A-Za-z0-9_.-]+', '_', key).strip('_.-') or 'arch'!r}."
                )
            if key in self._specs and self._specs[key].source != source:
                raise RegistryError(
                    f"architecture name {key!r} is registered twice: in "
                    f"{self._specs[key].source} and in {source}. Rename one of them."
                )
            doc = (inspect.getdoc(build) or "").strip().splitlines()
            self._specs[key] = ArchSpec(key, build, tuple(tags), description or (doc[0] if doc else ""), source)
            return build

        return decorator

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        modules = []
        if self.package:
            pkg = importlib.import_module(self.package)
            modules += [f"{self.package}.{i.name}" for i in pkgutil.iter_modules(pkg.__path__) if i.name[0] != "_"]
        if self.entry_point_group:
            modules += [ep.value.split(":")[0] for ep in importlib.metadata.entry_points(group=self.entry_point_group)]
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception as err:  # one broken file must not hide the others: kept, and reported
                spec = importlib.util.find_spec(module)
                self.broken.append(_import_error(module, err, spec.origin if spec else None))

    def check(self) -> None:
        """Raise RegistryError if an architecture module failed to import (a run would silently lack it)."""
        self._discover()
        if self.broken:
            raise RegistryError(" ".join(self.broken))

    def specs(self) -> dict[str, ArchSpec]:
        self._discover()
        return dict(sorted(self._specs.items()))

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names matching a shell-style ``pattern`` (``"pyramid_*"``)."""
        return [n for n in self.specs() if fnmatch.fnmatchcase(n, pattern)]

    def get(self, name: str) -> ArchSpec:
        if name.startswith(_applications.PREFIX):
            return _application(name)
        specs = self.specs()
        if name not in specs:
            raise RegistryError(
                f"unknown architecture {name!r}. Known: {', '.join(specs)}. Run `benchmark list` to see them all."
            )
        return specs[name]

    def create(self, name: str, input_shape: tuple[int, ...], **kwargs):
        """Build a fresh, uncompiled model of architecture ``name``; ``kwargs`` go to its builder."""
        return self.get(name).build(tuple(input_shape), **kwargs)

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
            elif term.startswith(_applications.PREFIX):  # Keras's applications, by their Keras names
                pattern = term[len(_applications.PREFIX) :]
                matched = [
                    _applications.PREFIX + n for n in _applications.applications() if fnmatch.fnmatchcase(n, pattern)
                ]
                if not matched:
                    raise RegistryError(
                        f"--archs term {term!r} matches no Keras application. Run `benchmark list --keras` to see "
                        "their names (e.g. keras:DenseNet121, keras:EfficientNetV2*)."
                    )
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

    def load_files(self, paths) -> None:
        """:meth:`load_file` for each of ``paths``."""
        for path in paths:
            self.load_file(path)

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
        except Exception as err:
            raise RegistryError("--arch-module " + _import_error(str(path), err, str(path))) from None
        sys.modules[module_name] = module


def _application(name: str) -> ArchSpec:
    """The candidate ``keras:<Application>`` (see :mod:`architectures._applications`)."""
    import keras

    application = name[len(_applications.PREFIX) :]
    if application not in _applications.applications():
        raise RegistryError(
            f"unknown Keras application {application!r}. Run `benchmark list --keras` to see the names "
            f"(Keras {keras.__version__})."
        )
    return ArchSpec(
        name,
        _applications.builder(application),
        ("keras",),
        f"keras.applications.{application} (Keras {keras.__version__}; weights as --weights says)",
        "keras.applications",
    )


def _source(build: Callable) -> str:
    """The file that defines ``build`` (a function, a functools.partial or a callable object)."""
    target = getattr(build, "func", build)  # functools.partial
    for candidate in (target, type(target)):
        try:
            return inspect.getsourcefile(candidate) or "<unknown>"
        except TypeError:  # a builtin or a class defined interactively
            continue
    return "<unknown>"


def _import_error(module: str, err: Exception, file: str | None) -> str:
    """One paragraph naming the file and line where importing ``module`` (from ``file``) failed."""
    if isinstance(err, SyntaxError):
        where, what = f"{err.filename}: syntax error at line {err.lineno}", err.msg
    else:
        frames = traceback.extract_tb(err.__traceback__)
        mine = [f for f in frames if file and Path(f.filename).resolve() == Path(file).resolve()]
        frame = (mine or frames)[-1]
        where, what = f"{frame.filename}: {type(err).__name__} at line {frame.lineno}", str(err)
    return f"architecture module {module} ({where}): {what.rstrip('.')}. Fix the file and run again."


REGISTRY = Registry(package=__name__, entry_point_group=ENTRY_POINT_GROUP)
register = REGISTRY.register
check = REGISTRY.check
list_architectures = REGISTRY.list
get = REGISTRY.get
create = REGISTRY.create
select = REGISTRY.select
load_file = REGISTRY.load_file
load_files = REGISTRY.load_files
