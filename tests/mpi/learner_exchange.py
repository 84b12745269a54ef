"""Run under mpiexec (3 ranks): members of A2C, SAC, TD3 and DQN (with observation and reward
normalisation) exchange their flat state over every registered transport (each with a rule it is not
the default of: broadcast a truncation plan, p2p a winner-takes-all one, ...); rank 0 checks
that each receiver now equals its donor bit for bit, component by component (policy incl. target
networks, every optimizer, SAC's log_ent_coef, DQN's exploration state, VecNormalize statistics),
and that everyone else is unchanged. Also checks comm.local_rank. Prints LEARNER-EXCHANGE-OK."""

import hashlib

import numpy as np
import torch
from mpi4py import MPI

from evo.comm import TRANSPORTS, local_rank, local_size, make_transport
from evo.config import CommonConfig
from evo.core.selection import plan_truncation, plan_wta
from evo.learners import Learner, learner_class

torch.set_num_threads(1)
comm = MPI.COMM_WORLD
rank, n = comm.Get_rank(), comm.Get_size()

ranks_here = comm.allgather((MPI.Get_processor_name(), local_rank(comm)))
node_size = local_size(comm)  # collective, like local_rank
if rank == 0:
    by_node: dict[str, list[int]] = {}
    for node, lr in ranks_here:
        by_node.setdefault(node, []).append(lr)
    assert all(sorted(v) == list(range(len(v))) for v in by_node.values()), ranks_here
    assert node_size == len(by_node[MPI.Get_processor_name()])

ENV = {"a2c": "CartPole-v1", "sac": "Pendulum-v1", "td3": "Pendulum-v1", "dqn": "CartPole-v1"}


def digest(m: Learner) -> dict[str, str]:
    """A hash of every component the flat state covers, read from SB3's own objects."""
    parts: dict[str, bytes] = {}
    for k, v in m.model.policy.state_dict().items():
        parts[f"policy.{k}"] = v.detach().cpu().numpy().tobytes()
    for i, opt in enumerate(m._optimizers()):
        for pid, st in opt.state_dict()["state"].items():
            for name, value in st.items():
                parts[f"opt{i}.{pid}.{name}"] = value.detach().cpu().numpy().tobytes()
    if m.algo == "sac":
        parts["log_ent_coef"] = m.model.log_ent_coef.detach().numpy().tobytes()
    if m.algo == "dqn":
        parts["eps"] = np.float64([m.model.exploration_rate, m.model._current_progress_remaining]).tobytes()
    parts["n_updates"] = str(m.model._n_updates).encode()
    for rms in ("obs_rms", "ret_rms"):
        r = getattr(m.vecnorm, rms)
        parts[rms] = np.asarray(r.mean).tobytes() + np.asarray(r.var).tobytes() + np.float64(r.count).tobytes()
    return {k: hashlib.sha1(v).hexdigest() for k, v in parts.items()}


for algo, env in ENV.items():
    cfg = CommonConfig(env_id=env, n_envs=2, n_steps=8, eval_episodes=1, seed=11, algo=algo, normalize_obs=True,
                       normalize_reward=True)
    hp = {"net_arch": [16, 16]}
    if algo != "a2c":
        hp.update(buffer_size=1000, learning_starts=8, batch_size=8)
    hp.update(learning_rate=1e-3 * (1 + rank), gamma=0.95 + 0.01 * rank)
    member = learner_class(algo)(cfg, hp, index=rank)
    for i, tname in enumerate(sorted(TRANSPORTS)):
        rule = ("truncation", "wta")[i % 2]
        member.reseed(rank)
        member.train(32)  # every member now differs in weights, optimizer state and statistics
        pre, pre_digest, pre_hp = member.pack().copy(), digest(member), dict(member.hparams)
        scores = [float((r * 7 + 3 + len(tname)) % n) for r in range(n)]
        transfers = plan_wta(scores) if rule == "wta" else plan_truncation(scores, 0.34, np.random.default_rng(5))
        transport = make_transport(tname, comm, member.flat_size)
        all_hp = comm.allgather(pre_hp)
        # every rank knows the whole plan here: each takes its own part of the transport's split
        received = transport.move_members(type(transport).split(transfers, n)[rank],
                                          lambda _m, buf, m=member: m.pack(buf))
        mine = [t for t in transfers if t.receiver == rank]
        if mine:
            member.unpack(received[rank])
            member.apply_hparams(all_hp[mine[0].donor])
        report = comm.gather((pre, pre_digest, member.pack().copy(), digest(member), member.live_hparams()), root=0)
        if rank == 0:
            donor_of = {t.receiver: t.donor for t in transfers}
            assert donor_of, (algo, tname, rule)
            for r, (_, pre_d, post, post_d, live) in enumerate(report):
                if r in donor_of:
                    d = donor_of[r]
                    assert np.array_equal(post.view(np.uint32), report[d][0].view(np.uint32)), (algo, rule, r)
                    diff = [k for k in post_d if post_d[k] != report[d][1][k]]
                    assert not diff, (algo, rule, r, diff[:5])
                    assert live["learning_rate"] == all_hp[d]["learning_rate"]
                else:
                    assert np.array_equal(post.view(np.uint32), report[r][0].view(np.uint32)), (algo, rule, r)
                    assert post_d == pre_d
    member.close()

if rank == 0:
    print("LEARNER-EXCHANGE-OK", flush=True)
