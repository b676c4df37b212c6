"""What runs in the head: the control plane.

House rules:

- Lives here: the Controller actor (a shell: messages in, sends out) and the
  pure objects that decide for it: each deployment's state and its replica
  and gang life cycles (``_deployment_state``, ``_gang_state``,
  ``_replica_states``, ``_deployment_status``), placement and gang
  reservations (``_placement``, ``_gang_placement``), the reconcile loop's
  agenda (``_agenda``: what changed or fell due), recovery from a checkpoint,
  the metrics ledger and the status views; the checkpoint stores; the gang
  coordinator actor.
- May import: ``actors`` (the runtime), ``protocol``, ``transport`` (only
  for endpoint checks and well-known reasons) and the shared definitions of
  ``actors.serve`` (options, autoscaling policy, gang options, names,
  errors). Never ``client`` or ``worker``: the head talks to them through
  messages only.
- Pure modules (every ``_*state*``, ``_deployment_status``, ``_agenda``, ``_ids``,
  ``_placement``, ``_gang_placement``, ``_commands``, ``_metrics_store``) import no actor, transport or ZeroMQ
  code and are tested without threads or sockets. A new decision goes in a
  pure module; the controller only carries it out.
"""
