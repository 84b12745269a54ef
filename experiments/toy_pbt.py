"""The toy example of the PBT paper (Jaderberg et al. 2017, "Population Based Training of Neural
Networks", Fig. 2), with evo's own selection and explore step.

Maximise the real objective ``Q(θ) = 1.2 - (θ0² + θ1²)``, which a member cannot see directly:
it does gradient ascent on the surrogate ``Q̂(θ|h) = 1.2 - (h0 θ0² + h1 θ1²)``, whose
hyperparameters ``h`` decide which coordinates it actually improves. Two members start at
``θ = (0.9, 0.9)`` with ``h = (1, 0)`` and ``h = (0, 1)``: each alone can only shrink one
coordinate, so each alone ends near ``Q = 1.2 - 0.81 = 0.39``. Every ``--ready`` steps the real
``Q`` is evaluated and, depending on the method,

* ``pbt``:          exploit (the worse member copies θ and h of the better one,
                    :func:`evo.core.selection.plan_wta`) then explore (the copied h is perturbed with
                    :func:`evo.core.space.explore` on a :class:`evo.core.space.Space` of ``h0, h1 in [0, 1]``)
* ``explore``:      explore only: every member perturbs its own h, nobody copies
* ``exploit``:      exploit only: copy θ and h of the better member, h unchanged
* ``grid``:         grid search: fixed h from ``--grid`` (default: the two starting points, the
                    same compute as the population), no exploit and no explore; the best is reported

Run as one process (both members simulated in-process), or with ``mpiexec -n 2 python
experiments/toy_pbt.py`` (one member per rank: scores travel with ``allgather``, decisions with
:func:`evo.comm.root_decides`, θ with evo's weight transport). Both give identical numbers: all
randomness comes from evo's ``explore_rng(seed, round, member)`` and θ travels as float32 in
both modes, as member weights do in evo.

Prints the final Q of each method (``FINAL_Q`` is a JSON line at full precision) and plots θ
trajectories on the contours of Q and Q over steps, like the paper's figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from evo.core.selection import Transfer, explore_rng, plan_wta
from evo.core.space import ExploreSettings, Param, Space, explore

METHODS = ("pbt", "explore", "exploit", "grid")
TITLES = {"pbt": "PBT", "explore": "explore only", "exploit": "exploit only", "grid": "grid search"}
THETA0 = (0.9, 0.9)
INIT_H = ({"h0": 1.0, "h1": 0.0}, {"h0": 0.0, "h1": 1.0})


def q_true(theta: np.ndarray) -> float:
    """The real objective Q(θ) = 1.2 - (θ0² + θ1²)."""
    return float(1.2 - (theta[0] ** 2 + theta[1] ** 2))


def grad_surrogate(theta: np.ndarray, h: dict[str, float]) -> np.ndarray:
    """∇θ Q̂(θ|h) = -2 (h0 θ0, h1 θ1)."""
    return -2.0 * np.array([h["h0"], h["h1"]]) * theta


def h_space(resample_probability: float, factors: Sequence[float]) -> Space:
    params = {n: Param(n, kind="float", scale="linear", low=0.0, high=1.0) for n in ("h0", "h1")}
    space = Space(params=params, explore_settings=ExploreSettings(tuple(factors), resample_probability))
    space.validate()
    return space


# -- where the members live -----------------------------------------------------------------------
class Local:
    """Every member in this process."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rank = 0

    def assign(self, count: int) -> list[int]:
        return list(range(count))

    def allgather(self, values: dict[int, Any]) -> list[Any]:
        return [values[i] for i in range(self.n)]

    def decide(self, fn: Callable[[], Any]) -> Any:
        return fn()

    def move(self, transfers: Sequence[Transfer], theta: dict[int, np.ndarray]) -> None:
        # Like evo's transport: the donor's state is packed into a float32 buffer first.
        sent = {t.donor: theta[t.donor].astype(np.float32) for t in transfers}
        for t in transfers:
            theta[t.receiver] = sent[t.donor].astype(np.float64)

    def gather(self, values: dict[int, Any]) -> dict[int, Any] | None:
        return dict(values)


