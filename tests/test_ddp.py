"""The PGO layer under DistributedDataParallel: two CPU processes (gloo), each with half of every
batch, train the same network as one process with the whole batch."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    sys.path.insert(0, str(EXAMPLES))
    from learned_edge_weights import train

    net, curve = train(seed=0, steps=3, batch=4, learning_rate=3e-2, distributed=True)
    if rank == 0:
        torch.save({"state": net.state_dict(), "curve": curve}, out)
    dist.barrier()
    dist.destroy_process_group()


def test_two_processes_train_the_same_network_as_one(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out = str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    sys.path.insert(0, str(EXAMPLES))
    from learned_edge_weights import train

    single, curve = train(seed=0, steps=3, batch=4, learning_rate=3e-2)
    distributed = torch.load(out)
    for name, value in single.state_dict().items():
        assert torch.allclose(distributed["state"][name], value, rtol=1e-9, atol=1e-12), name
    # the parameters moved (the comparison is not between two untrained networks)
    from learned_edge_weights import new_network

    torch.manual_seed(0)
    initial = new_network().state_dict()
    assert any(not torch.allclose(initial[k], v) for k, v in single.state_dict().items())
