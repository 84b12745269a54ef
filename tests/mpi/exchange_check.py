"""Run under mpiexec: one real exchange with evo's own decide() + transport, then check on rank 0
that every receiver's weights and optimizer state equal its donor's bit-exactly, that it took the
donor's hyperparameters before exploring (and the explored ones after), and that every other
member is untouched. Usage: exchange_check.py STRATEGY [nan]"""

import json
import math
import sys
from types import SimpleNamespace

import numpy as np
from mpi4py import MPI

from evo.comm import make_transport, root_decides
from evo.config import CommonConfig
from evo.core.selection import truncation_size
from evo.core.space import default_space
from evo.member import Member
from evo.pbt import decide, exchange_phase, rank_payloads

strategy = sys.argv[1]
with_nan = len(sys.argv) > 2 and sys.argv[2] == "nan"
comm = MPI.COMM_WORLD
rank, n = comm.Get_rank(), comm.Get_size()

cfg = CommonConfig(env_id="CartPole-v1", n_envs=2, n_steps=64, eval_episodes=1, seed=3)
space = default_space(cfg.rollout_size)
member = Member(cfg, space.sample(np.random.default_rng([3, rank])), index=rank)
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
decisions = root_decides(comm, lambda: decide(strategy, 0, scores, all_hp, space, 0.25, 3))
transport = make_transport(strategy, comm, member.flat_size)
payload = comm.scatter(rank_payloads(strategy, decisions, n) if rank == 0 else None, root=0)
run = SimpleNamespace(transport=transport, slot=lambda m: SimpleNamespace(member=member))
mine = exchange_phase(run, payload).get(rank)  # type: ignore[arg-type]

post = member.pack()
opt_state = member.model.policy.optimizer.state_dict()["state"]
post_state = {k: v.detach().numpy().copy() for k, v in member.model.policy.state_dict().items()}
report = {
    "pre": pre, "post": post, "pre_hp": pre_hp, "live": member.live_hparams(), "received": mine is not None,
    "pre_state": pre_state, "post_state": post_state,
    "adam_step": sorted({float(s["step"]) for s in opt_state.values()}),
}
gathered = comm.gather(report, root=0)

if rank == 0:
    by_receiver = {d.receiver: d for d in decisions}
    assert decisions, "the plan is empty"
    if strategy == "wta":
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
    print("EXCHANGE-OK " + json.dumps({"strategy": strategy, "n": n,
                                       "plan": [[d.receiver, d.donor] for d in decisions]}), flush=True)
