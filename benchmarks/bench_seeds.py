"""Seeds together against one at a time: find_ticket with ``--config.seeds`` as whole processes, beside
one seed and beside the fused floor of the same arithmetic.

    python benchmarks/bench_seeds.py [--seeds 16] [--repeats 2] [--input 8,8,1] [--sequential] [--grouped] [--floor_only]
                                     [--baseline DIR]

Paths, each a fresh workdir with a warm compilation cache (a warm-up run of each first):
- ``one``: ``find_ticket --config=find_ticket_digits_lenet --config.input_shape=INPUT`` (one seed);
- ``together``: the same with ``--config.seeds=0,...,N-1`` (replicas of one program where the size rule says so);
- ``sequential`` (with ``--sequential``): the same seeds with ``--config.replicas=sequential``.
The runs alternate (one, together, one, together, ...); the ratio is of medians. ``--baseline DIR``:
the one and together runs of another checkout (``git archive`` of a commit) alternate with these.

The floor probe: the run's training steps (every level trains all its epochs) of N replicas
of LeNet-300-100 as one jitted program (``vmap`` over replicas, ``lax.scan`` over the steps,
data on the device, SGD with momentum), timed in this process; the floor of one seed is the
same with one replica.

``--grouped`` adds the other grouped paths, each beside its one-at-a-time twin (alternating whole processes):
transfer (``transfer_digits`` on INPUT, auto against ``--config.recipe.replicas=sequential``) and instability
(``instability_digits_lenet`` cut to 4 seeds, levels 0 and 3, k = 0, 5, 23; ``pairs_per_program`` 0 against 1).
Prints JSON lines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, machine  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(workdir: str, input_shape: str, seeds: int | None, sequential: bool = False) -> list[str]:
    extra = [] if seeds is None else [f"--config.seeds={','.join(map(str, range(seeds)))}"]
    extra += ["--config.replicas=sequential"] if sequential else []
    return [sys.executable, "-m", "experiments.find_ticket", "--config=find_ticket_digits_lenet", f"--config.input_shape={input_shape}",
            f"--workdir={workdir}", *extra]


def timed(cmd: list[str], root: str = ROOT) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - start


def floor_seconds(replicas: int, input_shape: tuple[int, ...], steps: int, batch: int = 64) -> float:
    """Seconds of ``steps`` fused SGD steps of ``replicas`` LeNet-300-100s (one program, data on the device)."""
    import jax
    import jax.numpy as jnp
    import optax

    from lth_jax.models import get_model

    model = get_model("lenet_300_100", 10)
    x = jnp.zeros((1,) + input_shape, jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(0), replicas)
    params = jax.vmap(lambda k: model.init(k, x, train=False)["params"])(keys)
    tx = optax.sgd(0.05, momentum=0.9)
    opt = jax.vmap(tx.init)(params)
    xs = jax.random.normal(jax.random.PRNGKey(1), (steps % 512 or 512, batch) + input_shape)
    ys = jax.random.randint(jax.random.PRNGKey(2), (xs.shape[0], batch), 0, 10)

    def step(p, o, i):
        def loss(q):
            logits = model.apply({"params": q}, xs[i % xs.shape[0]], train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, ys[i % xs.shape[0]]).mean()

        updates, o = tx.update(jax.grad(loss)(p), o, p)
        return optax.apply_updates(p, updates), o

    @jax.jit
    def run(p, o):
        return jax.lax.scan(lambda carry, i: (jax.vmap(step, in_axes=(0, 0, None))(*carry, i), None), (p, o), jnp.arange(steps))[0]

    jax.block_until_ready(run(params, opt))  # compiled
    start = time.perf_counter()
    jax.block_until_ready(run(params, opt))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--input", default="8,8,1", help="the model's input shape: 8,8,1 (the digits' pixels) or 28,28,1")
    parser.add_argument("--sequential", action="store_true", help="also the seeds one at a time (N times one seed's work)")
    parser.add_argument("--floor_only", action="store_true")
    parser.add_argument("--grouped", action="store_true", help="also transfer and instability, grouped against one at a time")
    parser.add_argument("--baseline", help="a checkout (e.g. a `git archive` of a commit) whose one and together runs alternate with these")
    args = parser.parse_args()
    if args.baseline and not os.path.isfile(os.path.join(args.baseline, "experiments", "find_ticket.py")):
        parser.error(f"--baseline {args.baseline!r} is not a checkout of lth_jax (no experiments/find_ticket.py in it)")
    input_shape = tuple(int(v) for v in args.input.split(","))
    # find_ticket_digits_lenet: 1437 training images, batch 64 (23 steps), 20 epochs, 11 levels
    steps = 23 * 20 * 11
    floors = {n: floor_seconds(n, input_shape, steps) for n in (1, args.seeds)}
    emit({"bench": "seeds_floor", **machine(), "input": args.input, "steps": steps, "floor_one_seconds": round(floors[1], 3),
          f"floor_{args.seeds}_seconds": round(floors[args.seeds], 3), "floor_ratio": round(floors[args.seeds] / floors[1], 2)})
    if args.floor_only:
        return
    paths = {"one": None, "together": args.seeds} | ({"sequential": args.seeds} if args.sequential else {})
    roots = {name: ROOT for name in paths}
    if args.baseline:
        paths |= {"one_baseline": None, "together_baseline": args.seeds}
        roots |= {"one_baseline": os.path.abspath(args.baseline), "together_baseline": os.path.abspath(args.baseline)}
    times: dict[str, list[float]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as tmp:
        for name, seeds in paths.items():  # warm-up: every program compiled into the cache
            timed(command(os.path.join(tmp, f"warm_{name}"), args.input, seeds, name == "sequential"), roots[name])
        for repeat in range(args.repeats):
            for name, seeds in paths.items():
                times[name].append(timed(command(os.path.join(tmp, f"{name}_{repeat}"), args.input, seeds, name == "sequential"), roots[name]))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    record = {"bench": "seeds_find_ticket", **machine(), "input": args.input, "seeds": args.seeds, "repeats": args.repeats,
              **{f"{name}_seconds": [round(t, 2) for t in ts] for name, ts in times.items()},
              "together_over_one": round(medians["together"] / medians["one"], 2),
              "together_over_floor": round(medians["together"] / floors[args.seeds], 2),
              "one_over_floor": round(medians["one"] / floors[1], 2)}
    if args.sequential:
        record["sequential_over_together"] = round(medians["sequential"] / medians["together"], 2)
    if args.baseline:
        record |= {"baseline": args.baseline, "baseline_together_over_one": round(medians["together_baseline"] / medians["one_baseline"], 2),
                   "together_over_baseline": round(medians["together"] / medians["together_baseline"], 3),
                   "one_over_baseline": round(medians["one"] / medians["one_baseline"], 3)}
    emit(record)
    if args.grouped:
        for name, grouped, apart in GROUPED:
            emit(paired(name, [*grouped, f"--config.recipe.input_shape={args.input}"] if name == "transfer" else grouped,
                        [*apart, f"--config.recipe.input_shape={args.input}"] if name == "transfer" else apart, args.repeats))


GROUPED = [  # (path, grouped command, one-at-a-time command), without --workdir
    ("transfer", ["-m", "experiments.transfer", "--config=experiments/configs/transfer_digits.py", "--report=false"],
     ["-m", "experiments.transfer", "--config=experiments/configs/transfer_digits.py", "--report=false", "--config.recipe.replicas=sequential"]),
    ("instability", ["-m", "experiments.instability", "--config=instability_digits_lenet", "--config.seeds=0,1,2,3", "--config.levels=0,3",
                     "--config.recipe.pruning.levels=3", "--config.rewind_steps=0,5it,1ep", "--config.pairs_per_program=0"],
     ["-m", "experiments.instability", "--config=instability_digits_lenet", "--config.seeds=0,1,2,3", "--config.levels=0,3",
      "--config.recipe.pruning.levels=3", "--config.rewind_steps=0,5it,1ep", "--config.pairs_per_program=1"]),
]


def paired(name: str, grouped: list[str], apart: list[str], repeats: int) -> dict:
    """Whole processes, grouped and one at a time alternating, each in a fresh workdir (a warm-up of each first)."""
    times = {"grouped": [], "apart": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(-1, repeats):
            for kind, args in (("grouped", grouped), ("apart", apart)):
                seconds = timed([sys.executable, *args, f"--workdir={os.path.join(tmp, f'{kind}_{repeat}')}"])
                if repeat >= 0:
                    times[kind].append(seconds)
    return {"bench": f"seeds_{name}", **machine(), **{f"{k}_seconds": [round(t, 2) for t in v] for k, v in times.items()},
            "grouped_over_apart": round(statistics.median(times["grouped"]) / statistics.median(times["apart"]), 2)}


if __name__ == "__main__":
    main()
