"""Images per second of the train step of VGG19 and ResNet-50 at CIFAR resolution.

    python benchmarks/bench_train_step.py [--batch 16] [--steps 3] [--repeats 3] [--bf16]

For each model: the masked step (the library default, and ``mask_forward=False``
as the IMP engine runs it) against the same step without any masking, measured
interleaved in one process; SGD momentum 0.9, weight decay 1e-4, 80% sparse
mask, augmentation and normalization on the device. If PyTorch is importable
(not a dependency), the same architecture as an eager PyTorch loop on the same
CPU, and the ratio. On a GPU, run with ``--batch 512 --bf16 --peak_tflops N``:
the achieved FLOP/s (XLA's count of the compiled step) against the card's peak.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import emit, interleaved, machine, unmasked_step_fn  # noqa: E402

from lth_jax import masks, objectives  # noqa: E402
from lth_jax.data.augment import image_preprocess  # noqa: E402
from lth_jax.models import get_model  # noqa: E402
from lth_jax.optim import OptimizerRecipe, make_optimizer  # noqa: E402
from lth_jax.train import create_train_state, init_variables, make_train_step  # noqa: E402

MODELS = {"vgg19": ("cifar_vgg_19", {}), "resnet50": ("resnet_50", {"stem": "cifar"})}


def step_flops(step_fn, *args) -> float | None:
    """XLA's own count of the FLOPs of one compiled step."""
    try:
        cost = step_fn.lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"]) if cost and cost.get("flops") else None
    except Exception:  # cost analysis is best-effort on some backends
        return None


def jax_bench(key: str, args) -> dict:
    name, kwargs = MODELS[key]
    dtype = jnp.bfloat16 if args.bf16 else jnp.float32
    model = get_model(name, 10, dtype=dtype, **kwargs)
    rng = np.random.default_rng(0)
    batch = {
        "x": jnp.asarray(rng.integers(0, 256, (args.batch, 32, 32, 3), dtype=np.uint8)),
        "y": jnp.asarray(rng.integers(0, 10, args.batch).astype(np.int32)),
    }
    params, stats = init_variables(model, jax.random.PRNGKey(0), batch["x"][:1])
    mask = masks.global_magnitude_prune(params, masks.init_mask(params), fraction=0.8)
    recipe = OptimizerRecipe(name="sgd", learning_rate=0.01, momentum=0.9, weight_decay=1e-4)
    objective = objectives.softmax_classification()
    prep = image_preprocess((0.49, 0.48, 0.45), (0.25, 0.24, 0.26), flip=True, dtype=dtype)
    tx = make_optimizer(recipe, 1, 1000)
    holders = {kind: [create_train_state(params, tx, mask=mask, batch_stats=stats)] for kind in ("masked", "masked_fast")}
    steps = {
        "masked": make_train_step(model, tx, objective, preprocess=prep, donate=True),
        "masked_fast": make_train_step(model, tx, objective, preprocess=prep, donate=True, mask_forward=False),
    }
    plain_tx, plain_step = unmasked_step_fn(model, objective, recipe, 1000, preprocess=prep)
    plain = [params, stats, plain_tx.init(params), jnp.asarray(0, jnp.int32)]
    flops = step_flops(plain_step, *plain, batch)

    def runner(kind):
        def run():
            s = holders[kind][0]
            for _ in range(args.steps):
                s, _ = steps[kind](s, batch)
            jax.block_until_ready(s.params)
            holders[kind][0] = s

        return run

    def run_plain():
        p, b, o, k = plain
        for _ in range(args.steps):
            p, b, o, k, _ = plain_step(p, b, o, k, batch)
        jax.block_until_ready(p)
        plain[:] = [p, b, o, k]

    t = interleaved({"masked": runner("masked"), "masked_fast": runner("masked_fast"), "unmasked": run_plain}, repeats=args.repeats)
    images = args.batch * args.steps
    out = {
        "bench": "train_step",
        "model": name,
        "batch": args.batch,
        "dtype": "bfloat16" if args.bf16 else "float32",
        "images_per_second_masked": round(images / t["masked"], 2),
        "images_per_second_masked_fast": round(images / t["masked_fast"], 2),
        "images_per_second_unmasked": round(images / t["unmasked"], 2),
        "overhead_ratio": round(t["masked"] / t["unmasked"], 3),
        "overhead_ratio_fast": round(t["masked_fast"] / t["unmasked"], 3),
        "flops_per_step": flops,
        **machine(),
    }
    if flops:
        achieved = flops * args.steps / t["masked_fast"]
        out["achieved_tflops"] = round(achieved / 1e12, 4)
        if args.peak_tflops:
            out["fraction_of_peak"] = round(achieved / (args.peak_tflops * 1e12), 3)
    return out


def torch_bench(key: str, args) -> dict | None:
    """The same architecture and masked SGD step, eager PyTorch on the CPU."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)

    def vgg19():
        layers, channels = [], 3
        for spec in (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512):
            if spec == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, spec, 3, padding=1), nn.BatchNorm2d(spec), nn.ReLU()]
                channels = spec
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width),
            )
            same = stride == 1 and cin == 4 * width
            self.short = nn.Sequential() if same else nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width))

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    def resnet50():
        layers, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
        for s, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, 2 if s > 0 and b == 0 else 1))
                cin = 4 * width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 10))

    model = (vgg19 if key == "vgg19" else resnet50)().train()
    keep = {p: (torch.rand_like(p) > 0.8).float() for p in model.parameters() if p.dim() > 1}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))

    def run():
        for _ in range(args.steps):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            for p, m in keep.items():
                p.grad.mul_(m)
            optimizer.step()
            with torch.no_grad():
                for p, m in keep.items():
                    p.mul_(m)

    run()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"images_per_second_torch_eager_masked": round(args.batch * args.steps / sorted(times)[len(times) // 2], 2), "torch": torch.__version__}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--peak_tflops", type=float, default=0.0, help="the device's peak, e.g. 989 for an H100's dense bf16")
    parser.add_argument("--models", default="vgg19,resnet50")
    args = parser.parse_args()
    for key in args.models.split(","):
        out = jax_bench(key, args)
        torch_out = torch_bench(key, args) if jax.default_backend() == "cpu" else None
        if torch_out:
            out.update(torch_out)
            out["jax_over_torch"] = round(out["images_per_second_masked_fast"] / torch_out["images_per_second_torch_eager_masked"], 2)
        emit(out)


if __name__ == "__main__":
    main()
