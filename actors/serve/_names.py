"""The names of the serving layer's well-known actors: how one process finds
another's controller, membership actor, metrics aggregator or node agent."""

CONTROLLER_NAME = "controller"
MEMBERSHIP_ACTOR = "serve-membership"
METRICS_ACTOR = "serve-metrics"
NODE_ACTOR = "node"
