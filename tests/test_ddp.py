"""DistributedDataParallel on CPU: 2 processes (gloo) train a few steps and hold identical weights."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from acfd.training.checkpoint import read_checkpoint
from acfd.scenes.synth import write_dataset


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, data: str, out: str) -> None:
    # what torchrun sets for each process
    os.environ.update(
        {
            "WORLD_SIZE": str(world),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    from acfd.training.trainer import TrainOptions, train

    result = train(
        TrainOptions(
            data=data,
            out=out,
            preset="tiny",
            epochs=1,
            batch=4,
            size=128,
            workers=0,
            progress=False,
            max_iters=2,
            seed=0,
            kernels="torch",
        )
    )
    torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    data = tmp_path / "data"
    write_dataset(data, images=8, seed=3, size=(192, 128), progress=False)
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_rank_main, args=(2, _free_port(), str(data), str(out)), nprocs=2, join=True)

    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for name in w0:
        assert torch.equal(w0[name], w1[name]), name
    # rank 0 alone wrote the checkpoint, and it holds those weights after 2 steps
    saved = read_checkpoint(out / "last.pt")
    assert saved["iteration"] == 2
    assert all(torch.equal(saved["model"][k], w0[k]) for k in w0)
    # the weights moved away from the initialisation
    from acfd.training.model import build_model

    torch.manual_seed(0)
    init = build_model("tiny").state_dict()
    assert any(not torch.equal(init[k], w0[k]) for k in w0 if w0[k].is_floating_point())
    assert sorted(p.name for p in out.iterdir()) == [
        "command.txt",
        "config.yaml",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "rank0.pt",
        "rank1.pt",
    ]
