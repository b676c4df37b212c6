"""The node agent: starts, supervises and stops its worker's replicas.

A replica runs in its own process (the default: started from the zygote,
watched by :class:`ReplicaProcesses`) or, when its deployment asks for
``isolation="thread"``, as an actor inside the worker process.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any, Callable

import msgpack
import psutil

from protocol import FetchPackage, HealthChecks, ListReplicas, NodeHello, ReadReplicaLog, RegisterNode, ReplicaExited, StartReplica, StopReplica, encode_fields

from ..._actor import Actor
from ..._config import Config, config_to_json
from ..._future import Future
from ..._ref import ActorRef
from ..._ticker import Ticker
from .._context import GangContext, ReplicaContext
from .._options import DeploymentConfig
from ..client._session import Session
from ._children import ChildExited, ChildReady, ReplicaProcesses
from ._devices import GpuIds, declared_gpu_ids
from ._health import HealthProbes
from ._logs import ReplicaLogs
from ._package_cache import PackageCache, package_cache_dir
from .._packages import PackageError
from ._replica import Replica, drain_message
from ._replica_process import ReplicaPlan

log = logging.getLogger("corral.serve")


class _Hello:
    """Time to say hello to the controller."""


@dataclass(frozen=True)
class _HelloAnswer:
    """The controller answered a hello (None: it could not be asked)."""

    answer: Any


@dataclass(frozen=True)
class _Forget:
    """A replica's actor stopped: forget it."""

    replica_id: str


class ReplicaStartFailed(RuntimeError):
    """A replica process could not construct its replica; the message is the child's error."""


