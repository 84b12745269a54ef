"""Run under mpiexec: one real exchange of PPO members (one per rank) with evo's pure decide()
(evo.core.decide: a selection rule + explore) and one transport, then check on rank 0 that every
receiver's weights and optimizer state equal its donor's bit-exactly, that it took the donor's
hyperparameters before exploring (and the explored ones after), and that every other member is
untouched. Usage: exchange_check.py RULE TRANSPORT [nan]"""

import json
import math
import sys

import numpy as np
from mpi4py import MPI

from evo.comm import make_transport, root_decides, scatter_decisions
from evo.config import CommonConfig
from evo.core.decide import decide
from evo.core.selection import Transfer, truncation_size
from evo.core.space import default_space
from evo.learners import learner_class

rule, transport_name = sys.argv[1], sys.argv[2]
with_nan = len(sys.argv) > 3 and sys.argv[3] == "nan"
comm = MPI.COMM_WORLD
rank, n = comm.Get_rank(), comm.Get_size()

cfg = CommonConfig(env_id="CartPole-v1", n_envs=2, n_steps=64, eval_episodes=1, seed=3)
space = default_space(cfg.rollout_size)
member = learner_class(cfg.algo)(cfg, space.sample(np.random.default_rng([3, rank])), index=rank)
member.reseed(0)
member.train(cfg.rollout_size)  # every member now has its own weights, moments and step counts
pre = member.pack().copy()
pre_hp = dict(member.hparams)
pre_state = {k: v.detach().numpy().copy() for k, v in member.model.policy.state_dict().items()}

# A fixed, non-monotonic ranking (and a failed member if asked) so plans are not trivially by index.
scores = [float((r * 5 + 2) % n) + 0.25 * (r % 3) for r in range(n)]
if with_nan:
    scores[1 % n] = math.nan
all_hp = comm.allgather(pre_hp)
decisions = root_decides(comm, lambda: decide(rule, 0, scores, all_hp, space, 0.25, 3))
transport = make_transport(transport_name, comm, member.flat_size)
parts = type(transport).split([Transfer(d.receiver, d.donor) for d in decisions], n) if rank == 0 else None
received = transport.move_members(scatter_decisions(comm, parts), lambda m, buf: member.pack(buf))
mine = [d for d in decisions if d.receiver == rank]
assert set(received) == {d.receiver for d in mine}, (rank, sorted(received))
if mine:  # as the loop applies a copy: the donor's flat state, then the explored hyperparameters
    member.unpack(received[rank])
    member.apply_hparams(mine[0].hparams_after)

post = member.pack()
opt_state = member.model.policy.optimizer.state_dict()["state"]
post_state = {k: v.detach().numpy().copy() for k, v in member.model.policy.state_dict().items()}
report = {
    "pre": pre, "post": post, "pre_hp": pre_hp, "live": member.live_hparams(), "received": bool(mine),
    "pre_state": pre_state, "post_state": post_state,
    "adam_step": sorted({float(s["step"]) for s in opt_state.values()}),
}
gathered = comm.gather(report, root=0)

if rank == 0:
    by_receiver = {d.receiver: d for d in decisions}
    assert decisions, "the plan is empty"
    if rule == "wta":
        assert len(decisions) == n - 1 and len({d.donor for d in decisions}) == 1
    else:
        k = truncation_size(n, 0.25)
        assert len(decisions) >= k
    for r, rep in enumerate(gathered):
        if r in by_receiver:
            d = by_receiver[r]
            donor = gathered[d.donor]
            assert rep["received"], f"rank {r} should have received"
            assert np.array_equal(rep["post"].view(np.uint32), donor["pre"].view(np.uint32)), \
                f"rank {r}: flat state differs from donor {d.donor}'s"
            for key, value in donor["pre_state"].items():
                assert np.array_equal(rep["post_state"][key].view(np.uint32), value.view(np.uint32)), key
            assert rep["adam_step"] == donor["adam_step"]
            assert d.donor_hparams == donor["pre_hp"], "receiver did not start from the donor's hparams"
            for name, value in d.hparams_after.items():
                assert math.isclose(rep["live"][name], value, rel_tol=1e-12), (name, rep["live"][name], value)
            assert d.hparams_before == rep["pre_hp"]
        else:
            assert not rep["received"]
            assert np.array_equal(rep["post"].view(np.uint32), rep["pre"].view(np.uint32)), f"rank {r} changed"
            for name, value in rep["pre_hp"].items():
                assert math.isclose(rep["live"][name], value, rel_tol=1e-12), (r, name)
    print("EXCHANGE-OK " + json.dumps({"rule": rule, "transport": transport_name, "n": n,
                                       "plan": [[d.receiver, d.donor] for d in decisions]}), flush=True)
