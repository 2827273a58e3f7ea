"""Warm worker groups: Ray actors that keep torch, their process group and their data loaded
for a whole sweep, running one trial after another.

A :class:`WorkerGroup` is one trial slot's data-parallel workers: ``job.workers`` actors of
:class:`TrainWorker`, each placed in its own bundle of a Ray placement group (the trial's,
when a Tune trainable owns the group), joined in one ``torch.distributed`` process group
(gloo on CPUs, NCCL when every worker has a GPU of its own). Each actor wraps a
:class:`trainers.worker.WorkerSession`, the plain-PyTorch part; this module is only the Ray
edge. The group dies with its owner (Ray's actor ownership), so no worker outlives its trial
slot, a cancelled sweep or a killed driver.

Example:
    >>> group = WorkerGroup.start(job, placement_group, first_bundle=1)  # doctest: +SKIP
    >>> group.call("start", job, None)  # doctest: +SKIP
    >>> group.call("run_epoch")[0]["epoch"]  # doctest: +SKIP
    1
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from trainers.config import TrainJobConfig

__all__ = ["PROCESS_GROUP_TIMEOUT_S", "TrainWorker", "WorkerGroup", "choose_backend"]

log = logging.getLogger(__name__)

PROCESS_GROUP_TIMEOUT_S = 120.0
"""A collective that waits this long for a peer fails (a dead worker does not hang the rest)."""


class TrainWorker:
    """One rank of a warm group (a Ray actor; see :class:`WorkerGroup`)."""

    def __init__(self, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.session: Any = None

    def pid(self) -> int:
        return os.getpid()

    def gpu_ids(self) -> list[str]:
        return [str(gpu) for gpu in ray.get_gpu_ids()]

    def rendezvous(self) -> tuple[str, int]:
        """An address and a free port on this node for the process group's store."""
        with socket.socket() as sock:
            sock.bind(("", 0))
            port = int(sock.getsockname()[1])
        return ray.util.get_node_ip_address(), port  # type: ignore[no-untyped-call]

    def setup(self, rank: int, world_size: int, address: str, port: int, backend: str) -> None:
        """Join the process group (once per actor) and open the session."""
        import torch
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        from trainers.worker import WorkerSession

        use_gpu = backend == "nccl" or (backend == "gloo" and bool(ray.get_gpu_ids()))
        device = torch.device("cuda", 0) if use_gpu else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if world_size > 1:
            dist.init_process_group(
                backend,
                init_method=f"tcp://{address}:{port}",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S),
            )
            # DDP imports torch._dynamo lazily on its first construction (seconds): pay it here,
            # once per worker, instead of in the sweep's first trial.
            import torch._dynamo

        def wrap(model: torch.nn.Module) -> torch.nn.Module:
            # Buffers (BatchNorm statistics) stay rank-local: broadcasting them would add a
            # collective to every forward; rank 0's are evaluated and checkpointed.
            ids = [device.index] if device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

        self.session = WorkerSession(
            rank=rank, world_size=world_size, device=device, wrap_model=wrap
        )

    def start(self, job: TrainJobConfig, files: Mapping[str, bytes] | None) -> int:
        return int(self.session.start(job, files))

    def run_epoch(self) -> dict[str, Any]:
        return dict(self.session.run_epoch())

    def finish(self) -> dict[str, float]:
        return dict(self.session.finish())

    def checkpoint(self) -> dict[str, bytes]:
        return dict(self.session.checkpoint())

    def end(self) -> None:
        self.session.end()

    def loads(self) -> int:
        return int(self.session.loads)


_RemoteWorker = ray.remote(TrainWorker)


class WorkerGroup:
    """The actors of one trial slot, in rank order; :meth:`call` runs a method on all."""

    def __init__(self, workers: list[Any], pids: list[int], backend: str) -> None:
        self.workers = workers
        self.pids = pids
        self.backend = backend

    @classmethod
    def start(
        cls,
        job: TrainJobConfig,
        placement_group: PlacementGroup | None,
        *,
        first_bundle: int = 0,
    ) -> WorkerGroup:
        """Start ``job.workers`` actors (bundles ``first_bundle`` … of ``placement_group``).

        All trials of a sweep share the job's resources (workers, CPUs and GPUs per worker),
        so one group serves every trial of its slot.
        """
        workers = []
        for rank in range(job.workers):
            options: dict[str, Any] = {
                "num_cpus": job.cpus_per_worker,
                "num_gpus": job.gpus_per_worker,
                "max_concurrency": 1,
                "max_restarts": 0,
            }
            if placement_group is not None:
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group, placement_group_bundle_index=first_bundle + rank
                )
            threads = max(1, int(job.cpus_per_worker))
            workers.append(_RemoteWorker.options(**options).remote(threads))
        pids = ray.get([worker.pid.remote() for worker in workers])  # type: ignore[attr-defined]
        backend = cls._backend(workers, job)
        address, port = ray.get(workers[0].rendezvous.remote())  # type: ignore[attr-defined]
        _gather(
            [
                worker.setup.remote(  # type: ignore[attr-defined]
                    rank, len(workers), address, port, backend
                )
                for rank, worker in enumerate(workers)
            ]
        )
        return cls(workers, pids, backend)

    @staticmethod
    def _backend(workers: list[Any], job: TrainJobConfig) -> str:
        if job.gpus_per_worker <= 0:
            return "gloo"
        ids = ray.get([w.gpu_ids.remote() for w in workers])
        backend = choose_backend(ids)
        if backend == "gloo":
            log.info("workers share GPUs %s: using gloo instead of NCCL", ids)
        return backend

    def call(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every worker; the results in rank order.

        The first worker to fail raises at once (its peers may be stuck in a collective
        with it; the group is then torn down by its owner).
        """
        return _gather([getattr(worker, method).remote(*args) for worker in self.workers])

    def shutdown(self) -> None:
        """Kill the actors (their process group and data go with them)."""
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers = []


def choose_backend(gpu_ids: list[list[str]]) -> str:
    """NCCL when every worker has GPUs of its own, else gloo.

    NCCL needs one GPU per rank; workers that share a GPU (a fractional ``gpus_per_worker``,
    e.g. 0.5 puts two workers on one GPU) communicate over gloo instead.

    Example:
        >>> choose_backend([["0"], ["1"]]), choose_backend([["0"], ["0"]]), choose_backend([[]])
        ('nccl', 'gloo', 'gloo')
    """
    owned = [tuple(ids) for ids in gpu_ids]
    if not owned or any(not ids for ids in owned) or len(set(owned)) < len(owned):
        return "gloo"
    return "nccl"


def _gather(refs: list[Any]) -> list[Any]:
    """The results of ``refs`` in order; the first failure raises as soon as it happens."""
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        ray.get(ready)  # raises the worker's error (or RayActorError) right away
    return list(ray.get(refs))
