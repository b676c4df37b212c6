"""``@serve.deployment``, ``.bind()``, ``.options()``, and turning an
application graph into deployment specs. Pure apart from importing modules."""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from typing import Any, Callable

import msgpack

from protocol import DeploymentSpec, PayloadEncoder, seal

from .._imports import import_object
from ._options import DeploymentConfig, DeploymentOptionError, split_options

HANDLE_MARKER = "__corral_handle__"
#: the types of values sent and returned as they are: no handle, response or generator is one
PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), list, dict, tuple})


class Deployment:
    """A class (or a function) made deployable by ``@serve.deployment``.

    Attributes:
        func_or_class: the user's class, or function (which is then the
            deployment's ``__call__``, as in Ray Serve).
        name: the deployment's name (the class name unless given).
        version: an explicit code version, or None to derive one.
        config: the validated options.
        runtime_env: code shipped with this deployment alone (added to the application's).
    """

    def __init__(self, func_or_class: type, name: str, version: str | None, config: DeploymentConfig,
                 runtime_env: dict[str, Any] | None = None) -> None:
        self.func_or_class = func_or_class
        self.name = name
        self.version = version
        self.config = config
        self.runtime_env = runtime_env

    def bind(self, *args: Any, **kwargs: Any) -> Application:
        """Bind constructor arguments; other bound deployments become handles.

        Raises:
            TypeError: arguments for a function deployment (it has no constructor).
        """
        if inspect.isfunction(self.func_or_class) and (args or kwargs):
            raise TypeError(f"function deployment {self.name!r} takes no constructor arguments; use {self.name}.bind()")
        return Application(self, args, kwargs)

    def options(self, **options: Any) -> Deployment:
        """A copy with some options changed, as in Ray Serve.

        Raises:
            DeploymentOptionError: an option is unknown or has a wrong value.
        """
        identity, config = split_options(options)
        return Deployment(
            self.func_or_class,
            identity.get("name") or self.name,
            identity.get("version", self.version),
            self.config.replace(**config),
            identity.get("runtime_env", self.runtime_env),
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"deployment {self.name!r} cannot be called directly: use {self.name}.bind(...) and serve.run()")

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r}, num_replicas={self.config.num_replicas})"


