"""Where the workers run: in this process (`local`) or as Ray actors (`ray`), behind one small interface.

    engine.start()                  start the workers (Ray: actors; they load models on their first item)
    engine.idle() -> bool           a worker can take an item now
    engine.submit(item) -> str      hand it to an idle worker; returns where it runs ("pid 42 on node-1")
    engine.poll(timeout_s)          -> (item, Outcome) of one finished item, or None
    engine.busy() -> bool           an item is running
    engine.stop(grace_s)            ask running items to stop after their step; -> their outcomes
    engine.close()                  stop the workers (and the Ray cluster this process started)

Ray: one actor per GPU (`num_gpus=1`, so each sees its own `CUDA_VISIBLE_DEVICES`) or `workers`
CPU actors. Actors restart after a crash at most `retries` times (`max_restarts`); a call is never
re-run by Ray itself (`max_task_retries=0`): the batch retries the item, counted in the manifest,
and replaces a worker that is out of restarts. Actors are threaded (two calls at once), so
`request_stop` reaches a worker while it trains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from splatgen.batch.plan import WorkItem
from splatgen.batch.worker import BatchWorker, Outcome, one_line
from splatgen.errors import SplatgenError

RAY_OBJECT_STORE_BYTES = 100 * 1024**2  # items pass configs and small outcomes only
REPLACEMENTS_PER_WORKER = 3  # a worker slot that keeps dying (e.g. out of host memory) ends the batch


class EngineError(SplatgenError):
    """The engine cannot start or keep its workers."""


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def where(info: dict) -> str:
    gpus = f", GPU {info['gpus']}" if info.get("gpus") else ""
    return f"pid {info['pid']} on {info['host']}{gpus}"


class LocalEngine:
    """One worker in this process: items run one after another; Ctrl-C reaches `train()` directly."""

    workers = 1

    def __init__(self, log_dir: Path) -> None:
        self.worker = BatchWorker(log_dir)
        self._next: WorkItem | None = None

    def start(self) -> None:
        pass

    def idle(self) -> bool:
        return self._next is None

    def busy(self) -> bool:
        return self._next is not None

    def submit(self, item: WorkItem) -> str:
        self._next = item
        return where(self.worker.describe())

    def poll(self, timeout_s: float) -> tuple[WorkItem, Outcome] | None:  # noqa: ARG002
        if self._next is None:
            return None
        outcome = self.worker.run_item(self._next)  # a KeyboardInterrupt leaves the item to stop()
        item, self._next = self._next, None
        return item, outcome

    def stop(self, grace_s: float) -> list[tuple[WorkItem, Outcome]]:  # noqa: ARG002
        item, self._next = self._next, None
        return [] if item is None else [(item, Outcome("interrupted", error="stopped; the next run resumes it"))]

    def close(self) -> None:
        pass


class RayEngine:
    """`workers` Ray actors (default: one per GPU of the cluster, else 1), each a `BatchWorker`."""

    def __init__(
        self,
        log_dir: Path,
        workers: int | None = None,
        address: str | None = None,
        retries: int = 2,
        announce: Callable[[str], None] = print,
    ) -> None:
        self.log_dir, self.address, self.retries, self.announce = Path(log_dir), address, retries, announce
        self.requested_workers = workers
        self.workers = 0
        self._started_ray = False
        self._actors: list = []
        self._info: list[dict | None] = []
        self._replacements: list[int] = []
        self._idle: set[int] = set()
        self._calls: dict = {}  # ObjectRef -> ("ready" | "item", slot, item)

    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            self._started_ray = True
            if self.address is not None:
                try:
                    ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
                except (ConnectionError, RuntimeError, ValueError) as error:
                    raise EngineError(f"cannot reach the Ray cluster at {self.address}: {one_line(error)}") from error
            else:
                gpus = _local_gpus()
                cpus = max(os.cpu_count() or 1, self.requested_workers or 1)
                ray.init(
                    num_cpus=cpus,
                    num_gpus=gpus,
                    include_dashboard=False,
                    object_store_memory=RAY_OBJECT_STORE_BYTES,
                    log_to_driver=False,
                    logging_level="ERROR",
                )
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
        self.workers = self.requested_workers or max(gpus, 1)
        if gpus and self.workers > gpus:
            self.close()
            raise EngineError(f"--workers {self.workers} is more than the cluster's {gpus} GPUs (one worker per GPU)")
        if gpus:
            self._options = {"num_gpus": 1, "num_cpus": 1}
        else:
            self._options = {
                "num_gpus": 0,
                "num_cpus": cpus // self.workers if cpus >= self.workers else cpus / self.workers,
            }
        self._actor_class = ray.remote(BatchWorker).options(
            max_restarts=self.retries, max_task_retries=0, max_concurrency=2, **self._options
        )
        kind = f"{self._options['num_gpus']} GPU" if gpus else f"{self._options['num_cpus']} CPU"
        self.announce(f"ray: {self.workers} workers ({kind} each) on a cluster of {cpus} CPUs, {gpus} GPUs")
        for slot in range(self.workers):
            self._actors.append(None)
            self._info.append(None)
            self._replacements.append(0)
            self._new_actor(slot)

    def _new_actor(self, slot: int) -> None:
        actor = self._actor_class.remote(self.log_dir)
        self._actors[slot] = actor
        self._calls[actor.describe.remote()] = ("ready", slot, None)

    def idle(self) -> bool:
        return bool(self._idle)

    def busy(self) -> bool:
        return any(kind == "item" for kind, _, _ in self._calls.values())

    def submit(self, item: WorkItem) -> str:
        slot = min(self._idle)
        self._idle.discard(slot)
        self._calls[self._actors[slot].run_item.remote(item)] = ("item", slot, item)
        return where(self._info[slot])

    def worker_pids(self) -> list[int]:
        return [info["pid"] for info in self._info if info is not None]

    def poll(self, timeout_s: float) -> tuple[WorkItem, Outcome] | None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        if not self._calls:
            return None
        ready, _ = ray.wait(list(self._calls), num_returns=1, timeout=timeout_s)
        for ref in ready:
            kind, slot, item = self._calls.pop(ref)
            try:
                value = ray.get(ref)
            except RayActorError as error:
                if kind == "ready":  # out of restarts: a new actor takes the slot
                    self._replace(slot, error)
                    continue
                self._info[slot] = None
                self._calls[self._actors[slot].describe.remote()] = ("ready", slot, None)  # after Ray restarts it
                return item, Outcome("lost", error=f"its worker died ({_first_line(error)})")
            except RayTaskError as error:  # the worker raised past run_item's own handling
                self._idle.add(slot)
                return item, Outcome("failed", error=_first_line(error))
            if kind == "ready":
                self._info[slot] = value
                self._idle.add(slot)
                continue
            self._idle.add(slot)
            return item, value
        return None

    def _replace(self, slot: int, error: BaseException) -> None:
        self._replacements[slot] += 1
        if self._replacements[slot] > REPLACEMENTS_PER_WORKER:
            raise EngineError(f"worker {slot + 1} keeps dying ({_first_line(error)}); see the logs of Ray (`ray logs`)")
        self.announce(f"worker {slot + 1} is out of restarts; starting a new one")
        self._new_actor(slot)

    def stop(self, grace_s: float) -> list[tuple[WorkItem, Outcome]]:
        """Ask the running items to stop after their current step, and wait up to `grace_s` for them."""
        import ray

        running = {ref: entry for ref, entry in self._calls.items() if entry[0] == "item"}
        for _, slot, _ in running.values():
            self._actors[slot].request_stop.remote()
        done, _ = ray.wait(list(running), num_returns=len(running), timeout=grace_s) if running else ([], [])
        outcomes = []
        for ref, (_, _, item) in running.items():
            try:
                outcome = ray.get(ref) if ref in done else Outcome("interrupted", error="stopped")
            except Exception as error:  # a worker that died while stopping: its last checkpoint is kept
                outcome = Outcome("interrupted", error=f"stopped ({_first_line(error)})")
            outcomes.append((item, outcome))
            self._calls.pop(ref, None)
        return outcomes

    def close(self) -> None:
        import ray

        for actor in self._actors:
            if actor is not None:
                ray.kill(actor, no_restart=True)
        self._actors, self._calls, self._idle = [], {}, set()
        if self._started_ray:
            ray.shutdown()


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _local_gpus() -> int:
    """GPUs on this machine for a local cluster (torch's count; 0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def make_engine(
    name: str, log_dir: Path, workers: int | None, address: str | None, retries: int, announce: Callable[[str], None]
):
    """`auto` is Ray when it is installed, else local; `ray` without Ray installed is a one-line error."""
    if name == "auto":
        name = "ray" if ray_available() else "local"
    if name == "local":
        if workers not in (None, 1):
            raise SplatgenError("--engine local runs one worker; use --engine ray for --workers > 1")
        return LocalEngine(log_dir)
    if not ray_available():
        raise SplatgenError("--engine ray needs Ray: pip install 'splatgen[batch]' (or use --engine local)")
    return RayEngine(log_dir, workers, address, retries, announce)