class Ranks:
    """One member per MPI rank."""

    def __init__(self, comm: Any, n: int) -> None:
        from evo.comm import make_transport

        self.comm = comm
        self.n = n
        self.rank = comm.Get_rank()
        self.transport = make_transport("broadcast", comm, 2)

    def assign(self, count: int) -> list[int]:
        """Members of this rank: one per rank for the population, round robin for a grid."""
        return [i for i in range(count) if i % self.comm.Get_size() == self.rank]

    def allgather(self, values: dict[int, Any]) -> list[Any]:
        return list(self.comm.allgather(values[self.rank]))

    def decide(self, fn: Callable[[], Any]) -> Any:
        from evo.comm import root_decides

        return root_decides(self.comm, fn)

    def move(self, transfers: Sequence[Transfer], theta: dict[int, np.ndarray]) -> None:
        def pack(member: int, buf: np.ndarray) -> None:
            buf[:] = theta[member]

        plan = type(self.transport).split(transfers, self.comm.Get_size())[self.rank]
        received = self.transport.move_members(plan, pack).get(self.rank)
        if received is not None:
            theta[self.rank] = received.astype(np.float64)

    def gather(self, values: dict[int, Any]) -> dict[int, Any] | None:
        parts = self.comm.gather(values, root=0)
        if parts is None:
            return None
        out: dict[int, Any] = {}
        for p in parts:
            out.update(p)
        return out


# -- one method ---------------------------------------------------------------------------------
def simulate(method: str, where: Any, args: argparse.Namespace, space: Space) -> dict[str, Any] | None:
    """Run ``method`` for the members in ``where.mine``; rank 0 gets every member's history."""
    if method == "grid":
        hs = [dict(h) for h in args.grid_points]
    else:
        hs = [dict(h) for h in INIT_H]
    mine = where.assign(len(hs))
    theta = {i: np.array(THETA0, dtype=np.float64) for i in mine}
    h = {i: hs[i] for i in mine}
    hist = {i: {"theta": [theta[i].tolist()], "jump": [False], "q": [[0, q_true(theta[i])]], "h": [[0, dict(h[i])]]}
            for i in mine}
    events: list[list[int]] = []
    for step in range(1, args.steps + 1):
        for i in mine:
            theta[i] = theta[i] + args.lr * grad_surrogate(theta[i], h[i])
            hist[i]["theta"].append(theta[i].tolist())
            hist[i]["jump"].append(False)
        if step % args.ready:
            continue
        rnd = step // args.ready
        scores = {i: q_true(theta[i]) for i in mine}
        for i in mine:
            hist[i]["q"].append([step, scores[i]])
        if step == args.steps or method == "grid":
            continue
        if method == "explore":
            for i in mine:
                h[i] = explore(h[i], space, explore_rng(args.seed, rnd, i))[0]
                hist[i]["h"].append([step, dict(h[i])])
            continue
        all_scores = where.allgather(scores)
        all_h = where.allgather(h)

        def decide(all_scores: list[float] = all_scores, all_h: list[dict[str, float]] = all_h,
                   rnd: int = rnd) -> list[tuple[Transfer, dict[str, float]]]:
            out = []
            for t in plan_wta(all_scores):
                if method == "pbt":
                    new = explore(all_h[t.donor], space, explore_rng(args.seed, rnd, t.receiver))[0]
                else:
                    new = dict(all_h[t.donor])
                out.append((t, new))
            return out

        decisions = where.decide(decide)
        where.move([t for t, _ in decisions], theta)
        for t, new in decisions:
            events.append([step, t.donor, t.receiver])
            if t.receiver in mine:
                h[t.receiver] = new
                hist[t.receiver]["theta"].append(theta[t.receiver].tolist())
                hist[t.receiver]["jump"].append(True)
                hist[t.receiver]["h"].append([step, dict(new)])
    members = where.gather(hist)
    if members is None:
        return None
    final = max(m["q"][-1][1] for m in members.values())
    return {"members": {i: members[i] for i in sorted(members)}, "events": events, "final_q": final,
            "h": [hs[i] for i in sorted(members)]}


