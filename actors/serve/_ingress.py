"""``@serve.ingress``: a class whose FastAPI (or any ASGI) app is its
application's HTTP routes, with the replica's instance as ``self``."""

from __future__ import annotations

import inspect
from contextvars import ContextVar
from typing import Any, Callable, TypeVar

T = TypeVar("T", bound=type)

#: The class attribute that holds the ASGI app a replica serves HTTP with.
ASGI_APP_ATTR = "__corral_asgi_app__"

#: The instance serving the request being handled (set by the replica around each ASGI call).
current_instance: ContextVar[Any] = ContextVar("corral_ingress_instance")


async def _instance() -> Any:
    return current_instance.get()


def ingress(app: Any) -> Callable[[T], T]:
    """Make ``app`` (a FastAPI app, or any ASGI callable) the HTTP front of the
    decorated class: requests under the application's ``route_prefix`` run
    ``app`` in the replica, and route functions defined in the class get the
    replica's instance as ``self``. Put it under ``@serve.deployment``, as in
    Ray Serve::

        app = FastAPI()

        @serve.deployment
        @serve.ingress(app)
        class Api:
            @app.get("/items/{item_id}")
            def item(self, item_id: int) -> dict: ...

    Raises:
        TypeError: ``app`` is not callable, or what is decorated is not a class.
    """
    if not callable(app):
        raise TypeError(f"serve.ingress: expected a FastAPI app or an ASGI callable, got {app!r}")

    def decorate(cls: T) -> T:
        if not isinstance(cls, type):
            raise TypeError(f"serve.ingress decorates a class (under @serve.deployment), got {cls!r}")
        if _is_fastapi(app):
            _bind_methods(app, cls)
        setattr(cls, ASGI_APP_ATTR, app)
        return cls

    return decorate


def _is_fastapi(app: Any) -> bool:
    try:
        from fastapi import FastAPI  # optional: only FastAPI apps have routes to bind
    except ImportError:
        return False
    return isinstance(app, FastAPI)


def _bind_methods(app: Any, cls: type) -> None:
    """Routes whose endpoint is one of ``cls``'s functions get ``self`` from a
    dependency that yields the serving instance; they are rebuilt through an
    APIRouter so FastAPI recomputes what it derives from the signature."""
    from fastapi import APIRouter, Depends

    functions = {id(f) for f in vars(cls).values() if inspect.isfunction(f)}
    bound = [r for r in app.router.routes if id(getattr(r, "endpoint", None)) in functions]
    if not bound:
        return
    for route in bound:
        signature = inspect.signature(route.endpoint)
        params = list(signature.parameters.values())
        if not params:
            raise TypeError(f"serve.ingress: route function {route.endpoint.__qualname__} takes no 'self'")
        me = params[0].replace(default=Depends(_instance))
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[1:]]
        route.endpoint.__signature__ = signature.replace(parameters=[me, *rest])
        app.router.routes.remove(route)
    router = APIRouter()
    router.routes.extend(bound)
    app.include_router(router)
