"""How close the Atari CNN's update runs to the CPU's arithmetic: each layer of pgrun's
``NatureCNN`` (as ``env=Pong-v5`` builds it: 4×84×84 uint8, channels-last) timed alone on
a minibatch, forward and forward + backward, with its multiply–adds counted, in float32
and in bfloat16 (``torch.autocast``, as ``policy.cnn_precision=bfloat16``).

    python benchmarks/cnn_floor.py                 # one thread, minibatch 256 (CleanRL's)
    python benchmarks/cnn_floor.py --threads 2 --batch 512
    python benchmarks/cnn_floor.py > docs/results/atari_speed/cnn_floor.md

A large matrix product in each precision gives the ceiling. A layer at it cannot be made
faster without doing less arithmetic or doing it in a cheaper format; this says how much of
PPO's update that leaves to gain.
GFLOP/s counts a multiply–add as 2; backward is ∂/∂input (all but the first layer, whose
input is the frames) and ∂/∂weight, each as many multiply–adds as the forward.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
from torch import nn


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def layers(batch: int) -> list[tuple[str, nn.Module, torch.Tensor, int, bool]]:
    """(name, layer, input, multiply–adds per forward, whether ∂/∂input is computed)."""
    from pgrun.policies import NatureCNN

    cnn = NatureCNN((4, 84, 84), channels_last=False)
    c1, c2, c3 = (m for m in cnn.convs if isinstance(m, nn.Conv2d))
    fc = cnn.dense[0]
    out = []
    x = torch.rand(batch, 4, 84, 84).contiguous(memory_format=torch.channels_last)
    for name, conv in (("conv1 8×8/4", c1), ("conv2 4×4/2", c2), ("conv3 3×3/1", c3)):
        with torch.no_grad():
            y = conv(x)
        macs = y[0].numel() * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        out.append((name, conv, x, macs * batch, conv is not c1))
        x = torch.relu(y)
    out.append(("dense 3136→512", fc, x.flatten(1), fc.in_features * fc.out_features * batch,
                True))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=15)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# NatureCNN layers against the CPU's ceiling\n\n`python benchmarks/cnn_floor.py "
          f"--threads {args.threads} --batch {args.batch}`, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}\n")
    print("| layer | precision | forward ms | GFLOP/s | forward + backward ms | GFLOP/s |")
    print("|---|---|---:|---:|---:|---:|")
    for precision, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.rand(2048, 2048, dtype=dtype), torch.rand(2048, 2048, dtype=dtype)
        ms = median_ms(lambda a=a, b=b: a @ b, 5)
        print(f"| 2048² matrix product (the ceiling) | {precision} | {ms:.1f} | "
              f"{2 * 2048 ** 3 / ms / 1e6:.0f} | | |")
    totals: dict[str, float] = {}
    for name, layer, x, macs, grad_in in layers(args.batch):
        for precision in ("float32", "bfloat16"):
            def forward(layer=layer, x=x, precision=precision):
                with torch.autocast("cpu", dtype=torch.bfloat16,
                                    enabled=precision == "bfloat16"):
                    return layer(x)

            xg = x.detach().requires_grad_(grad_in)

            def both(layer=layer, xg=xg, precision=precision):
                with torch.autocast("cpu", dtype=torch.bfloat16,
                                    enabled=precision == "bfloat16"):
                    y = layer(xg)
                y.float().sum().backward()
                layer.zero_grad(set_to_none=True)
                xg.grad = None

            with torch.no_grad():
                f_ms = median_ms(forward, args.reps)
            b_ms = median_ms(both, args.reps)
            flops_f = 2 * macs
            flops_b = flops_f * (3 if grad_in else 2)
            totals[precision] = totals.get(precision, 0.0) + b_ms
            print(f"| {name} | {precision} | {f_ms:.1f} | {flops_f / f_ms / 1e6:.0f} | "
                  f"{b_ms:.1f} | {flops_b / b_ms / 1e6:.0f} |")
    for precision, ms in totals.items():
        print(f"\nall four layers, forward + backward, {precision}: {ms:.1f} ms per minibatch")


if __name__ == "__main__":
    main()