# -- plot -------------------------------------------------------------------------------------------
def plot(results: dict[str, dict[str, Any]], args: argparse.Namespace, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(2, len(METHODS), figsize=(4.2 * len(METHODS), 9.0),
                             gridspec_kw={"height_ratios": [1.2, 1]})
    grid = np.linspace(-0.05, 1.0, 200)
    x, y = np.meshgrid(grid, grid)
    z = 1.2 - (x ** 2 + y ** 2)
    colors = ["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9"]
    for col, method in enumerate(METHODS):
        res = results[method]
        ax = axes[0][col]
        cs = ax.contour(x, y, z, levels=np.linspace(-0.6, 1.2, 10), colors="0.6", linewidths=0.8)
        ax.clabel(cs, fontsize=7, fmt="%.1f")
        for i, m in res["members"].items():
            pts = np.array(m["theta"])
            c = colors[i % len(colors)]
            hh = res["h"][i]
            label: str | None = f"member {i} (start h=({hh['h0']:g}, {hh['h1']:g}))"
            start = 0
            for k in range(1, len(pts)):
                if m["jump"][k]:
                    ax.plot(pts[start:k, 0], pts[start:k, 1], "-", color=c, linewidth=1.5, label=label)
                    label = None
                    ax.plot(pts[k - 1:k + 1, 0], pts[k - 1:k + 1, 1], ":", color=c, linewidth=1)
                    start = k
            ax.plot(pts[start:, 0], pts[start:, 1], "-", color=c, linewidth=1.5, label=label)
            ax.plot(pts[-1, 0], pts[-1, 1], "o", color=c, ms=5)
        ax.plot([0], [0], "k*", ms=10, label="optimum θ = (0, 0)")
        ax.set_xlim(-0.05, 1.0)
        ax.set_ylim(-0.05, 1.0)
        ax.set_aspect("equal")
        ax.set_xlabel("θ0")
        ax.set_ylabel("θ1")
        ax.set_title(f"{TITLES[method]}: θ on contours of Q", fontsize=10)
        if col == 0:
            handles, _ = ax.get_legend_handles_labels()
            handles.append(Line2D([], [], color="0.3", linestyle=":", label="θ copied from the better member"))
            fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
        ax2 = axes[1][col]
        for i, m in res["members"].items():
            q = np.array(m["q"])
            ax2.plot(q[:, 0], q[:, 1], "-o", ms=3, color=colors[i % len(colors)], label=f"member {i}")
        ax2.axhline(1.2, color="k", linestyle=":", linewidth=1, label="max Q = 1.2")
        ax2.set_ylim(-0.5, 1.25)
        ax2.set_xlabel("gradient step")
        ax2.set_ylabel("Q(θ)")
        ax2.set_title(f"{TITLES[method]}: final Q = {res['final_q']:.4f}", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"PBT toy example (Jaderberg et al. 2017, Fig. 2): ascend Q̂(θ|h) = 1.2 − (h0θ0² + h1θ1²), "
                 f"evaluate Q(θ) = 1.2 − (θ0² + θ1²) every {args.ready} steps; lr {args.lr}, seed {args.seed}; "
                 f"explore: {args.perturb_factors} or resample (p={args.resample_probability})", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)


# -- command line ----------------------------------------------------------------------------------
def parse_grid(text: str) -> list[dict[str, float]]:
    points = []
    for part in text.split(";"):
        a, b = (float(v) for v in part.split(","))
        if not (0 <= a <= 1 and 0 <= b <= 1):
            raise argparse.ArgumentTypeError(f"grid point {part!r} outside [0, 1]²")
        points.append({"h0": a, "h1": b})
    return points


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=60, help="gradient steps per member")
    p.add_argument("--ready", type=int, default=4, help="evaluate Q (and exploit/explore) every this many steps")
    p.add_argument("--lr", type=float, default=0.02, help="gradient ascent step size")
    p.add_argument("--seed", type=int, default=0, help="seed of the explore rngs")
    p.add_argument("--resample-probability", type=float, default=0.25,
                   help="explore: chance to resample h_i uniformly in [0, 1] instead of perturbing it")
    p.add_argument("--perturb-factors", type=float, nargs="+", default=[0.8, 1.2],
                   help="explore: multiply h_i by one of these")
    p.add_argument("--grid", type=parse_grid, default=parse_grid("1,0;0,1"), dest="grid_points",
                   help="grid search points 'h0,h1;h0,h1;...' (default: the population's two starting points)")
    p.add_argument("--out", default="toy_pbt.png", help="figure path")
    p.add_argument("--no-plot", action="store_true", help="skip the figure")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    space = h_space(args.resample_probability, args.perturb_factors)
    comm = None
    try:
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_size() > 1:
            comm = MPI.COMM_WORLD
    except ImportError:
        pass
    if comm is not None and comm.Get_size() != len(INIT_H):
        if comm.Get_rank() == 0:
            print(f"toy_pbt: error: run with mpiexec -n {len(INIT_H)} (one member per rank) or as one process",
                  file=sys.stderr)
        return 2
    where: Any = Ranks(comm, len(INIT_H)) if comm is not None else Local(len(INIT_H))
    results = {m: simulate(m, where, args, space) for m in METHODS}
    if where.rank != 0:
        return 0
    final = {m: r["final_q"] for m, r in results.items() if r is not None}
    mode = f"{comm.Get_size()} MPI ranks" if comm is not None else "one process"
    print(f"PBT toy example ({mode}): {args.steps} steps, Q evaluated every {args.ready}, lr {args.lr}, "
          f"seed {args.seed}")
    for m in METHODS:
        extra = f" (best of {len(args.grid_points)} grid points)" if m == "grid" else ""
        print(f"  {TITLES[m]:<13} final Q = {final[m]:.6f}{extra}")
    print("FINAL_Q " + json.dumps(final))
    if not args.no_plot:
        plot({m: r for m, r in results.items() if r is not None}, args, args.out)
        print(f"figure: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
