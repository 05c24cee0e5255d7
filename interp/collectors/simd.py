"""One vector pass for the median bracket of `select_kernels._abs_median_bits`: counts and copies in the same pass.

The exact median of |v| brackets it with a sample, then needs the values below, up to and inside the bracket,
and the values inside it. Two scalar passes did this (a count, then a branch-free copy, ~1 ns per value); here
16 values at a time: compare, count with popcounts, and store the ones inside packed in order with LLVM's
`masked.compressstore` (one vpcompressd on AVX-512). `VECTOR` says whether the CPU has AVX-512F, which makes the
store one instruction; elsewhere the kernels keep the two scalar passes (LLVM would expand the store lane by lane).
"""
from __future__ import annotations

try:
    import llvmlite.binding as llvm
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic
    ENABLED = True
except ImportError:  # pragma: no cover - numba is a dependency
    ENABLED = False

VECTOR = ENABLED and bool(llvm.get_host_cpu_features().get("avx512f", False))
LANES = 16
M, INF = 0x7FFFFFFF, 0x7F800000  # |v| bits mask; +inf's bits (anything above is a NaN)

if ENABLED:
    @intrinsic
    def _scan16(typingctx, src, dst, lo, hi):  # pragma: no cover - compiled
        """The 16 float32 at address src as |v| bits b: stores the b with lo ≤ b ≤ hi at address dst, packed in
        order; returns, packed in an int64, how many it stored (bits 0–7), how many b < lo (8–15), b ≤ hi
        (16–23), NaN (24–31), and max b (32–63)."""
        sig = types.int64(types.int64, types.int64, types.uint32, types.uint32)

        def codegen(context, builder, signature, args):
            s, d, l, h = args
            i16, i32, i64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
            vt, mt, ptr = ir.VectorType(i32, LANES), ir.VectorType(ir.IntType(1), LANES), ir.PointerType()

            def splat(x):
                one = builder.insert_element(ir.Constant(vt, None), x, ir.Constant(i32, 0))
                return builder.shuffle_vector(one, ir.Constant(vt, None), ir.Constant(vt, [0] * LANES))

            def fn(name, ret, *arg):
                return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, list(arg)), name)

            pop = fn("llvm.ctpop.i16", i16, i16)

            def count(mask, shift):
                c = builder.zext(builder.call(pop, [builder.bitcast(mask, i16)]), i64)
                return builder.shl(c, ir.Constant(i64, shift))

            b = builder.and_(builder.load(builder.inttoptr(s, ptr), typ=vt, align=4), ir.Constant(vt, [M] * LANES))
            lo, hi = splat(l), splat(h)
            inside = builder.icmp_unsigned("<=", builder.sub(b, lo), builder.sub(hi, lo))
            builder.call(fn("llvm.masked.compressstore.v16i32", ir.VoidType(), vt, ptr, mt),
                         [b, builder.inttoptr(d, ptr), inside])
            out = count(inside, 0)
            out = builder.or_(out, count(builder.icmp_unsigned("<", b, lo), 8))
            out = builder.or_(out, count(builder.icmp_unsigned("<=", b, hi), 16))
            out = builder.or_(out, count(builder.icmp_unsigned(">", b, ir.Constant(vt, [INF] * LANES)), 24))
            top = builder.zext(builder.call(fn("llvm.vector.reduce.umax.v16i32", i32, vt), [b]), i64)
            return builder.or_(out, builder.shl(top, ir.Constant(i64, 32)))
        return sig, codegen

    @njit(cache=True, nogil=True, error_model="numpy")
    def scan_bracket(u, lo, hi, buf, d, tmax):  # pragma: no cover - compiled
        """For the float32 bits u (C-contiguous, 1-D): (values of |u| below lo, up to hi, NaN, inside [lo, hi],
        whether the inside ones all fit in buf), with the inside |u| bits copied into buf in order while they fit.
        tmax [u.size // d] (or empty): the largest |u| bits of each run of d values; d must be a multiple of 16
        then (with tmax empty, d is ignored and a tail of fewer than 16 values is scanned one by one)."""
        n = u.size
        src, dst = u.ctypes.data, buf.ctypes.data
        cap = buf.size
        below, upto, nan, c = 0, 0, 0, 0
        fits = True
        step = d if tmax.size else LANES
        rows = n // step
        for r in range(rows):
            top = 0
            base = src + 4 * r * step
            for k in range(0, step, LANES):
                if c + LANES > cap:  # the next store might not fit: count on, keep nothing more
                    fits, c = False, 0
                p = _scan16(base + 4 * k, dst + 4 * c, lo, hi)
                c += p & 0xFF
                below += (p >> 8) & 0xFF
                upto += (p >> 16) & 0xFF
                nan += (p >> 24) & 0xFF
                top = max(top, p >> 32)
            if tmax.size:
                tmax[r] = top
        for i in range(rows * step, n):  # the tail (tmax empty only)
            b = u[i] & M
            below += b < lo
            upto += b <= hi
            nan += b > INF
            if lo <= b <= hi:
                if c < cap:
                    buf[c] = b
                    c += 1
                else:
                    fits, c = False, 0
        inside = upto - below
        return below, upto, nan, inside, fits and c == inside
