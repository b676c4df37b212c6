"""The names of the serving layer's well-known actors: how one process finds
another's controller, membership actor, metrics aggregator or node agent."""

CONTROLLER_NAME = "controller"
MEMBERSHIP_ACTOR = "serve-membership"
METRICS_ACTOR = "serve-metrics"
NODE_ACTOR = "node"
#: The method name under which a replica serves an HTTP request from a proxy.
HTTP_METHOD = "__serve_http__"
