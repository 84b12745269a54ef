"""Run under mpiexec on a finished run dir: every rank rebuilds its member the way --resume does,
loads the newest checkpoint, and checks weights and optimizer state against the checkpoint zip
bit-exactly (and counters / hyperparameters against its JSON). Usage: resume_check.py RUN_DIR"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from mpi4py import MPI
from stable_baselines3.common.save_util import load_from_zip_file

import evo.loop.checkpoints as ckpt
from evo.config import CommonConfig
from evo.learners import make_learner

run = Path(sys.argv[1])
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
saved = json.loads((run / "config.json").read_text())["config"]
cfg = CommonConfig(**{k: v for k, v in saved.items() if k in CommonConfig.__dataclass_fields__})
directory = ckpt.find_latest(run)
meta = json.loads((directory / f"member_{rank:03d}.json").read_text())
member = make_learner(cfg, meta["hparams"], index=rank)
before = member.pack().copy()
ckpt.load_member(directory, member)

_, params, _ = load_from_zip_file(directory / f"member_{rank:03d}.zip", device="cpu")
for key, value in params["policy"].items():
    assert torch.equal(member.model.policy.state_dict()[key], value), key
live_opt = member.model.policy.optimizer.state_dict()["state"]
for idx, st in params["policy.optimizer"]["state"].items():
    for field in ("step", "exp_avg", "exp_avg_sq"):
        assert torch.equal(live_opt[idx][field], st[field]), (idx, field)
assert member.num_timesteps == meta["num_timesteps"] > 0
assert member.hparams == meta["hparams"]
assert not np.array_equal(before.view(np.uint32), member.pack().view(np.uint32))
ok = comm.gather(True, root=0)
if rank == 0 and all(ok):
    print("RESUME-OK", flush=True)
