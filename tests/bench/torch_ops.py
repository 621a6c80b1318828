#!/usr/bin/python3
"""torch_ops.py: PyTorch (CPU) forward + backward of the same ops and shapes as bench_ops.c, for a
side-by-side figure. Usage: torch_ops.py [tiny|small] [reps] (threads from OMP_NUM_THREADS).
Attention is the usual composition (matmul, causal mask, softmax, matmul) with kv heads repeated;
times are process CPU time, best of reps. Prints SKIP when torch is missing."""
import os
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: python3-torch not installed")
    sys.exit(0)

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
cfg = sys.argv[1] if len(sys.argv) > 1 else "tiny"
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
B, T, C, NH, NKV, HID, V = (16, 256, 64, 8, 4, 172, 512) if cfg == "tiny" else (8, 256, 288, 6, 6, 768, 512)
H = C // NH
g = torch.Generator().manual_seed(0)


def rnd(*s):
    return torch.randn(*s, generator=g).requires_grad_()


def attention():
    q, k, v = rnd(B, T, NH, H), rnd(B, T, NKV, H), rnd(B, T, NKV, H)
    def run():
        qq = q.transpose(1, 2)
        kk = k.transpose(1, 2).repeat_interleave(NH // NKV, dim=1)
        vv = v.transpose(1, 2).repeat_interleave(NH // NKV, dim=1)
        s = qq @ kk.transpose(-1, -2) / H ** 0.5
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        o = (F.softmax(s, dim=-1) @ vv).transpose(1, 2)
        o.sum().backward()
    return run


def rmsnorm():
    x, w = rnd(B, T, C), rnd(C)
    def run():
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
        y.sum().backward()
    return run


def swiglu():
    a, b = rnd(B, T, HID), rnd(B, T, HID)
    def run():
        (F.silu(a) * b).sum().backward()
    return run


def xent():
    x = rnd(B, T, V)
    tg = torch.arange(B * T) * 31 % V
    def run():
        F.cross_entropy(x.view(-1, V), tg).backward()
    return run


print(f"torch {torch.__version__} {cfg}: {torch.get_num_threads()} threads")
for name, make in [("attention", attention), ("rmsnorm", rmsnorm), ("swiglu", swiglu), ("cross_entropy", xent)]:
    run = make()
    best = 1e9
    for _ in range(reps):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    print(f"  {name:<14} fwd+bwd {best * 1e3:8.3f} ms cpu")
