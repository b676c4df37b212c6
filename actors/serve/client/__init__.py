"""What runs in any process that calls deployments: handles, routers, the
process's session, its membership actor and its one metrics aggregator.

House rules:

- Lives here: :class:`DeploymentHandle` and its responses, the per-process
  :class:`Router` of each deployment (replica choice, in-flight counts,
  retries; ``_attempts``: one attempt at one replica, what a cancel
  stops), the :class:`Session` (routers, subscriptions, the watch on the
  controller), the ``Membership`` actor that takes replica-set pushes, the
  ``MetricsAggregator`` that batches this process's reports, and the HTTP
  proxy (``_proxy``: the ASGI app that routes through the router;
  ``_proxy_server``: the actor running uvicorn on its own thread).
- May import: ``actors`` (the runtime), ``protocol``, ``transport`` (its
  error types) and the shared definitions of ``actors.serve``. Never
  ``head`` or ``worker``: a client-only process loads no control plane.
- The session is passed to what needs it; nothing here reaches for a
  process-global one.
"""
