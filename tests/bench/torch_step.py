#!/usr/bin/env python3
"""torch_step.py: the PyTorch baseline of `nibble bench train` -- the same llama-style model, the
same QAT policy, the same batch and AdamW, timed over full training steps (forward, backward,
optimizer). Debian's python3-torch; benchmark only, never a dependency of nibble.

  /usr/bin/python3 tests/bench/torch_step.py --model tiny|small --quant none|w8|w4g32a8 \
      --steps N [--threads T] [--blas-threads B] [--json]

PyTorch's best threading on this 2-core machine (measured): small -> torch 1 thread + OpenBLAS 2
threads; tiny -> torch 1 thread + OpenBLAS 1 thread. Set them with --threads/--blas-threads (the
OpenBLAS count must be set in the environment before torch loads, so this script re-executes itself).
"""
import argparse, json, math, os, resource, sys, time

CONFIGS = {
    "tiny": dict(dim=64, n_layers=5, n_heads=8, n_kv_heads=4, hidden=172, vocab=512, seq=256, batch=16),
    "small": dict(dim=288, n_layers=6, n_heads=6, n_kv_heads=6, hidden=768, vocab=512, seq=256, batch=8),
}

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny", choices=CONFIGS)
    ap.add_argument("--quant", default="none", choices=["none", "w8", "w4g32a8"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    blas = a.blas_threads if a.blas_threads is not None else (2 if a.model == "small" else 1)
    if os.environ.get("NB_TORCH_CHILD") != "1":
        env = dict(os.environ, NB_TORCH_CHILD="1", OPENBLAS_NUM_THREADS=str(blas), OMP_NUM_THREADS=str(a.threads))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("SKIP: python3-torch is not installed", file=sys.stderr)
        sys.exit(77)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c = CONFIGS[a.model]
    C, L, nh, nkv, Hd, V, T, B = c["dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["hidden"], c["vocab"], c["seq"], c["batch"]
    hd = C // nh

    def fq_weight(w):
        if a.quant == "none":
            return w
        if a.quant == "w8":  # int8 per output channel, symmetric, STE
            s = w.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
            q = torch.clamp(torch.round(w / s), -128, 127) * s
            return w + (q - w).detach()
        rows, cols = w.shape  # int4 groups of 32 (cols padded logic: require multiple of 32 or per-row)
        if cols % 32 == 0:
            g = w.reshape(rows, cols // 32, 32)
            s = g.detach().abs().amax(dim=2, keepdim=True).clamp_min(1e-12) / 7
            q = (torch.clamp(torch.round(g / s), -8, 7) * s).reshape(rows, cols)
        else:
            s = w.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 7
            q = torch.clamp(torch.round(w / s), -8, 7) * s
        return w + (q - w).detach()

    def fq_act(x):
        if a.quant != "w4g32a8":
            return x
        s = x.detach().abs().amax(dim=-1, keepdim=True).clamp_min(1e-12) / 127
        q = torch.clamp(torch.round(x / s), -128, 127) * s
        return x + (q - x).detach()

    def lin(x, w):
        return F.linear(fq_act(x), fq_weight(w))

    def p(*shape, std=0.02):
        return torch.nn.Parameter(torch.randn(*shape) * std)

    params = {"tok": p(V, C)}
    for l in range(L):
        params.update({f"{l}.an": torch.nn.Parameter(torch.ones(C)), f"{l}.fn": torch.nn.Parameter(torch.ones(C)),
                       f"{l}.wq": p(C, C), f"{l}.wk": p(nkv * hd, C), f"{l}.wv": p(nkv * hd, C), f"{l}.wo": p(C, C),
                       f"{l}.w1": p(Hd, C), f"{l}.w2": p(C, Hd), f"{l}.w3": p(Hd, C)})
    params["norm"] = torch.nn.Parameter(torch.ones(C))
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.outer(torch.arange(T).float(), freqs)
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]

    def rope(x):  # x (B,T,h,hd): pairs (2i, 2i+1)
        x0, x1 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

    mask = torch.full((T, T), float("-inf")).triu(1)

    def forward(ids, tgt):
        x = params["tok"][ids]
        for l in range(L):
            h = rms(x, params[f"{l}.an"])
            q = rope(lin(h, params[f"{l}.wq"]).view(B, T, nh, hd))
            k = rope(lin(h, params[f"{l}.wk"]).view(B, T, nkv, hd))
            v = lin(h, params[f"{l}.wv"]).view(B, T, nkv, hd)
            if nkv != nh:
                k = k.repeat_interleave(nh // nkv, dim=2)
                v = v.repeat_interleave(nh // nkv, dim=2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
            x = x + lin(o, params[f"{l}.wo"])
            h = rms(x, params[f"{l}.fn"])
            x = x + lin(F.silu(lin(h, params[f"{l}.w1"])) * lin(h, params[f"{l}.w3"]), params[f"{l}.w2"])
        logits = F.linear(rms(x, params["norm"]), params["tok"])
        return F.cross_entropy(logits.view(-1, V), tgt.view(-1))

    opt = torch.optim.AdamW(params.values(), lr=1e-3, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    times, cpu = [], []
    for step in range(a.warmup + a.steps):
        ids = torch.randint(0, V, (B, T), generator=g)
        tgt = torch.randint(0, V, (B, T), generator=g)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = forward(ids, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if step >= a.warmup:
            times.append(dt)
            cpu.append(dc)
    ms = 1000 * sorted(times)[len(times) // 2]
    n_par = sum(v.numel() for v in params.values())
    # training FLOPs: 6 * matmul params * tokens + attention (12 * L * T * C per token, causal half)
    mm = sum(v.numel() for k, v in params.items() if not k.endswith(("an", "fn", "norm")))
    flops = 6 * mm * B * T + 6 * L * B * T * T * C
    res = {"framework": "pytorch " + torch.__version__, "model": a.model, "quant": a.quant, "threads": a.threads,
           "blas_threads": blas, "step_ms": ms, "cpu_ms": 1000 * sorted(cpu)[len(cpu) // 2], "tokens_per_s": B * T / (ms / 1000), "gflops": flops / (ms / 1000) / 1e9,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "params": n_par}
    if a.json:
        print(json.dumps(res))
    else:
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()))

if __name__ == "__main__":
    main()
