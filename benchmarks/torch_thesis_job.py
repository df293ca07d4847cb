"""The thesis job as an eager PyTorch loop: the baseline of ``bench_thesis_job.py``.

    python benchmarks/torch_thesis_job.py --seeds 1 --epochs 100

Moons+Circles (the same arrays as lth_jax), MLP (4, 57, 57, 2), the extension
trajectory's 10 levels, ``--epochs`` per level with evaluation every epoch, Adam
1e-3 (fused), batch 64, global magnitude pruning to the exact count and reset to
the initialization; tensors in memory, one thread. Seeds run one after the other.
Prints one JSON line. PyTorch is not a dependency of lth_jax (``pip install torch``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lth_jax.data.synthetic import moons_circles  # noqa: E402
from lth_jax.trajectory import extension_shape, extension_trajectory  # noqa: E402

BASE, LEVEL = (4, 8, 8, 2), 9


def run_seed(torch, data, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    shape, counts = extension_shape(BASE, LEVEL), extension_trajectory(BASE, LEVEL)
    layers = [torch.nn.Linear(a, b) for a, b in zip(shape[:-1], shape[1:])]
    init = [(layer.weight.detach().clone(), layer.bias.detach().clone()) for layer in layers]
    masks = [torch.ones_like(layer.weight, dtype=torch.bool) for layer in layers]
    x, y = torch.tensor(data.train.x), torch.tensor(data.train.y)
    xt, yt = torch.tensor(data.test.x), torch.tensor(data.test.y)
    params = [p for layer in layers for p in layer.parameters()]
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def forward(h):
        for i, layer in enumerate(layers):
            h = torch.nn.functional.linear(h, layer.weight * masks[i], layer.bias)
            if i < len(layers) - 1:
                h = torch.relu(h)
        return h

    generator = torch.Generator().manual_seed(seed)
    test_loss = None
    for level in range(len(counts)):
        if level:
            scores = torch.cat([torch.where(m, l.weight.detach().abs(), torch.inf).flatten() for l, m in zip(layers, masks)])
            flat = torch.cat([m.flatten() for m in masks])
            flat[torch.topk(scores, counts[level - 1] - counts[level], largest=False).indices] = False
            offset = 0
            for i, m in enumerate(masks):
                masks[i] = flat[offset : offset + m.numel()].reshape(m.shape)
                offset += m.numel()
            with torch.no_grad():
                for layer, (w, b), m in zip(layers, init, masks):
                    layer.weight.copy_(w * m)
                    layer.bias.copy_(b)
        optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), 64):
                idx = order[start : start + 64]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(forward(x[idx]), y[idx]).backward()
                optimizer.step()
            with torch.no_grad():
                test_loss = float(loss_fn(forward(xt), yt))
    return test_loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    data = moons_circles()
    started = time.perf_counter()
    losses = [run_seed(torch, data, args.epochs, seed) for seed in range(args.seeds)]
    print(json.dumps({"torch": torch.__version__, "seeds": args.seeds, "loop_seconds": round(time.perf_counter() - started, 3), "last_test_loss": losses[-1]}))


if __name__ == "__main__":
    main()
