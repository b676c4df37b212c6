"""The dashboard: what a person looks at, served by the head on its own port.

House rules:
- ``_history`` and ``_views`` are pure: the last hour's series and the JSON
  the API answers, built from a sampled snapshot; no I/O, no threads.
- ``_app`` is the ASGI app (Starlette): routes, status codes, the key check.
- ``_server`` is the I/O shell: the sampler thread asking the controller and
  uvicorn's thread. It may import ``actors`` and ``protocol``; nothing in
  ``actors`` imports this package.
- ``static/`` holds the page; ``static/vendor/`` the chart library, vendored
  from the npm registry by ``python scripts/dev.py vendor`` (never fetched at
  run time). A new page goes in ``static/app.js`` with its API view in ``_views``.
"""

from ._app import LogUnavailable, build_app
from ._history import DeploymentSample, History
from ._server import DEFAULT_PORT, Dashboard
from ._views import NotFound, Snapshot

__all__ = ["DEFAULT_PORT", "Dashboard", "DeploymentSample", "History", "LogUnavailable", "NotFound", "Snapshot", "build_app"]
