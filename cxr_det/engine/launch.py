"""Multi-process training on GPUs (NCCL) and on CPUs (gloo), on one machine or several.

detectron2 0.6's :func:`detectron2.engine.launch` spawns one process per GPU and asserts
CUDA in each, so ``--num-gpus 2`` cannot run without GPUs. :func:`launch` takes the same
arguments plus ``backend``:

- ``"nccl"`` (``"auto"`` where CUDA is available): detectron2's ``launch`` unchanged, one
  process per GPU;
- ``"gloo"`` (``"auto"`` without CUDA): ``num_gpus_per_machine`` processes per machine
  spawned with :func:`torch.multiprocessing.spawn`, a gloo process group
  (:func:`torch.distributed.init_process_group`, PyTorch's CPU backend) and detectron2's
  per-machine group (``comm._LOCAL_PROCESS_GROUP``) made as detectron2's launcher makes it,
  so :mod:`detectron2.utils.comm` (ranks, gather, barriers) and everything built on it
  (samplers that shard the training stream, evaluators that gather predictions) work alike.

Multi-node: every machine runs the same command with its ``machine_rank``; ``dist_url``
(``tcp://<address of machine 0>:<port>``) is where the processes meet. ``SOLVER.IMS_PER_BATCH``
stays the total batch over all processes (detectron2's loaders divide it by the world size).

Why a launcher here and not a patch in :mod:`cxr_det.compat`: compat mends detectron2
functions that break on today's libraries without changing what they do; running without
CUDA is a new choice (a backend), which callers make explicitly (``--dist-backend``).
"""
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as _detectron2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm

__all__ = ["BACKENDS", "DEFAULT_TIMEOUT", "launch", "resolve_backend"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "nccl", "gloo")


def resolve_backend(backend: str = "auto") -> str:
    """``"nccl"`` or ``"gloo"``: ``"auto"`` is ``"nccl"`` where CUDA is available, else ``"gloo"``.

    Raises:
        ValueError: an unknown backend, or ``"nccl"`` without CUDA.
    """
    if backend not in BACKENDS:
        raise ValueError(f"distributed backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("the nccl backend needs CUDA, which is not available here; use gloo (CPU processes)")
    return backend


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    timeout: timedelta = DEFAULT_TIMEOUT,
    backend: str = "auto",
):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes (one
    process: here, without a process group), as :func:`detectron2.engine.launch` does.

    Call it on every machine. With the gloo backend ``num_gpus_per_machine`` is the number
    of processes on this machine (CPU training; where CUDA is available each process also
    takes the GPU of its local rank, if there is one).

    Args:
        main_func: a picklable (module-level) function; it runs in each spawned process.
        num_gpus_per_machine: processes per machine (GPUs with NCCL), >= 1.
        num_machines: machines taking part, >= 1.
        machine_rank: this machine's index, ``0 .. num_machines - 1``.
        dist_url: ``tcp://host:port`` of machine 0 (or ``file://`` on a shared filesystem, one
            machine only); ``"auto"`` picks a free port on 127.0.0.1 (one machine only).
        args: the arguments of ``main_func``.
        timeout: how long collective operations wait for the other processes.
        backend: ``"auto"``, ``"nccl"`` or ``"gloo"`` (see :func:`resolve_backend`).

    Returns:
        ``main_func``'s result with one process; None with several (as detectron2's).

    Raises:
        ValueError: a bad backend, process count, machine rank or ``dist_url``. An exception
        in any spawned process ends the others and is raised here
        (``torch.multiprocessing.ProcessRaisedException``; ``ProcessExitedException`` with
        its exit status for a process that exited or was killed).

    With gloo, Ctrl-C in this (parent) process waits for the spawned processes, which got
    the same SIGINT from the terminal and stop after saving a checkpoint (a second Ctrl-C
    stops them at once).
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(f"need at least one process and one machine; got --num-gpus {num_gpus_per_machine}, "
                         f"--num-machines {num_machines}")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(
            f"--machine-rank {machine_rank} must be in 0..{num_machines - 1} (--num-machines {num_machines})"
        )
    world_size = num_machines * num_gpus_per_machine
    backend = resolve_backend(backend)
    if world_size == 1:
        return main_func(*args)
    if backend == "nccl":
        return _detectron2_launch(
            main_func, num_gpus_per_machine, num_machines=num_machines, machine_rank=machine_rank,
            dist_url=dist_url, args=args, timeout=timeout,
        )
    if dist_url == "auto":
        if num_machines > 1:
            raise ValueError("--dist-url auto picks a port on this machine only; with --num-machines > 1 give "
                             "tcp://<machine 0's address>:<port>")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if not dist_url:
        raise ValueError("several processes need --dist-url (tcp://host:port, or auto on one machine)")
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// is not a reliable init_method in multi-machine jobs. Prefer tcp://")
    context = mp.start_processes(
        _gloo_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
        join=False,
        start_method="spawn",
    )
    while True:
        try:
            if context.join():
                return None
        except KeyboardInterrupt:
            # Ctrl-C reached the processes too: they save a checkpoint and stop (cxr_det.engine.interrupt)
            logger.warning("Ctrl-C: waiting for the training processes to save a checkpoint and stop")


def _gloo_worker(local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout):
    """One spawned process: join the gloo group, make detectron2's local group, run main."""
    global_rank = machine_rank * num_per_machine + local_rank
    if "OMP_NUM_THREADS" not in os.environ:
        # N processes each using every core would oversubscribe the CPU (torchrun sets 1).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_per_machine))
    try:
        dist.init_process_group(
            backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
        )
    except Exception:
        logger.error(f"Process group URL: {dist_url}")
        raise
    # Every process makes every machine's group (new_group is collective), keeping its own.
    if comm._LOCAL_PROCESS_GROUP is not None:
        raise RuntimeError("detectron2's local process group already exists in a newly spawned process")
    for i in range(world_size // num_per_machine):
        group = dist.new_group(list(range(i * num_per_machine, (i + 1) * num_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
