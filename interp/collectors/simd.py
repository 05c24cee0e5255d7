"""One vector pass for the median bracket of `select_kernels._abs_median_bits`: counts and copies in the same pass.

The exact median of |v| brackets it with a sample, then needs the values below, up to and inside the bracket,
and the values inside it. Two scalar passes did this (a count, then a branch-free copy, ~1 ns per value); here a
vector of values at a time: compare, count with popcounts, and store the ones inside packed in order. With
AVX-512F, 16 values and LLVM's `masked.compressstore` (one vpcompressd). With AVX2, 8 values: the inside lanes
are moved to the front by vpermd with a row of a 256-entry table (`_PACK`, one row per 8-bit mask) and the whole
vector is stored; the next store starts where the packed values end, so buf needs a vector's slack (the caller's
capacity check keeps it). `VECTOR` says whether either is there; elsewhere the kernels keep the two scalar
passes (LLVM would expand a compress store lane by lane).
"""
from __future__ import annotations

import numpy as np

try:
    import llvmlite.binding as llvm
    from llvmlite import ir
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic
    ENABLED = True
except ImportError:  # pragma: no cover - numba is a dependency
    ENABLED = False

_FEATURES = llvm.get_host_cpu_features() if ENABLED else {}
AVX512 = ENABLED and bool(_FEATURES.get("avx512f", False))
VECTOR = AVX512 or (ENABLED and bool(_FEATURES.get("avx2", False)))
LANES = 8 if VECTOR and not AVX512 else 16  # values per vector step of `scan_bracket`: `_scan8`'s or `_scan16`'s
M, INF = 0x7FFFFFFF, 0x7F800000  # |v| bits mask; +inf's bits (anything above is a NaN)

if ENABLED:
    def _scan_codegen(lanes: int, store):
        """The code of a scan step over `lanes` values (`_scan16`, `_scan8`); store(builder, fn, b, inside, dst,
        table) writes the |v| bits b that `inside` marks at address dst, packed in order."""
        def codegen(context, builder, signature, args):
            s, d, l, h, t = args
            im, i32, i64 = ir.IntType(lanes), ir.IntType(32), ir.IntType(64)
            vt, ptr = ir.VectorType(i32, lanes), ir.PointerType()

            def splat(x):
                one = builder.insert_element(ir.Constant(vt, None), x, ir.Constant(i32, 0))
                return builder.shuffle_vector(one, ir.Constant(vt, None), ir.Constant(vt, [0] * lanes))

            def fn(name, ret, *arg):
                return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, list(arg)), name)

            pop = fn(f"llvm.ctpop.i{lanes}", im, im)

            def count(mask, shift):
                c = builder.zext(builder.call(pop, [builder.bitcast(mask, im)]), i64)
                return builder.shl(c, ir.Constant(i64, shift))

            b = builder.and_(builder.load(builder.inttoptr(s, ptr), typ=vt, align=4), ir.Constant(vt, [M] * lanes))
            lo, hi = splat(l), splat(h)
            inside = builder.icmp_unsigned("<=", builder.sub(b, lo), builder.sub(hi, lo))
            store(builder, fn, b, inside, d, t)
            out = count(inside, 0)
            out = builder.or_(out, count(builder.icmp_unsigned("<", b, lo), 8))
            out = builder.or_(out, count(builder.icmp_unsigned("<=", b, hi), 16))
            out = builder.or_(out, count(builder.icmp_unsigned(">", b, ir.Constant(vt, [INF] * lanes)), 24))
            top = builder.zext(builder.call(fn(f"llvm.vector.reduce.umax.v{lanes}i32", i32, vt), [b]), i64)
            return builder.or_(out, builder.shl(top, ir.Constant(i64, 32)))
        return codegen

    def _compress_store(builder, fn, b, inside, d, table):  # pragma: no cover - compiled
        """AVX-512: one vpcompressd (LLVM's masked.compressstore)."""
        ptr = ir.PointerType()
        builder.call(fn("llvm.masked.compressstore.v16i32", ir.VoidType(), b.type, ptr, inside.type),
                     [b, builder.inttoptr(d, ptr), inside])

    def _permute_store(builder, fn, b, inside, d, table):  # pragma: no cover - compiled
        """AVX2: vpermd with the row of the table (`_PACK`) that the 8-bit mask picks moves the inside lanes to the
        front; all 8 lanes are stored (those past the count are overwritten by the next store)."""
        i64, ptr = ir.IntType(64), ir.PointerType()
        mask = builder.zext(builder.bitcast(inside, ir.IntType(8)), i64)
        row = builder.add(table, builder.shl(mask, ir.Constant(i64, 5)))  # 8 int32 = 32 bytes a row
        perm = builder.load(builder.inttoptr(row, ptr), typ=b.type, align=4)
        packed = builder.call(fn("llvm.x86.avx2.permd", b.type, b.type, b.type), [b, perm])
        builder.store(packed, builder.inttoptr(d, ptr), align=4)

    _SIG = types.int64(types.int64, types.int64, types.uint32, types.uint32, types.int64)

    @intrinsic
    def _scan16(typingctx, src, dst, lo, hi, table):  # pragma: no cover - compiled
        """The 16 float32 at address src as |v| bits b: stores the b with lo ≤ b ≤ hi at address dst, packed in
        order; returns, packed in an int64, how many it stored (bits 0–7), how many b < lo (8–15), b ≤ hi
        (16–23), NaN (24–31), and max b (32–63). `table` is not read (`_scan8`'s)."""
        return _SIG, _scan_codegen(16, _compress_store)

    @intrinsic
    def _scan8(typingctx, src, dst, lo, hi, table):  # pragma: no cover - compiled
        """`_scan16` for 8 values with AVX2 (`_permute_store`); `table` is the address of `_PACK`."""
        return _SIG, _scan_codegen(8, _permute_store)

    _scan = _scan8 if VECTOR and not AVX512 else _scan16  # without either, LLVM expands _scan16 (tests only)