class Application:
    """A deployment with bound arguments: what ``serve.run`` takes."""

    def __init__(self, deployment: Deployment, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.deployment = deployment
        self.args = args
        self.kwargs = kwargs


def deployment(_func_or_class: Any = None, **options: Any) -> Any:
    """Make a class (or a function) a deployment: ``@serve.deployment`` or
    ``@serve.deployment(num_replicas=2, ...)``. A function deployment's
    function is what its handle's ``.remote(...)`` and HTTP requests call.

    Raises:
        DeploymentOptionError: an option is unknown or has a wrong value.
        TypeError: the decorated object is not a class or a function.
    """
    identity, config = split_options(options)
    validated = DeploymentConfig(**config)

    def wrap(cls: Any) -> Deployment:
        if not (isinstance(cls, type) or inspect.isfunction(cls)):
            raise TypeError(f"@serve.deployment decorates classes and functions, got {cls!r}")
        return Deployment(cls, identity.get("name") or cls.__name__, identity.get("version"), validated, identity.get("runtime_env"))

    return wrap(_func_or_class) if _func_or_class is not None else wrap


def import_path_of(cls: type) -> tuple[str, str | None]:
    """``(module:QualName, main_file)`` for a class, checking a worker could import it.

    Raises:
        DeploymentOptionError: the class cannot be found again by import path.
    """
    module_name, qualname = cls.__module__, cls.__qualname__
    if "<locals>" in qualname:
        raise DeploymentOptionError(
            f"class {qualname} is defined inside a function; corral ships an import path, "
            "so deployments must be defined at module level"
        )
    main_file = None
    if module_name in ("__main__", "__mp_main__"):
        main_file = getattr(sys.modules.get(module_name), "__file__", None)
        if not main_file:
            raise DeploymentOptionError(
                f"class {qualname} is defined in an interactive session; put it in a module or a script file"
            )
        return f"__main__:{qualname}", os.path.abspath(main_file)
    try:
        obj = import_object(f"{module_name}:{qualname}")
    except (ImportError, ValueError) as exc:
        raise DeploymentOptionError(f"class {module_name}:{qualname} cannot be imported by path: {exc}") from None
    if getattr(obj, "func_or_class", obj) is not cls:
        raise DeploymentOptionError(f"{module_name}:{qualname} does not name the deployed class")
    return f"{module_name}:{qualname}", main_file


def import_dirs_of(cls: type, main_file: str | None) -> list[str]:
    """The folder a worker must have on its import path to import ``cls`` the way
    this process did: the script's folder, or the folder above the class's
    top-level package. Installed code (under the interpreter's prefix) needs none."""
    if main_file:
        return [os.path.dirname(main_file)]
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not path:
        return []
    root = os.path.dirname(os.path.abspath(path))
    levels = cls.__module__.count(".") + (os.path.basename(path) == "__init__.py")
    for _ in range(levels):
        root = os.path.dirname(root)
    installed = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if any(root == p or root.startswith(p + os.sep) for p in installed):
        return []
    return [root]


def build_application(
    root: Application, app_name: str, marker: Callable[[Any], Any] | None = None, allow_pickle: bool = False,
    packages: list[str] | None = None, shipped: list[str] | None = None,
    own_packages: Callable[[Deployment], tuple[list[str], list[str]]] | None = None,
) -> tuple[list[DeploymentSpec], str]:
    """Turn an application graph into one spec per deployment.

    Nested applications in the arguments become handle markers; other values
    that are not msgpack are sealed for the replica (pickled only where
    ``allow_pickle``, the cluster's opt-in, or the deployment's own). Returns
    the specs and the ingress (root) deployment's name.

    ``packages`` (digests of shipped code) go with every spec and into its
    version; import folders inside a ``shipped`` folder are left to the packages.
    ``own_packages`` gives a deployment's own ``(digests, folders)`` (its ``runtime_env``).

    Raises:
        DeploymentOptionError: a class cannot be imported by path.
        TypeError: a bound argument cannot be encoded; the message names it.
    """
    shipped_roots = [os.path.realpath(p) for p in shipped or []]
    if not isinstance(root, Application):
        raise TypeError(f"serve.run() takes an application made with .bind(), got {type(root).__name__}")
    specs: list[DeploymentSpec] = []
    names: dict[int, str] = {}

    def visit(app: Application) -> str:
        if id(app) in names:
            return names[id(app)]
        name = app.deployment.name
        taken = {spec.name for spec in specs} | set(names.values())
        suffix = 1
        while name in taken:
            name = f"{app.deployment.name}_{suffix}"
            suffix += 1
        names[id(app)] = name

        def convert(value: Any, where: str) -> Any:
            if isinstance(value, Application):
                return {HANDLE_MARKER: [app_name, visit(value)]}
            if marker is not None:
                converted = marker(value)
                if converted is not None:
                    return converted
            if isinstance(value, (list, tuple)):
                return [convert(v, f"{where}[{i}]") for i, v in enumerate(value)]
            if isinstance(value, dict):
                return {k: convert(v, f"{where}[{k!r}]") for k, v in value.items()}
            return value

        pickled = allow_pickle or app.deployment.config.serializer == "pickle"
        try:
            args = [seal(convert(a, f"argument {i}"), pickled, f"argument {i}") for i, a in enumerate(app.args)]
            kwargs = {k: seal(convert(v, f"argument {k!r}"), pickled, f"argument {k!r}") for k, v in app.kwargs.items()}
        except TypeError as exc:
            raise TypeError(f"{app.deployment.name}.bind(): {exc}") from None
        import_path, main_file = import_path_of(app.deployment.func_or_class)
        own, own_roots = own_packages(app.deployment) if own_packages is not None and app.deployment.runtime_env else ([], [])
        roots = shipped_roots + [os.path.realpath(p) for p in own_roots]
        dirs = [d for d in import_dirs_of(app.deployment.func_or_class, main_file)
                if not any(os.path.realpath(d) == r or os.path.realpath(d).startswith(r + os.sep) for r in roots)]
        config = app.deployment.config.to_dict()
        shipped_here = [*own, *(packages or [])]
        version = app.deployment.version or _derive_version(
            import_path, main_file, args, kwargs, config["actor_options"], dirs, shipped_here
        )
        specs.append(DeploymentSpec(app_name, name, import_path, main_file, args, kwargs, config, version, dirs, shipped_here))
        return name

    ingress = visit(root)
    return specs, ingress


def check_payload(args: list[Any], kwargs: dict[str, Any], where: str, allow_pickle: bool = False) -> None:
    """Raise TypeError naming the first argument that cannot be sent to a
    replica, and where inside it the offending value is."""
    encoder = PayloadEncoder(allow_pickle)
    labelled = [*((f"argument {i}", a) for i, a in enumerate(args)), *((f"argument {k!r}", v) for k, v in kwargs.items())]
    for label, value in labelled:
        try:
            encoder.encode(value, label)
        except TypeError as exc:
            raise TypeError(f"{where}: {exc}") from None


def _derive_version(
    import_path: str, main_file: str | None, args: Any, kwargs: Any, actor_options: Any, dirs: list[str], packages: list[str]
) -> str:
    blob = msgpack.packb([import_path, main_file, args, kwargs, actor_options, dirs, *([packages] if packages else [])],
                         use_bin_type=True)
    return hashlib.sha1(blob).hexdigest()[:12]


def resolve_arguments(args: Any, kwargs: Any, make_handle: Callable[[str, str], Any]) -> tuple[Any, Any]:
    """A request's arguments with handle markers replaced by handles: a handle's
    ``remote()`` marks handles passed as arguments, at the top level only."""
    for value in args or ():
        if type(value) is dict:
            args = [_unmark(v, make_handle) for v in args]
            break
    for value in kwargs.values() if kwargs else ():
        if type(value) is dict:
            kwargs = {k: _unmark(v, make_handle) for k, v in kwargs.items()}
            break
    return args, kwargs


def _unmark(value: Any, make_handle: Callable[[str, str], Any]) -> Any:
    """The handle a marker stands for; any other value as it is."""
    if type(value) is dict and len(value) == 1 and HANDLE_MARKER in value:
        app, name = value[HANDLE_MARKER]
        return make_handle(app, name)
    return value


def resolve_markers(value: Any, make_handle: Callable[[str, str], Any]) -> Any:
    """Replace handle markers (from :func:`build_application`) with handles, at any depth."""
    kind = type(value)
    if kind is list:
        return [resolve_markers(v, make_handle) for v in value]
    if kind is not dict:
        return value
    unmarked = _unmark(value, make_handle)
    if unmarked is not value:
        return unmarked
    return {k: resolve_markers(v, make_handle) for k, v in value.items()}
