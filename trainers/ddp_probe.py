"""Small tools to run and observe DDP on plain gloo processes (no Ray).

Used by the step tests and ``benchmarks/ddp_communication.py``: :func:`run_gloo` starts
``world_size`` processes on a free local port; :class:`CommCounter` is a DDP communication hook
that counts the gradient all-reduces and their bytes.
"""

# No `from __future__ import annotations`: DDP checks the comm hook's annotations at runtime.
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

__all__ = ["CommCounter", "free_port", "run_gloo"]


@dataclass
class CommCounter:
    """DDP comm-hook state: gradient all-reduce calls and bytes since the last :meth:`reset`."""

    calls: int = 0
    bytes: int = 0

    def reset(self) -> None:
        self.calls = 0
        self.bytes = 0

    @staticmethod
    def hook(
        state: "CommCounter",
        bucket: dist.GradBucket,  # type: ignore[name-defined]
    ) -> torch.futures.Future[torch.Tensor]:
        buffer = bucket.buffer()
        state.calls += 1
        state.bytes += buffer.numel() * buffer.element_size()
        return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]

    def attach(self, ddp_model: torch.nn.parallel.DistributedDataParallel) -> None:
        ddp_model.register_comm_hook(self, CommCounter.hook)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _entry(
    rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple[Any, ...]
) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_gloo(fn: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes; raise on failure.

    ``fn`` must be importable (a module-level function); results travel through files or a
    ``multiprocessing`` queue passed in ``args``.
    """
    mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
        _entry,
        args=(world_size, free_port(), fn, args),
        nprocs=world_size,
        join=True,
        start_method="spawn",
    )