class NodeAgent(Actor):
    """One per worker process, named ``"node"``.

    Once per ``hello_interval_s`` it tells the controller which replicas it
    runs. Replicas the controller does not know (replaced while this worker
    was cut off) are stopped; if the controller does not know this worker any
    more, every replica is stopped and the worker registers again, so nothing
    is counted twice.

    Args:
        node_id: this worker's id.
        session: this process's session: its replicas' handles and metrics go through it.
        controller: the controller (None: no hellos).
        resources: what this worker declared, for registering again.
        hello_interval_s: time between hellos.
        config: the worker's settings, handed to its replica processes.
    """

    def __init__(
        self,
        node_id: str,
        session: Session,
        controller: ActorRef | None = None,
        resources: dict[str, float] | None = None,
        hello_interval_s: float = 5.0,
        config: Config | None = None,
        log_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.node_id = node_id
        self.session = session
        self.controller = controller
        self.resources = dict(resources or {})
        self.hello_interval_s = hello_interval_s
        self.config = config or session.config
        self.logs = ReplicaLogs(log_dir) if log_dir else None
        self.packages = PackageCache(package_cache_dir(node_id), self._fetch_package)
        self._packages_of: dict[str, list[str]] = {}  # replica id -> the packages it started with
        self.replicas: dict[str, ActorRef] = {}
        self.probes = HealthProbes()  # its thread-mode replicas', for batched health checks
        self.processes: set[str] = set()
        self.stopping: dict[str, Future[str]] = {}
        self.ready: dict[str, Future[Any]] = {}
        self.gpus = GpuIds(declared_gpu_ids(self.resources.get("GPU", 0.0), os.environ.get("CUDA_VISIBLE_DEVICES")))
        self.children: ReplicaProcesses | None = None
        self._ticker: Ticker | None = None
        self._hello_pending = False

    def on_start(self) -> None:
        me = self.actor_ref
        self.children = ReplicaProcesses(lambda event: _tell_quietly(me, event))
        if self.controller is not None:
            self._ticker = Ticker(self.actor_ref, _Hello, self.hello_interval_s, "node-hello").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        shutil.rmtree(self.packages.root, ignore_errors=True)  # this worker's own cache
        if self.children is not None:
            self.children.close(self.config.stop_timeout_s)
            self.children = None

    def on_failure(self, *exc_info: Any) -> None:
        self.on_stop()

    def handlers(self) -> dict[type, Callable[[Any], Any]]:
        return {
            _Hello: self._on_hello_due,
            _HelloAnswer: lambda m: self._on_hello_answer(m.answer),
            StartReplica: self._start_replica,
            ReadReplicaLog: self._read_log,
            StopReplica: self._stop_replica,
            HealthChecks: lambda m: self.probes.check(m.actors, m.timeout_s),
            ListReplicas: self._list_replicas,
            _Forget: self._forget,
            ChildReady: self._child_ready,
            ChildExited: self._child_exited,
        }

    def _on_hello_due(self, _message: _Hello) -> None:
        if self._ticker is not None:
            self._ticker.handled()
        self._say_hello()
        if self.logs is not None:
            self.logs.rotate()
        self._packages_of = {rid: d for rid, d in self._packages_of.items() if rid in self.replicas or rid in self.processes}
        self.packages.clean({d for digests in self._packages_of.values() for d in digests})

    def _fetch_package(self, digest: str) -> bytes:
        data = self.session.ask_controller(FetchPackage(digest))
        if not isinstance(data, bytes):
            raise PackageError(f"the head answered {type(data).__name__} for package {digest}")
        return data

    def _read_log(self, message: ReadReplicaLog) -> dict[str, Any]:
        if self.logs is None:
            return {"error": f"worker {self.node_id} keeps no replica logs (started without --log-dir)"}
        return self.logs.tail(message.replica_id, max(0, min(message.tail, 100_000)))

    def _list_replicas(self, message: ListReplicas) -> Any:
        if message.states:
            return {rid: self._state_of(rid) for rid in self._all_replicas()}
        return self._all_replicas()

    def _forget(self, message: _Forget) -> None:
        self.replicas.pop(message.replica_id, None)
        self.ready.pop(message.replica_id, None)

    def _state_of(self, rid: str) -> Any:
        if not self._is_ready(rid):
            return "starting"
        where = self.ready[rid].get(0)
        if isinstance(where, dict):
            return ["running", where.get("address", ""), where.get("pid", 0)]
        return "running"

    def _all_replicas(self) -> list[str]:
        return sorted({*self.replicas, *self.processes})

    def _say_hello(self) -> None:
        if self._hello_pending or self.controller is None:
            return
        me = self.actor_ref
        try:
            hello = NodeHello(
                self.node_id, self.system.address, self._all_replicas(), self._process_info(), [os.getpid(), _own_rss()]
            )
            future = self.controller.ask(hello, timeout=self.hello_interval_s)
        except Exception as exc:  # the controller is unreachable now: try again next time
            log.debug("hello to the controller not sent: %s", exc)
            return
        self._hello_pending = True

        def answered(done: Future[Any]) -> None:
            try:
                answer = done.get(0)
            except Exception:
                answer = None
            _tell_quietly(me, _HelloAnswer(answer))

        future.add_done_callback(answered)

    def _on_hello_answer(self, answer: Any) -> None:
        self._hello_pending = False
        if not isinstance(answer, dict):
            return
        if answer.get("known"):
            stale = [rid for rid in answer.get("stop", []) if rid in self.replicas or rid in self.processes]
        else:
            stale = self._all_replicas()
        for rid in stale:
            log.warning("stopping replica %s: the controller replaced it while this worker was cut off", rid)
            self.ready.pop(rid, None)
            if rid in self.processes:
                if self.children is not None:
                    self.children.stop(rid, 0.0)
            else:
                self.system.stop(self.replicas.pop(rid), wait=False)
        if not answer.get("known") and self.controller is not None:
            log.warning("worker %s was given up by the controller: registering again", self.node_id)
            try:
                self.controller.ask(RegisterNode(self.node_id, self.system.address, self.resources), timeout=self.hello_interval_s)
            except Exception as exc:
                log.debug("registering again failed, the next hello retries: %s", exc)

    def _is_ready(self, replica_id: str) -> bool:
        ready = self.ready.get(replica_id)
        if ready is None or not ready.done():
            return False
        try:
            return bool(ready.get(0))
        except Exception:
            return False

    def _start_replica(self, message: StartReplica) -> Future[Any]:
        rid = message.replica_id
        if rid in self.ready:
            # asked again (by a controller that restarted): answer from the replica we have
            return self.ready[rid]
        spec = message.spec
        config = DeploymentConfig.from_dict(spec.config)
        ready: Future[Any] = Future(f"start of replica {rid}")
        self.ready[rid] = ready
        if spec.packages:  # shipped code: fetched, checked and unpacked here, first on the import path
            try:
                folders = self.packages.folders(spec.packages)
            except PackageError as exc:
                self.ready.pop(rid, None)
                ready.set_exception(ReplicaStartFailed(str(exc)))
                return ready
            spec = dataclasses.replace(spec, import_dirs=[*folders, *spec.import_dirs])
            message = dataclasses.replace(message, spec=spec)
            self._packages_of[rid] = list(spec.packages)
        if config.isolation == "thread":
            gang = GangContext(**message.gang) if message.gang else None
            context = ReplicaContext(rid, spec.name, spec.app, self.node_id, gang)
            ref = self.system.spawn(Replica, spec, context, ready, self.session, self.probes, name=f"replica/{rid}")
            self.replicas[rid] = ref
            me = self.actor_ref
            self.system.watch(ref, lambda _ref, _why: _tell_quietly(me, _Forget(rid)))
            return ready
        try:
            self._start_process(message, config)
        except Exception as exc:  # the zygote or the pipe failed: a failed start, said so, never a hang
            self.ready.pop(rid, None)
            self.gpus.release(rid)
            ready.set_exception(ReplicaStartFailed(f"cannot start a process for replica {rid}: {exc}"))
        return ready

    def _start_process(self, message: StartReplica, config: DeploymentConfig) -> None:
        rid = message.replica_id
        env = {}
        gpus = config.actor_options.get("num_gpus", 0.0)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus.take(rid, gpus))
        elif "GPU" in self.resources:
            env["CUDA_VISIBLE_DEVICES"] = ""  # asked for none: sees none
        controller = self.session.controller
        plan = ReplicaPlan(
            rid, self.node_id, msgpack.packb(encode_fields(message.spec), use_bin_type=True), message.gang,
            f"{controller.address}#{controller.name}", config_to_json(self.config), env,
            self.config.serve.replica_start_timeout_s, str(self.logs.path_for(rid)) if self.logs is not None else "",
        )
        assert self.children is not None
        self.children.start(plan, int(config.actor_options.get("memory", 0)))
        self.processes.add(rid)

    def _child_ready(self, event: ChildReady) -> None:
        ready = self.ready.get(event.replica_id)
        if ready is None or ready.done():
            return
        if event.error is not None:
            ready.set_exception(ReplicaStartFailed(event.error))
        else:
            ready.set_result({"address": event.address, "pid": event.pid})

    def _child_exited(self, event: ChildExited) -> None:
        rid = event.replica_id
        self.processes.discard(rid)
        self.gpus.release(rid)
        ready = self.ready.pop(rid, None)
        if ready is not None and not ready.done():
            ready.set_exception(ReplicaStartFailed(f"replica {rid}: {event.reason} before it was ready"))
        stopped = self.stopping.pop(rid, None)
        if stopped is not None:
            stopped.set_result("stopped")
        if event.asked:
            return
        log.warning("replica %s died: %s", rid, event.reason)
        if self.controller is not None:
            _tell_quietly(self.controller, ReplicaExited(rid, event.reason))

    def _process_info(self) -> dict[str, list[int]]:
        return {rid: [pid, rss] for rid, (pid, rss) in (self.children.info() if self.children else {}).items()}

    def _stop_replica(self, message: StopReplica) -> Any:
        rid = message.replica_id
        if rid in self.processes:
            assert self.children is not None
            stopped = self.stopping.get(rid)
            if stopped is None:
                stopped = self.stopping[rid] = Future(f"stop of replica {rid}")
            if not self.children.stop(rid, message.timeout_s):
                stopped.set_result("stopped")
            return stopped
        ref = self.replicas.get(rid)
        if ref is None:
            return "not running"
        stopped = Future(f"stop of replica {rid}")
        self.system.watch(ref, lambda _ref, why: stopped.set_result("stopped"))
        try:
            ref.tell(drain_message(message.timeout_s))
        except Exception:
            stopped.set_result("stopped")
        return stopped


def _own_rss() -> int:
    try:
        return int(psutil.Process().memory_info().rss)
    except psutil.Error:
        return 0


def _tell_quietly(ref: Any, message: Any) -> None:
    try:
        ref.tell(message)
    except Exception:
        pass  # the node agent itself is stopping
