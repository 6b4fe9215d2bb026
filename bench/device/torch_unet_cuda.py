"""The PFGM U-Net in PyTorch eager FP32 on the GPU machine's CUDA: the stand-in for TorchSharp-CUDA, which NuGet does
not serve for Linux.

The same architecture as src/Network/UNet (and tests/PoissonFlow.ReferenceTests/TorchNetworks.cs, whose parameter
names it repeats, so a checkpoint of ours loads with load_state_dict(strict=True): pass --checkpoint FILE): sinusoidal
embedding of z (nf features), Linear(nf, 4nf), SiLU, Linear(4nf, 4nf); DDPM residual blocks with GroupNorm(min(C/4,
32), eps 1e-6), SiLU, conv3x3, + Dense(silu(emb)), GroupNorm, SiLU, dropout, conv3x3, 1x1 shortcut; stride-2 conv
downsampling, nearest-2x + conv upsampling, skip concatenation; GroupNorm, SiLU, conv3x3 to C+1 channels; the
prediction is the C channels flattened plus the spatial mean of the last one.

Times, per preset and batch, with CUDA events (mean of 20 after 3 warm-ups, torch_field_cuda.time_ms): one training step as PFGM's code takes
it (zero_grad, forward, 0.5*sum-of-squares loss averaged over the batch, backward, clip_grad_norm_(1), Adam with a
linear-warmup LambdaLR, the EMA loop of models/ema.py) and one forward pass under no_grad in eval mode. TF32 off
(true FP32, what our kernels compute) and on (PyTorch's default for convolutions). Prints a markdown table with
images/s and GFLOP/s, the FLOPs counted by forward hooks on every conv and linear (2 x weight elements per output
pixel, plus 2 C S^2 for each of an attention block's two S x S products; backward = 2x forward except the first conv
and the first dense layer, whose inputs need no gradient).
"""
import argparse
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_field_cuda import time_ms  # CUDA-event timing: 3 warm-ups, then the mean of 20 calls

PRESETS = {
    # name: (nf, channel multipliers, res blocks per level, dropout, attention levels): UNetConfig.Tiny / Small
    "tiny": (32, (1, 2, 2), 1, 0.1, ()),
    "small": (64, (1, 2, 2), 2, 0.1, (2,)),
}


