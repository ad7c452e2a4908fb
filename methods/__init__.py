"""Method registry: find a method by name, ``module:Class``, ``path/to/file.py[:Class]`` or the
``ssl_bench.methods`` entry-point group, and check that it honours the contract in ``methods.base``."""

from __future__ import annotations

import importlib
import inspect
from difflib import get_close_matches
from importlib.metadata import entry_points
from pathlib import Path

from bench.errors import PluginError
from bench.io import import_file
from methods.base import Method

_REGISTRY: dict[str, type[Method]] = {}
_BUILTIN_MODULES = ("methods.simclr", "methods.barlow_twins", "methods.byol", "methods.mocov3", "methods.dino",
                    "methods.ibot", "methods.ijepa", "methods.mae", "methods.vjepa", "methods.naive_siamese",
                    "methods.random_init")
ENTRY_POINT_GROUP = "ssl_bench.methods"


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: validate the contract and register under ``cls.name``."""
    validate_method_class(cls)
    other = _REGISTRY.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise PluginError(f"method name {cls.name!r} is registered twice ({other.__module__} and {cls.__module__})")
    _REGISTRY[cls.name] = cls
    return cls


def validate_method_class(cls: object) -> None:
    """Raise PluginError naming the part of the contract ``cls`` misses."""
    label = getattr(cls, "__qualname__", repr(cls))
    if not (inspect.isclass(cls) and issubclass(cls, Method)):
        raise PluginError(f"plugin {label} must be a subclass of methods.base.Method")
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise PluginError(f"plugin {label} must set a non-empty class attribute `name`")
    views = getattr(cls, "views", None)
    from bench.augment import ViewSpec

    if cls.trainable and (not isinstance(views, (list, tuple)) or not views
                          or not all(isinstance(v, ViewSpec) for v in views)):
        raise PluginError(f"plugin {label} must set `views` to a non-empty list of bench.augment.ViewSpec")
    init_params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    if (not init_params or init_params[0].default is not inspect.Parameter.empty
            or init_params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)):
        raise PluginError(f"plugin {label}: __init__ must take the backbone as its first argument: __init__(self, backbone, **hparams)")
    if cls.trainable:
        if cls.training_loss is Method.training_loss:
            raise PluginError(f"plugin {label} must implement training_loss(self, views)")
        loss_params = [p for p in list(inspect.signature(cls.training_loss).parameters.values())[1:]
                       if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        has_positional = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                             for p in list(inspect.signature(cls.training_loss).parameters.values())[1:])
        if len(loss_params) > 1 or not has_positional:
            raise PluginError(f"plugin {label}: training_loss must take exactly one argument (the list of views): training_loss(self, views)")
    if not isinstance(inspect.getattr_static(cls, "encoder", None), property):
        raise PluginError(f"plugin {label}: `encoder` must be a property returning the nn.Module to evaluate")


def method_description(cls: type[Method]) -> str:
    """One line for ``bench methods``: the first sentence of the class docstring, else of its module's."""
    doc = cls.__doc__ or getattr(inspect.getmodule(cls), "__doc__", None) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())  # the first paragraph, on one line
    return first.split(". ")[0].rstrip(".:") + "." if first else ""


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def _entry_point_methods() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_methods() -> dict[str, type[Method]]:
    """Built-in plus entry-point methods, by name."""
    _load_builtins()
    for name, ep in _entry_point_methods().items():
        if name not in _REGISTRY:
            _adopt(ep.load(), f"entry point {name!r}")
    return dict(sorted(_REGISTRY.items()))


def _adopt(obj: object, origin: str) -> type[Method]:
    try:
        validate_method_class(obj)
    except PluginError as e:
        raise PluginError(f"{origin}: {e}") from None
    _REGISTRY.setdefault(obj.name, obj)
    return obj


def _pick_class(module, class_name: str | None, origin: str) -> type[Method]:
    if class_name:
        if not hasattr(module, class_name):
            raise PluginError(f"{origin} has no attribute {class_name!r}")
        return _adopt(getattr(module, class_name), origin)
    found = [v for v in vars(module).values()
             if inspect.isclass(v) and issubclass(v, Method) and v is not Method and v.__module__ == module.__name__]
    if len(found) != 1:
        what = "no subclass of methods.base.Method" if not found else f"{len(found)} Method subclasses ({', '.join(c.__name__ for c in found)}); name one with :Class"
        raise PluginError(f"{origin} defines {what}")
    return _adopt(found[0], origin)


def _load_file(path: Path, class_name: str | None) -> type[Method]:
    if not path.is_file():
        raise PluginError(f"plugin file not found: {path}")
    try:
        module = import_file(path, "ssl_bench_plugin")
    except Exception as e:  # a plugin that fails to import: name the file and the error
        raise PluginError(f"plugin file {path} failed to import: {type(e).__name__}: {e}") from e
    return _pick_class(module, class_name, f"plugin file {path}")


def get_method(name_or_path: str) -> type[Method]:
    """Resolve a method class from a registered name, ``module:Class``, ``file.py[:Class]`` or an entry point."""
    ref = name_or_path.strip()
    file_part, _, cls_part = ref.partition(":") if ".py" in ref else (ref, "", "")
    if file_part.endswith(".py"):
        return _load_file(Path(file_part), cls_part or None)
    if ":" in ref:
        mod_name, _, cls_name = ref.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise PluginError(f"cannot import plugin module {mod_name!r}: {e}") from None
        return _pick_class(module, cls_name or None, f"module {mod_name}")
    methods = available_methods()
    key = ref.replace("_", "-")
    for name in (ref, key):
        if name in methods:
            return methods[name]
    hint = get_close_matches(key, list(methods), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise PluginError(f"unknown method {ref!r}.{did_you_mean} Known: {', '.join(methods)} "
                      "(or pass module:Class or path/to/file.py)")