def _pack_table():
    """Row m (an 8-bit mask) holds the indices of m's set bits in increasing order, then zeros: vpermd with it
    moves the lanes m selects to the front, in order."""
    t = np.zeros((256, 8), dtype=np.int32)
    for m in range(256):
        idx = [i for i in range(8) if m >> i & 1]
        t[m, :len(idx)] = idx
    return t


_PACK = _pack_table() if ENABLED else None

if ENABLED:
    @njit(cache=True, nogil=True, error_model="numpy")
    def scan_bracket(u, lo, hi, buf, d, tmax):  # pragma: no cover - compiled
        """For the float32 bits u (C-contiguous, 1-D): (values of |u| below lo, up to hi, NaN, inside [lo, hi],
        whether the inside ones all fit in buf), with the inside |u| bits copied into buf in order while they fit (a
        buf smaller than one vector store keeps none, and nothing is written past its end).
        tmax [u.size // d] (or empty): the largest |u| bits of each run of d values; d must be a multiple of LANES
        then (with tmax empty, d is ignored and a tail of fewer than LANES values is scanned one by one). Only
        where `VECTOR`: the vector step is AVX-512's or AVX2's."""
        n = u.size
        src, dst, table = u.ctypes.data, buf.ctypes.data, _PACK.ctypes.data
        cap = buf.size
        below, upto, nan, c = 0, 0, 0, 0
        spare = np.empty(LANES, np.uint32)
        small = cap < LANES  # not one vector store fits in buf: the stores go to spare, and nothing is kept
        out, fits = (spare.ctypes.data if small else dst), not small
        step = d if tmax.size else LANES
        rows = n // step
        for r in range(rows):
            top = 0
            base = src + 4 * r * step
            for k in range(0, step, LANES):
                if c + LANES > cap:  # the next store might not fit: count on, keep nothing more
                    fits, c = False, 0
                p = _scan(base + 4 * k, out + 4 * c, lo, hi, table)
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
        spare[0] = 0  # spare named after the last store: numba frees an array after its last use, not its address's
        inside = upto - below
        return below, upto, nan, inside, (fits and c == inside) or inside == 0