def groups(c):
    return max(1, min(c // 4, 32))


class GroupNorm(nn.Module):  # parameters named gamma / beta, as ours
    def __init__(self, c):
        super().__init__()
        self.groups = groups(c)
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return F.group_norm(x, self.groups, self.gamma, self.beta, 1e-6)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb, dropout):
        super().__init__()
        self.norm0 = GroupNorm(cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.embed = nn.Linear(emb, cout)
        self.norm1 = GroupNorm(cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.dropout = dropout

    def forward(self, x, emb):
        h = self.conv0(F.silu(self.norm0(x))) + self.embed(emb)[:, :, None, None]
        h = F.dropout(F.silu(self.norm1(h)), self.dropout, self.training)
        h = self.conv1(h)
        return (x if self.shortcut is None else self.shortcut(x)) + h


class AttnBlock(nn.Module):  # src/Network/UNet/AttentionBlock.cs: GroupNorm, one qkv 1x1 conv, softmax over positions
    def __init__(self, c):
        super().__init__()
        self.norm = GroupNorm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3 * c, hh * ww).chunk(3, dim=1)
        p = torch.softmax(torch.bmm(q.transpose(1, 2), k) * c ** -0.5, dim=2)
        return x + self.proj_out(torch.bmm(v, p.transpose(1, 2)).reshape(b, c, hh, ww))


class UNet(nn.Module):
    def __init__(self, nf, mult, blocks, dropout, attn=(), channels=1, size=28):
        super().__init__()
        self.nf, self.channels, self.size = nf, channels, size
        emb = 4 * nf
        self.embed = nn.Module()
        self.embed.dense0 = nn.Linear(nf, emb)
        self.embed.dense1 = nn.Linear(emb, emb)
        self.conv_in = nn.Conv2d(channels, nf, 3, padding=1)
        self.stages = []  # (module, kind, push): kind block / concat / attn / down / up
        skips, c = [nf], nf
        for level, m in enumerate(mult):
            down = nn.Module()
            setattr(self, f"down{level}", down)
            for b in range(blocks):
                setattr(down, f"block{b}", ResBlock(c, nf * m, emb, dropout))
                c = nf * m
                self.stages.append((getattr(down, f"block{b}"), "block", level not in attn))
                if level in attn:
                    setattr(down, f"attn{b}", AttnBlock(c))
                    self.stages.append((getattr(down, f"attn{b}"), "attn", True))
                skips.append(c)
            if level < len(mult) - 1:
                down.downsample = nn.Conv2d(c, c, 3, stride=2, padding=1)
                skips.append(c)
                self.stages.append((down.downsample, "down", True))
        self.mid = nn.Module()
        self.mid.block0 = ResBlock(c, c, emb, dropout)
        self.mid.block1 = ResBlock(c, c, emb, dropout)
        self.stages.append((self.mid.block0, "block", False))
        if attn:
            self.mid.attn = AttnBlock(c)
            self.stages.append((self.mid.attn, "attn", False))
        self.stages.append((self.mid.block1, "block", False))
        for level in reversed(range(len(mult))):
            up = nn.Module()
            setattr(self, f"up{level}", up)
            for b in range(blocks + 1):
                setattr(up, f"block{b}", ResBlock(c + skips.pop(), nf * mult[level], emb, dropout))
                c = nf * mult[level]
                self.stages.append((getattr(up, f"block{b}"), "concat", False))
                if level in attn:
                    setattr(up, f"attn{b}", AttnBlock(c))
                    self.stages.append((getattr(up, f"attn{b}"), "attn", False))
            if level > 0:
                up.upsample = nn.Conv2d(c, c, 3, padding=1)
                self.stages.append((up.upsample, "up", False))
        self.norm_out = GroupNorm(c)
        self.conv_out = nn.Conv2d(c, channels + 1, 3, padding=1)

    def forward(self, points, z):
        half = self.nf // 2
        freqs = torch.exp(torch.arange(half, device=z.device, dtype=z.dtype) * (-math.log(10000.0) / (half - 1)))
        angle = z[:, None] * freqs[None]
        emb = F.silu(self.embed.dense1(F.silu(self.embed.dense0(torch.cat([angle.sin(), angle.cos()], 1)))))
        h = self.conv_in(points.view(-1, self.channels, self.size, self.size))
        hs = [h]
        for module, kind, push in self.stages:
            if kind == "block":
                h = module(h, emb)
            elif kind == "concat":
                h = module(torch.cat([h, hs.pop()], 1), emb)
            elif kind in ("attn", "down"):
                h = module(h)
            else:
                h = module(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            if push:
                hs.append(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        c = self.channels
        return torch.cat([out[:, :c].flatten(1), out[:, c].mean((1, 2))[:, None]], 1)


def count_flops(model, points, z):
    """Forward FLOPs per image and those of the layers whose input needs no gradient (conv_in, embed.dense0)."""
    total, no_input_grad, hooks = [0.0], [0.0], []
    skip = {model.conv_in, model.embed.dense0}

    def hook(module, _inputs, output):
        f = 2.0 * module.weight.numel() * (output.shape[2] * output.shape[3] if output.dim() == 4 else 1)
        total[0] += f
        if module in skip:
            no_input_grad[0] += f

    def attn_hook(module, inputs, _output):  # the two S x S products, 2 C S^2 FLOPs each
        _, c, hh, ww = inputs[0].shape
        total[0] += 2 * 2.0 * c * (hh * ww) ** 2

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
        elif isinstance(m, AttnBlock):
            hooks.append(m.register_forward_hook(attn_hook))
    with torch.no_grad():
        model(points[:1], z[:1])
    for h in hooks:
        h.remove()
    return total[0], no_input_grad[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--batches", default="64")
    parser.add_argument("--checkpoint", help="a safetensors checkpoint of ours for the first preset (loaded strictly)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("PyTorch sees no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    print(f"PyTorch {torch.__version__}, {torch.cuda.get_device_name(0)}, eager FP32\n")
    print("| preset | batch | TF32 | what | mean ms | img/s | GFLOP/s | params |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    g = torch.Generator(device=dev).manual_seed(2026)
    for i, preset in enumerate(args.presets.split(",")):
        nf, mult, blocks, dropout, attn = PRESETS[preset]
        model = UNet(nf, mult, blocks, dropout, attn).to(dev)
        if args.checkpoint and i == 0:
            from safetensors.torch import load_file
            state = {k: v for k, v in load_file(args.checkpoint).items() if not k.startswith(("ema.", "adam_m.", "adam_v."))}
            model.load_state_dict(state, strict=True)
        params = sum(p.numel() for p in model.parameters())
        for batch in (int(b) for b in args.batches.split(",")):
            n = model.channels * model.size * model.size
            points = torch.rand(batch, n, device=dev, generator=g) * 2 - 1
            z = torch.rand(batch, device=dev, generator=g) * 19.95 + 0.05
            target = torch.rand(batch, n + 1, device=dev, generator=g) * 2 - 1
            fwd_flops, no_grad_flops = count_flops(model, points, z)
            step_flops = 3 * fwd_flops - no_grad_flops
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.999), eps=1e-8)
                sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / 10, 1.0))
                ema = [p.detach().clone() for p in model.parameters()]
                count = [0]

                def step():
                    model.train()
                    opt.zero_grad(set_to_none=True)
                    pred = model(points, z)
                    loss = 0.5 * (pred - target).square().sum(1).mean()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    sched.step()
                    count[0] += 1
                    decay = min(0.9999, (1 + count[0]) / (10 + count[0]))
                    with torch.no_grad():
                        for s, p in zip(ema, model.parameters()):
                            s.sub_((1 - decay) * (s - p))

                def forward():
                    model.eval()
                    with torch.no_grad():
                        model(points, z)

                for what, fn, flops in (("step", step, step_flops), ("forward", forward, fwd_flops)):
                    ms = time_ms(fn)
                    ips = batch / (ms / 1000)
                    print(f"| {preset} | {batch} | {'on' if tf32 else 'off'} | {what} | {ms:.3f} | {ips:.0f} | {ips * flops / 1e9:.1f} | {params} |")
            print(f"\n{preset}: {fwd_flops / 1e6:.1f} MFLOP forward, {step_flops / 1e6:.1f} MFLOP step per image "
                  "(convs and dense layers)\n", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
