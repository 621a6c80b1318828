#!/usr/bin/env python3
"""fakequant_torch.py LIBNIBBLE: compares nibble's fake-quant (forward and backward, loaded from
the shared library with ctypes) with torch.fake_quantize_per_channel_affine and torch's learnable
(LSQ) per-channel fake-quant on the same data. Exit 0 = agree, 1 = differ, 77 = torch missing."""
import ctypes as C
import sys

try:
    import torch
except ImportError:
    print("SKIP: torch is not installed for", sys.executable)
    sys.exit(77)


class QSpec(C.Structure):
    _fields_ = [("format", C.c_int), ("bits", C.c_int), ("symmetric", C.c_int), ("restrict_range", C.c_int),
                ("ternary", C.c_int), ("gran", C.c_int), ("group_size", C.c_int), ("tail", C.c_int),
                ("scale_f16", C.c_int)]


class FQ(C.Structure):
    _fields_ = [("spec", QSpec), ("est", C.c_int), ("lam", C.c_float), ("grad_scale", C.c_float),
                ("cached", C.c_void_p)]


STE, CLIPPED, LSQ, LSQP = 0, 1, 2, 3
ROW = 1
lib = C.CDLL(sys.argv[1])
fp = C.POINTER(C.c_float)
lib.nb_fakequant_ref.argtypes = [C.POINTER(QSpec), fp, C.c_int64, C.c_int64, fp, fp, fp]
lib.nb_fakequant_backward_ref.argtypes = [C.POINTER(FQ), fp, fp, C.c_int64, C.c_int64, fp, fp, fp, fp, fp]


def ptr(t):
    return C.cast(t.data_ptr(), fp)


def nibble(x, scale, zero, bits, sym, est, dy, grad_scale=0.0):
    rows, cols = x.shape
    fq = FQ(QSpec(0, bits, sym, 0, 0, ROW, 0, 0, 0), est, 1.0, grad_scale, None)
    y = torch.empty_like(x)
    z = None if zero is None else zero.contiguous()
    lib.nb_fakequant_ref(C.byref(fq.spec), ptr(x), rows, cols, ptr(scale), None if z is None else ptr(z), ptr(y))
    dx, ds = torch.zeros_like(x), torch.zeros_like(scale)
    dz = torch.zeros_like(scale)
    lib.nb_fakequant_backward_ref(C.byref(fq), ptr(x), ptr(dy), rows, cols, ptr(scale),
                                  None if z is None else ptr(z), ptr(dx), ptr(ds), ptr(dz))
    return y, dx, ds, dz


torch.manual_seed(0)
fails = 0


def check(name, a, b, tol):
    global fails
    d = (a - b).abs().max().item()
    ok = d <= tol
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max |diff| {d:.3g} (tolerance {tol:g})")
    fails += not ok


for bits, sym in [(4, 1), (4, 0), (8, 1), (8, 0), (2, 0)]:
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    rows, cols = 8, 45
    x = (torch.randn(rows, cols) * 2.0).contiguous()
    x[0, :5] = torch.tensor([0.25, -0.75, 1.25, 30.0, -30.0])  # ties and clipping
    scale = (torch.rand(rows) * 0.4 + 0.05).contiguous()
    scale[0] = 0.5
    zp = torch.zeros(rows, dtype=torch.int32) if sym else torch.randint(max(qmin, -3), min(qmax, 3) + 1, (rows,), dtype=torch.int32)
    dy = torch.randn(rows, cols).contiguous()
    tag = f"int{bits} {'sym' if sym else 'asym'}"

    # plain per-channel fake-quant: forward and the clipped-STE mask
    xt = x.clone().requires_grad_(True)
    yt = torch.fake_quantize_per_channel_affine(xt, scale, zp, 0, qmin, qmax)
    yt.backward(dy)
    y, dx, _, _ = nibble(x, scale, None if sym else zp.float(), bits, sym, CLIPPED, dy)
    check(f"{tag} fake_quantize_per_channel_affine forward", y, yt.detach(), 0.0)
    check(f"{tag} fake_quantize_per_channel_affine backward (clipped STE)", dx, xt.grad, 0.0)

    # learnable (LSQ / LSQ+): scale (and zero point) gradients with torch's grad_factor
    g = 1.0 / (cols * qmax) ** 0.5
    # torch's learnable per-channel *backward* rounds x/s + z where its forward rounds x/s and then
    # adds z: the two disagree on exact ties (x/s = k + 1/2) when z is odd. nibble's backward follows
    # the forward. Ties get dy = 0 here so both sides ignore them; they are counted in the output.
    v = x * (1.0 / scale[:, None])
    ties = (v - torch.floor(v)) == 0.5
    print(f"{tag}: {int(ties.sum())} exact ties excluded from the learnable backward comparison")
    dy = dy.masked_fill(ties, 0.0).contiguous()
    xt = x.clone().requires_grad_(True)
    st = scale.clone().requires_grad_(True)
    zt = zp.float().clone().requires_grad_(True)
    yt = torch._fake_quantize_learnable_per_channel_affine(xt, st, zt, 0, qmin, qmax, g)
    yt.backward(dy)
    est = LSQ if sym else LSQP
    y, dx, ds, dz = nibble(x, scale, None if sym else zp.float(), bits, sym, est, dy, grad_scale=g)
    check(f"{tag} learnable forward", y, yt.detach(), 0.0)
    check(f"{tag} learnable dX", dx, xt.grad, 0.0)
    check(f"{tag} learnable dScale (LSQ)", ds, st.grad, 1e-4 * max(1.0, st.grad.abs().max().item()))
    if not sym:
        check(f"{tag} learnable dZeroPoint (LSQ+)", dz, zt.grad, 1e-4 * max(1.0, zt.grad.abs().max().item()))

print("all agree" if not fails else f"{fails} comparisons differ")
sys.exit(1 if fails else 0)
