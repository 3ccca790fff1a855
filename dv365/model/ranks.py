"""The processes of a run on several devices: one rank per device, in one process group.

``dv365 train`` with ``devices: [cpu, cpu]`` or ``[cuda:0, cuda:1]`` spawns one process per
device (:func:`run_on_ranks`, torch.multiprocessing with a free loopback port); under
``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every process torchrun started joins its
group instead (:func:`torchrun_ranks`). The backend is gloo on the CPU and NCCL on GPUs. Rank
0 is the main rank: it prints, writes the run folder and returns the run's result.
"""

from __future__ import annotations

import os
import queue
import socket
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dv365.errors import ConfigError, Dv365Error


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: its rank, how many there are, its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return backend_for(self.device)

    @property
    def group(self) -> dist.ProcessGroup:
        return dist.GroupMember.WORLD


def backend_for(device: torch.device) -> str:
    """gloo on the CPU, NCCL on GPUs."""
    return "nccl" if device.type == "cuda" else "gloo"


def torchrun_world() -> int:
    """The world size torchrun (or any launcher setting ``WORLD_SIZE``) gave this process; 1
    when none did."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def torchrun_ranks(devices: tuple[str, ...] | None, device: str) -> Ranks:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``PORT`` in the environment). The device is ``devices[LOCAL_RANK]``
    when the config lists devices, else ``device`` (a GPU one becomes ``cuda:LOCAL_RANK``)."""
    rank, world = int(os.environ["RANK"]), torchrun_world()
    local = int(os.environ.get("LOCAL_RANK", rank))
    if devices is not None and len(devices) > 1:
        if len(devices) != world:
            raise ConfigError(f"torchrun started {world} processes and the config lists "
                              f"{len(devices)} devices", where="devices",
                              hint="list one device per process, or none")
        name = devices[local]
    else:
        name = f"cuda:{local}" if device.startswith("cuda") else "cpu"
    target = torch.device(name)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group(backend_for(target), rank=rank, world_size=world)
    return Ranks(rank, world, target)


def free_port() -> int:
    """A loopback TCP port nothing listens on now (the group's rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_on_ranks(work: Callable[[Ranks], Any], devices: tuple[str, ...], *,
                 threads: int | None = None) -> Any:
    """Run ``work(ranks)`` in one spawned process per device, all in one process group, and
    return rank 0's result. The first error of a rank (a :class:`Dv365Error` as it was
    raised) stops the others and is raised here. ``threads`` sets torch's threads per rank
    and Numba's CPU kernel threads per rank (default: the machine's cores shared out)."""
    world = len(devices)
    threads = threads or max((os.cpu_count() or 1) // world, 1)
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    port = free_port()
    procs = [context.Process(target=_rank_main, daemon=True,
                             args=(work, rank, devices, port, threads, results))
             for rank in range(world)]
    for proc in procs:
        proc.start()
    done: dict[int, tuple[str, Any]] = {}
    try:
        while len(done) < world:
            try:
                rank, kind, value = _get(results, timeout=0.5)
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if r not in done and not p.is_alive()]
                if dead and results.empty():
                    raise RuntimeError(f"rank {dead[0]} died (exit code "
                                       f"{procs[dead[0]].exitcode}) without a result")
                continue
            done[rank] = (kind, value)
            if kind == "error":
                raise value
    finally:
        for proc in procs:
            if proc.is_alive() and len(done) < world:
                proc.terminate()
        for proc in procs:
            proc.join()
    return done[0][1]


def _get(results, *, timeout: float):
    # SimpleQueue has no timeout: poll its reader.
    if not results._reader.poll(timeout):
        raise queue.Empty
    return results.get()


def _rank_main(work, rank: int, devices: tuple[str, ...], port: int, threads: int,
               results) -> None:
    """One spawned rank: join the group, work, report the result or the error."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import numba

    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    device = torch.device(devices[rank])
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend_for(device), rank=rank, world_size=len(devices))
        result = work(Ranks(rank, len(devices), device))
        results.put((rank, "result", result if rank == 0 else None))
    except BaseException as exc:  # everything goes back to the parent, which raises it
        if not isinstance(exc, Dv365Error):
            exc = RuntimeError(f"rank {rank}: {type(exc).__name__}: {exc}\n"
                               f"{traceback.format_exc()}")
        results.put((rank, "error", exc))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
