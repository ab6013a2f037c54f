"""Raw-address vector operations for the CPU kernels: short masked vector loops, streaming copies.

Large outputs (hundreds of MB for pair features of a periodic cell) are written once and read
much later, so they need not pass through the caches.  An ordinary store first reads the cache
line it writes to (read for ownership), which halves the usable bandwidth: filling a reused
568 MB buffer takes 49 ms on the two threads of the development machine with ordinary stores
and 14 ms with non-temporal ones.  Kernels therefore assemble each output row in a small
cached scratch and hand it to :func:`copy_to_address`, which writes whole aligned cache lines
with non-temporal stores (LLVM ``!nontemporal`` metadata; ``vmovntpd`` on x86, ``stnp`` on
AArch64) and the unaligned head and tail with ordinary stores.

Non-temporal stores are weakly ordered: a kernel calls :func:`store_fence` after its last
streaming copy of a parallel task, before other threads may read the output.

Short rows.  Rows of ``n_radial`` (often 7) floats are too short for LLVM's loop vectoriser,
which leaves a scalar remainder of up to 7 iterations.  :func:`scale_to`, :func:`axpy_padded`,
:func:`accumulate_cg8` and :func:`outer_rows8` work on 8 floats at a time with a masked last
vector (``llvm.masked.load`` / ``store``: one AVX-512 instruction, two AVX ones, scalar code
elsewhere), so a 7-float row is one vector operation.
Each lane computes exactly the scalar expression (``x * s`` rounded, then ``d + ...`` rounded;
no fused multiply-add), so results are bit-identical to the scalar loops.

Everything here is an ``@intrinsic`` or ``@njit`` function free of Python objects, usable from
``cache=True`` kernels; addresses are plain ``int64`` (``array.ctypes.data`` plus a byte offset)
of float64 data that the caller keeps alive.
"""

from __future__ import annotations

import platform

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "float_pointer",
    "copy_to_address",
    "store_fence",
    "scale_to",
    "axpy_padded",
    "accumulate_cg8",
    "outer_rows8",
    "zero_padded",
    "padded",
    "STREAM_MIN_BYTES",
]

#: Outputs at least this large are written with non-temporal stores: half of a 32 MiB last-level
#: cache, which the output shares with its inputs and the other cores.  Measured on a 2-vCPU
#: Zen 4 guest (32 MiB L3), lambda-SOAP of Si216 at max_angular 4: 19 MB and 33 MB outputs
#: 12-15 % faster streamed; 6-10 MB outputs (64 Si atoms) 3 % slower, so they are not.
STREAM_MIN_BYTES = 16 * 1024 * 1024

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_LINE = 64  # bytes of a cache line: 8 float64


@intrinsic
def float_pointer(typingctx, address):  # pragma: no cover - compiled
    """``float64 *`` at the integer ``address`` (a float64 buffer kept alive by the caller)."""
    sig = types.CPointer(types.float64)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float64)))

    return sig, codegen


_LANES = 8
#: Pointer suffix of the masked load/store intrinsics (typed-pointer spelling, which newer LLVM
#: upgrades to ``p0``).
_PTR = "p0v8f64"


def _vector_type():
    return ir.VectorType(ir.DoubleType(), _LANES)


def _splat(builder, value, vtype):
    one = builder.insert_element(ir.Constant(vtype, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), _LANES), [0] * _LANES))


def _lane_mask(builder, n):
    """``<lane < n>`` for the 8 lanes."""
    i64x8 = ir.VectorType(ir.IntType(64), _LANES)
    lanes = ir.Constant(i64x8, list(range(_LANES)))
    return builder.icmp_signed("<", lanes, _splat(builder, n, i64x8))


def _masked_load(builder, address, mask):
    vec = _vector_type()
    fnty = ir.FunctionType(vec, [vec.as_pointer(), ir.IntType(32), mask.type, vec])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.load.v8f64.{_PTR}")
    ptr = builder.inttoptr(address, vec.as_pointer())
    return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 8), mask, ir.Constant(vec, None)])


