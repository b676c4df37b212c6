"""What runs in a worker process: the node agent, the replicas it starts, and
finding the user's code.

House rules:

- Lives here: :class:`NodeAgent` (starts, supervises and stops replicas; says
  hello to the controller), :class:`Replica` (the user's object behind an
  actor), replica processes (``_children``: the zygote and the watcher;
  ``_replica_process``: what the child runs), GPU ids (``_devices``, pure),
  loading code by import path, the replica's HTTP side (``_http``: runs the
  class's ASGI app or ``__call__(request)`` for a proxy), and the worker's
  command line (which also starts an HTTP proxy with ``EveryNode``), and
  local testing mode (``_local``: an app's deployments run in the calling
  process, for ``serve.run(..., _local_testing_mode=True)``).
- May import: ``actors`` (the runtime), ``protocol``, the shared definitions
  of ``actors.serve`` (options, context, errors, names) and ``client`` (a
  replica calls other deployments through the process's session). Never
  ``head``: a worker knows the controller only as an actor reference.
- ``python -m actors.serve.worker`` runs :func:`main` (see ``__main__``).
- A new actor of the worker process goes here, in its own module.
"""

from ._args import parse_resources, worker_args

__all__ = ["parse_resources", "worker_args"]
