"""``corral deploy`` config files, modelled on Ray Serve's.

    http_options: {host: 127.0.0.1, port: 8000}   # optional; checked, applied by corral start/run
    applications:
      - name: echo
        route_prefix: /echo               # default "/"; null: not over HTTP
        import_path: my_module:app        # an application (.bind()), a deployment, or a builder function
        args: {prefix: "hi:"}             # for a deployment: .bind(**args); for a builder: builder(args)
        deployments:                      # per-deployment overrides, by deployment name
          - name: Echo
            num_replicas: 2
            user_config: {threshold: 3}

Every error names the file, the field path and what was expected; nothing
is deployed unless the whole file is valid.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from actors._config import HttpOptions
from actors._imports import import_object
from actors.serve._packages import PackageError, check_runtime_env
from actors.serve._routes import check_route_prefix
from actors.serve import Application, Deployment, DeploymentOptionError

_APP_FIELDS = {"name", "import_path", "args", "deployments", "route_prefix", "runtime_env"}


class ConfigFileError(ValueError):
    """The config file is wrong; the message names the file and the field path."""


@dataclass
class AppConfig:
    """One application of a config file, ready for ``serve.run``."""

    name: str
    app: Application
    route_prefix: str | None = "/"
    runtime_env: dict[str, Any] | None = None  # its paths resolved against the config file's folder


def load_config(path: str, working_dir: str | None = None) -> list[AppConfig]:
    """Read, validate and build every application of a config file.

    ``working_dir`` (``corral deploy --working-dir``) is shipped with every
    application whose ``runtime_env`` names none; relative paths in a
    ``runtime_env`` are taken from the config file's folder.

    Raises:
        ConfigFileError: anything wrong, naming ``file: field.path: what was expected``.
    """
    def fail(where: str, what: str) -> ConfigFileError:
        return ConfigFileError(f"{path}: {where}: {what}")

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or set(data) - {"applications", "http_options"}:
        raise fail("(top level)", "expected a mapping with 'applications' (and optionally 'http_options')")
    try:
        HttpOptions.from_dict(data.get("http_options"))
    except ValueError as exc:
        raise fail("http_options", str(exc).replace("http_options: ", "").replace("http_options.", "")) from None
    apps = data.get("applications")
    if not isinstance(apps, list) or not apps:
        raise fail("applications", "expected a non-empty list of applications")
    out: list[AppConfig] = []
    seen: set[str] = set()
    prefixes: dict[str, str] = {}
    for i, entry in enumerate(apps):
        where = f"applications[{i}]"
        if not isinstance(entry, dict):
            raise fail(where, f"expected a mapping, got {type(entry).__name__}")
        unknown = set(entry) - _APP_FIELDS
        if unknown:
            raise fail(f"{where}.{sorted(unknown)[0]}", f"unknown field; expected one of {sorted(_APP_FIELDS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name or "#" in name:
            raise fail(f"{where}.name", f"expected a non-empty string without '#', got {name!r}")
        if name in seen:
            raise fail(f"{where}.name", f"application {name!r} appears twice")
        seen.add(name)
        try:
            prefix = check_route_prefix(entry.get("route_prefix", "/"), "expected")
        except ValueError as exc:
            raise fail(f"{where}.route_prefix", str(exc).removeprefix("expected: ")) from None
        if prefix is not None and prefix in prefixes:
            raise fail(f"{where}.route_prefix", f"{prefix!r} is also the route_prefix of application {prefixes[prefix]!r}")
        if prefix is not None:
            prefixes[prefix] = name
        env = _runtime_env(entry.get("runtime_env"), working_dir, Path(path).resolve().parent, f"{where}.runtime_env", fail)
        app = _build(entry, f"{where}", fail)
        _apply_overrides(app, entry.get("deployments") or [], f"{where}.deployments", fail)
        out.append(AppConfig(name, app, prefix, env))
    return out


def _runtime_env(raw: Any, working_dir: str | None, base: Path, where: str, fail: Any) -> dict[str, Any] | None:
    """The app's runtime_env, checked, with paths made absolute; its code folders
    go on this process's import path too (the app is built here first)."""
    try:
        env = check_runtime_env(raw)
    except PackageError as exc:
        raise fail(where, str(exc).removeprefix("runtime_env: ")) from None
    if working_dir is not None and "working_dir" not in env:
        env["working_dir"] = working_dir
    if not env:
        return None
    if "working_dir" in env:
        env["working_dir"] = str((base / Path(env["working_dir"]).expanduser()).resolve())
        if not Path(env["working_dir"]).is_dir():
            raise fail(f"{where}.working_dir", f"{env['working_dir']} is not a folder")
        sys.path.insert(0, env["working_dir"])
    modules = [str((base / Path(m).expanduser()).resolve()) for m in env.get("py_modules", [])]
    if modules:
        env["py_modules"] = modules
        sys.path[:0] = [str(Path(m).parent) for m in modules]
    return env


def _build(entry: dict[str, Any], where: str, fail: Any) -> Application:
    import_path = entry.get("import_path")
    if not isinstance(import_path, str) or ":" not in import_path:
        raise fail(f"{where}.import_path", f"expected 'module:attribute', got {import_path!r}")
    args = entry.get("args") or {}
    if not isinstance(args, dict):
        raise fail(f"{where}.args", f"expected a mapping, got {type(args).__name__}")
    try:
        target = import_object(import_path)
    except (ImportError, ValueError) as exc:
        raise fail(f"{where}.import_path", f"cannot import {import_path!r}: {exc}") from None
    except Exception as exc:  # the user's module raised while it was being imported
        raise fail(f"{where}.import_path", f"importing {import_path!r} raised {_one_line(exc)}") from None
    if isinstance(target, Application):
        if args:
            raise fail(f"{where}.args", f"{import_path} is an application already bound; it takes no args")
        return target
    if isinstance(target, Deployment):
        return target.bind(**args)
    if callable(target):
        try:
            built = target(args)
        except Exception as exc:
            raise fail(f"{where}.import_path", f"the builder {import_path} raised {_one_line(exc)}") from None
        if not isinstance(built, Application):
            raise fail(f"{where}.import_path", f"the builder {import_path} returned {type(built).__name__}, not an application")
        return built
    raise fail(f"{where}.import_path", f"{import_path} is not an application, a deployment or a builder function")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _apply_overrides(root: Application, overrides: Any, where: str, fail: Any) -> None:
    if not isinstance(overrides, list):
        raise fail(where, "expected a list of per-deployment overrides")
    graph = _applications(root)
    names = sorted({a.deployment.name for a in graph})
    for j, override in enumerate(overrides):
        spot = f"{where}[{j}]"
        if not isinstance(override, dict) or not isinstance(override.get("name"), str):
            raise fail(f"{spot}.name", "expected a mapping with the deployment's name")
        options = {k: v for k, v in override.items() if k != "name"}
        targets = [a for a in graph if a.deployment.name == override["name"]]
        if not targets:
            raise fail(f"{spot}.name", f"no deployment {override['name']!r} in this application; it has {names}")
        for app in targets:
            try:
                app.deployment = app.deployment.options(**options)
            except DeploymentOptionError as exc:
                field = next((k for k in options if repr(k) in str(exc) or k in str(exc)), "")
                raise fail(f"{spot}.{field}" if field else spot, str(exc)) from None


def _applications(root: Application) -> list[Application]:
    out: list[Application] = []
    stack = [root]
    while stack:
        app = stack.pop()
        if any(app is seen for seen in out):
            continue
        out.append(app)
        for value in [*app.args, *app.kwargs.values()]:
            if isinstance(value, Application):
                stack.append(value)
    return out
