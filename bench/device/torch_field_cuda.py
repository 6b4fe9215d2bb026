"""The PFGM field target in PyTorch on the GPU machine's own CUDA: the opponent TorchSharp cannot be there.

Same shapes and input distributions as bench/PoissonFlow.Bench (not the same random values), float32, gamma 5.
Prints a markdown table: mean time of 20 calls after 3 warm-ups (CUDA events), GFLOP/s with 5*B*M*N FLOPs, and the
peak memory PyTorch allocated. The official broadcast formula runs only where its temporaries fit.
"""
import math
import sys

import torch


def tuned(x, z, y, gamma):
    n = x.shape[1]
    d2 = torch.cdist(x, y).square_().add_(z.square().unsqueeze(1))
    w = torch.log_softmax(d2.log_().mul_(-(n + 1) / 2), dim=1).exp_()
    e = torch.cat([torch.mm(w, y).sub_(x), -z.unsqueeze(1)], dim=1)
    return e.mul_(math.sqrt(n)).div_(e.norm(dim=1, keepdim=True).add_(gamma))


def official(x, z, y, gamma):  # Poisson_flow/losses.py, line for line
    n = x.shape[1]
    p = torch.cat([x, z.unsqueeze(1)], dim=1)
    q = torch.cat([y, torch.zeros(len(y), 1, device=y.device)], dim=1)
    dist = torch.sum((p.unsqueeze(1) - q) ** 2, dim=[-1]).sqrt()
    dist = torch.min(dist, dim=1, keepdim=True)[0] / (dist + 1e-7)
    dist = (dist ** (n + 1))[:, :, None]
    coeff = dist / (torch.sum(dist, dim=1, keepdim=True) + 1e-7)
    e = torch.sum(coeff * -(p.unsqueeze(1) - q), dim=1)
    return e / (e.norm(p=2, dim=1).view(-1, 1) + gamma) * math.sqrt(n)


def time_ms(fn, reps=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    if not torch.cuda.is_available():
        print("PyTorch sees no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    print(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name(0)}\n")
    print("| formula | TF32 | shape BxMxN | mean ms | GFLOP/s | peak alloc GB | max row rel. diff to tuned fp64 |")
    print("|---|---|---|---:|---:|---:|---:|")
    g = torch.Generator(device=dev).manual_seed(2026)
    for b, m, n in [(128, 1024, 784), (128, 4096, 3072), (256, 60000, 784)]:
        x = torch.rand(b, n, device=dev, generator=g) * 2 - 1
        z = torch.rand(b, device=dev, generator=g) * (40 - 0.05) + 0.05
        y = torch.rand(m, n, device=dev, generator=g) * 2 - 1
        ref = tuned(x.double(), z.double(), y.double(), 5.0)
        free = torch.cuda.mem_get_info()[0]
        runs = [("tuned", False), ("tuned", True)]
        if 3 * 4 * b * m * (n + 1) < 0.8 * free:
            runs.append(("official", False))
        for name, tf32 in runs:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            fn = {"tuned": tuned, "official": official}[name]
            torch.cuda.reset_peak_memory_stats()
            with torch.no_grad():
                ms = time_ms(lambda: fn(x, z, y, 5.0))
                out = fn(x, z, y, 5.0).double()
            err = ((out - ref).norm(dim=1) / ref.norm(dim=1)).max().item()
            peak = torch.cuda.max_memory_allocated() / 1e9
            print(f"| {name} | {'on' if tf32 else 'off'} | {b}x{m}x{n} | {ms:.3f} | {5 * b * m * n / ms / 1e6:.0f} | {peak:.2f} | {err:.1e} |")
        if len(runs) == 2:
            print(f"| official | off | {b}x{m}x{n} | skipped: 3 x {4 * b * m * (n + 1) / 1e9:.0f} GB temporaries do not fit | | | |")
        del x, z, y, ref
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
