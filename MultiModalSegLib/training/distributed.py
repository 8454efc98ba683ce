"""Multi-process training under ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m MultiModalSegLib train ...`` starts N processes and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Each process
calls :func:`init_distributed`, which joins the process group with NCCL when it trains on CUDA
(one GPU per local rank) and gloo on CPU. Every rank samples its own share of the patches (the
batch loader gets ``rank`` and ``world_size`` and seeds itself per rank), DDP averages the
gradients, and only rank 0 validates and writes files; the others wait at a barrier. The batch
size is per process, as in both references ("batch_size per gpu").

Without those variables (a plain ``mmseg train``) the context is a single process and every
collective below is a no-op, so the training loop has one code path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from MultiModalSegLib.errors import MultiModalSegError

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class DistributedContext:
    """Where this process stands in a (possibly one-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) validates, prints progress and writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def any_true(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """True if ``flag`` is true on any rank (e.g. one rank received SIGTERM)."""
        if not self.enabled:
            return bool(flag)
        import torch
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self._collective_device(device))
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def mean_of(self, values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
        """Average scalar loss terms over the ranks (for progress reporting)."""
        if not self.enabled or not values:
            return dict(values)
        import torch
        import torch.distributed as dist

        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], device=self._collective_device(device),
                              dtype=torch.float64)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= self.world_size
        return {k: float(v) for k, v in zip(keys, tensor.tolist())}

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def synchronize_buffers(self, network: torch.nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts them at the start of each forward, so after the last forward every rank
        holds the statistics of its own last batch; rank 0's are the ones written to disk.
        """
        if not self.enabled:
            return
        import torch.distributed as dist

        for buffer in getattr(network, "module", network).buffers():
            dist.broadcast(buffer.data, src=0)

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def _collective_device(self, device: torch.device | str) -> Any:
        if self.backend == "nccl":
            return device
        return "cpu"

    def wrap(self, network: torch.nn.Module, device: torch.device,
             find_unused_parameters: bool = False) -> torch.nn.Module:
        """Wrap in DistributedDataParallel when there is more than one process.

        DDP broadcasts rank 0's parameters and buffers at construction, so every rank starts from
        the same weights, and (``broadcast_buffers``) BatchNorm statistics stay identical.
        ``find_unused_parameters`` is needed when the loss ignores some outputs (MAML's lowest
        deep-supervision heads carry weight 0, as in nnU-Net).
        """
        if not self.enabled:
            return network
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            return DistributedDataParallel(network, device_ids=[device.index], output_device=device.index,
                                           find_unused_parameters=find_unused_parameters)
        return DistributedDataParallel(network, find_unused_parameters=find_unused_parameters)


def weights_digest(network: torch.nn.Module) -> str:
    """sha256 over the network's state dict (names, dtypes, shapes, bytes): equal iff the weights are."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name, tensor in getattr(network, "module", network).state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        if value.numel():
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def distributed_environment() -> bool:
    """True when this process was started by torchrun (or another launcher) with several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group that torchrun describes in the environment (or stay single).

    NCCL on CUDA (each process uses ``cuda:LOCAL_RANK``), gloo on CPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if local_rank >= torch.cuda.device_count():
            raise MultiModalSegError(
                f"torchrun started local rank {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "lower --nproc_per_node to the number of GPUs.")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, backend=backend)


def shutdown_distributed(context: DistributedContext) -> None:
    """Leave the process group (no-op for a single process)."""
    if context.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def resolve_device(request: str = "auto") -> torch.device:
    """``auto``: CUDA if available (the local rank's GPU under torchrun), else CPU.

    ``cuda`` without a GPU is a user error with a sentence that says what to do.
    """
    import torch

    request = (request or "auto").lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if request == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return torch.device("cpu")
    if request.startswith("cuda"):
        if not torch.cuda.is_available():
            raise MultiModalSegError("--device cuda was requested but no CUDA GPU is available; use --device cpu.")
        if request == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(request)
    if request == "cpu":
        return torch.device("cpu")
    if request == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise MultiModalSegError("--device mps was requested but MPS is not available; use --device cpu.")
        return torch.device("mps")
    raise MultiModalSegError(f"Unknown device '{request}'; use auto, cpu, cuda, cuda:N or mps.")
