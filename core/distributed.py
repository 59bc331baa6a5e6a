"""Multi-process training through `torchrun` (DistributedDataParallel, multi-node capable: NCCL on
GPUs, gloo on CPUs) and reference-style single-process DataParallel. Without torchrun's
environment everything runs in one process and these helpers are no-ops."""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def enabled(self):
        return self.world_size > 1


def init(device):
    """Join the process group torchrun describes (if any). Returns (DistInfo, device): under
    torchrun each process takes the GPU of its LOCAL_RANK when `device` is CUDA."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world_size, local_rank), device


def wrap(module, info, device, sync_bn=False, data_parallel=False, broadcast_buffers=True,
         find_unused_parameters=False):
    """DDP under torchrun (optionally with SyncBatchNorm, CUDA only); DataParallel over all visible
    GPUs when asked (reference behaviour: BN statistics per GPU chunk); else the module itself.
    `find_unused_parameters`: some parameters get no gradient (a classifier the loss does not use)."""
    if info.enabled:
        if sync_bn:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=broadcast_buffers, find_unused_parameters=find_unused_parameters)
    if data_parallel and device.type == "cuda" and torch.cuda.device_count() > 1:
        return nn.DataParallel(module)
    return module


def unwrap(module):
    return module.module if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else module


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum_tensor(tensor):
    """Element-wise sum of a tensor over all processes, returned on the tensor's device
    (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    t = tensor.to("cuda" if dist.get_backend() == "nccl" else "cpu", copy=True)
    dist.all_reduce(t)
    return t.to(tensor.device)


def all_reduce_sum(values):
    """Sum a list of floats over all processes (identity when not distributed)."""
    return all_reduce_sum_tensor(torch.tensor(values, dtype=torch.float64)).tolist()


def average_gradients(parameters):
    """Mean of each parameter's gradient over all processes (for parameters outside a DDP module,
    e.g. those of an init phase)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def all_gather_cat(tensor):
    """Concatenation of `tensor` (same shape on every process) over all processes, in rank order;
    the tensor itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_reduce_mean(tensor):
    if not (dist.is_available() and dist.is_initialized()):
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / dist.get_world_size()


def barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()   # no process leaves while another still talks to it
        dist.destroy_process_group()