def _masked_store(builder, value, address, mask):
    vec = _vector_type()
    fnty = ir.FunctionType(ir.VoidType(), [vec, vec.as_pointer(), ir.IntType(32), mask.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.store.v8f64.{_PTR}")
    builder.call(fn, [value, builder.inttoptr(address, vec.as_pointer()), ir.Constant(ir.IntType(32), 8), mask])


@intrinsic
def _scale8(typingctx, dst, src, x, n):  # pragma: no cover - compiled
    """``dst[i] = x * src[i]`` for ``i < min(n, 8)`` (float64 at addresses ``dst``, ``src``)."""
    sig = types.void(types.int64, types.int64, types.float64, types.int64)

    def codegen(context, builder, signature, args):
        dst, src, x, n = args
        mask = _lane_mask(builder, n)
        value = builder.fmul(_masked_load(builder, src, mask), _splat(builder, x, _vector_type()))
        _masked_store(builder, value, dst, mask)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _axpy8_padded(typingctx, dst, src, x, n):  # pragma: no cover - compiled
    """``dst[i] = dst[i] + x * src[i]`` for all 8 lanes, reading ``src[i]`` only for
    ``i < min(n, 8)`` (zero beyond): ``dst`` is a padded row that is loaded and stored whole."""
    sig = types.void(types.int64, types.int64, types.float64, types.int64)

    def codegen(context, builder, signature, args):
        dst, src, x, n = args
        vec = _vector_type()
        product = builder.fmul(_masked_load(builder, src, _lane_mask(builder, n)), _splat(builder, x, vec))
        dst_ptr = builder.inttoptr(dst, vec.as_pointer())
        builder.store(builder.fadd(builder.load(dst_ptr, align=8), product), dst_ptr, align=8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _zero8(typingctx, dst):  # pragma: no cover - compiled
    """``dst[i] = 0`` for ``i < 8``."""
    sig = types.void(types.int64)

    def codegen(context, builder, signature, args):
        vec = _vector_type()
        builder.store(ir.Constant(vec, None), builder.inttoptr(args[0], vec.as_pointer()), align=8)
        return context.get_dummy_value()

    return sig, codegen


def _load_at(builder, address, ltype):
    return builder.load(builder.inttoptr(address, ltype.as_pointer()))


@intrinsic
def outer_rows8(typingctx, dst, dst_stride, src, src_stride, n_rows, n_cols, vec, n):  # pragma: no cover
    """``dst[i * dst_stride + j * n + q] = src[i * src_stride + j] * vec[q]`` for ``i < n_rows``,
    ``j < n_cols``, ``q < n <= 8`` (float64 at addresses; strides in floats).

    The rank-one rows of the separable pair product: ``vec`` and the lane mask are loaded once,
    then each ``(i, j)`` costs one broadcast, one multiply and one masked store.
    """
    sig = types.void(*([types.int64] * 8))

    def codegen(context, builder, signature, args):
        dst, dst_stride, src, src_stride, n_rows, n_cols, vec_at, n = args
        i64 = ir.IntType(64)
        eight = ir.Constant(i64, 8)
        mask = _lane_mask(builder, n)
        vtype = _vector_type()
        row = _masked_load(builder, vec_at, mask)
        with cgutils.for_range(builder, n_rows) as outer:
            i = outer.index
            src_row = builder.add(src, builder.mul(builder.mul(i, src_stride), eight))
            dst_row = builder.add(dst, builder.mul(builder.mul(i, dst_stride), eight))
            with cgutils.for_range(builder, n_cols) as inner:
                j = inner.index
                x = _load_at(builder, builder.add(src_row, builder.mul(j, eight)), ir.DoubleType())
                value = builder.fmul(row, _splat(builder, x, vtype))
                _masked_store(builder, value, builder.add(dst_row, builder.mul(builder.mul(j, n), eight)), mask)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def accumulate_cg8(typingctx, tmp, tmp_stride, a_row, n, y_row, m1, m2, mu, coef, e0, e1):  # pragma: no cover
    """``tmp[mu_e * tmp_stride + p] += (coef_e * y_row[m2_e]) * a_row[m1_e * n + p]`` for
    ``e0 <= e < e1`` and ``p < n <= 8``, skipping terms whose factor is zero.

    ``m1, m2, mu`` are addresses of int32 arrays, ``coef`` of a float64 array; ``tmp`` rows are
    padded to 8 floats (loaded and stored whole, so that repeated updates of one row are
    forwarded from store to load).  Each lane computes ``tmp + (c y) a`` exactly as the scalar
    code.
    """
    sig = types.void(*([types.int64] * 11))

    def codegen(context, builder, signature, args):
        tmp, tmp_stride, a_row, n, y_row, m1_at, m2_at, mu_at, coef_at, e0, e1 = args
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        four = ir.Constant(i64, 4)
        eight = ir.Constant(i64, 8)
        vtype = _vector_type()
        mask = _lane_mask(builder, n)
        count = builder.sub(e1, e0)
        with cgutils.for_range(builder, count) as loop:
            e = builder.add(loop.index, e0)
            m2 = builder.sext(_load_at(builder, builder.add(m2_at, builder.mul(e, four)), i32), i64)
            c = _load_at(builder, builder.add(coef_at, builder.mul(e, eight)), ir.DoubleType())
            yv = _load_at(builder, builder.add(y_row, builder.mul(m2, eight)), ir.DoubleType())
            cy = builder.fmul(c, yv)
            with builder.if_then(builder.fcmp_unordered("!=", cy, ir.Constant(ir.DoubleType(), 0.0))):
                m1 = builder.sext(_load_at(builder, builder.add(m1_at, builder.mul(e, four)), i32), i64)
                mu = builder.sext(_load_at(builder, builder.add(mu_at, builder.mul(e, four)), i32), i64)
                src = builder.add(a_row, builder.mul(builder.mul(m1, n), eight))
                dst = builder.inttoptr(
                    builder.add(tmp, builder.mul(builder.mul(mu, tmp_stride), eight)), vtype.as_pointer()
                )
                product = builder.fmul(_masked_load(builder, src, mask), _splat(builder, cy, vtype))
                builder.store(builder.fadd(builder.load(dst, align=8), product), dst, align=8)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, inline="always")
def padded(n):  # pragma: no cover - compiled
    """``n`` rounded up to a whole number of 8-float vectors."""
    return (n + _LANES - 1) // _LANES * _LANES


@numba.njit(cache=True, inline="always")
def zero_padded(dst, n):  # pragma: no cover - compiled
    """``dst[i] = 0`` for ``i < padded(n)``."""
    for i in range(0, n, _LANES):
        _zero8(dst + 8 * i)


@numba.njit(cache=True, inline="always")
def axpy_padded(dst, src, x, n):  # pragma: no cover - compiled
    """``dst[i] += x * src[i]`` for ``i < n``, where ``dst`` is a row of ``padded(n)`` floats
    whose padding stays zero.  Unmasked loads and stores of ``dst``: a row updated many times in
    a row is then forwarded from store to load (masked stores are not, on common CPUs)."""
    for i in range(0, n, _LANES):
        _axpy8_padded(dst + 8 * i, src + 8 * i, x, n - i)


@numba.njit(cache=True, inline="always")
def scale_to(dst, src, x, n):  # pragma: no cover - compiled
    """``dst[i] = x * src[i]`` for ``i < n``: float64 rows at addresses ``dst`` and ``src``."""
    for i in range(0, n, _LANES):
        _scale8(dst + 8 * i, src + 8 * i, x, n - i)


@intrinsic
def _stream_line(typingctx, dst, src):  # pragma: no cover - compiled
    """Copy 8 float64 from address ``src`` to the 64-byte aligned address ``dst``, bypassing caches."""
    sig = types.void(types.int64, types.int64)

    def codegen(context, builder, signature, args):
        vec = ir.VectorType(ir.DoubleType(), 8)
        src_ptr = builder.inttoptr(args[1], vec.as_pointer())
        dst_ptr = builder.inttoptr(args[0], vec.as_pointer())
        value = builder.load(src_ptr, align=8)
        store = builder.store(value, dst_ptr, align=_LINE)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store_fence(typingctx):  # pragma: no cover - compiled
    """Order earlier non-temporal stores before later stores (``sfence`` on x86)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence")
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True)
def copy_to_address(dst, src, start, n, nontemporal):  # pragma: no cover - compiled
    """Copy ``src[start : start + n]`` (float64, C-contiguous) to the float64 buffer at ``dst``.

    With ``nontemporal``, the whole 64-byte lines of the destination are written with
    non-temporal stores (call :func:`store_fence` before the output is read by another thread);
    otherwise, and for the unaligned head and tail, with ordinary stores.
    """
    out = float_pointer(dst)
    i = 0
    if nontemporal:
        head = ((_LINE - dst % _LINE) % _LINE) // 8
        if dst % 8 != 0 or head > n:
            head = n
        for e in range(head):
            out[e] = src[start + e]
        i = head
        base = src.ctypes.data + 8 * start
        while i + 8 <= n:
            _stream_line(dst + 8 * i, base + 8 * i)
            i += 8
    for e in range(np.uint64(i), np.uint64(n)):
        out[e] = src[np.uint64(start) + e]
