"""Numba cell-list neighbour search over many structures at once.

Each structure is binned in its own "box": the unit cell for periodic structures (fractional
coordinates, wrapped into ``[0, 1)``; strongly skewed cells are replaced by a Minkowski-reduced
basis of the same lattice, and shifts are mapped back), or an axis-aligned bounding box for
molecules.  Bins
are searched ``n_search`` steps away in every direction; for periodic boxes a bin index past
the edge wraps around and adds a lattice shift, so every periodic image within the cutoff is
found, even when the cutoff exceeds the cell.  Completeness rests on one bound: two points
closer than ``r_c`` differ by less than ``r_c / d_k`` in fractional coordinate ``k``, with
``d_k`` the distance between lattice planes ``k``; the wrapper chooses
``n_search[k] >= r_c * n_bins[k] / d_k``.

Pairs come out as a full list (``(i, j)`` and ``(j, i)``), grouped by first atom and sorted by
``(second_atom, cell_shift)`` inside each group, so the order is deterministic.  The vector is
``r_ij = r_j - r_i + shift @ cell`` computed from the original positions.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["neighbor_pairs", "box_geometry"]


@numba.njit(cache=True)
def box_geometry(boxes):  # pragma: no cover - compiled
    """Volume, row lengths, distances between lattice planes and inverse of 3x3 boxes.

    Parameters
    ----------
    boxes : float64 (n, 3, 3)
        Box vectors as rows (Angstrom), non-singular.

    Returns
    -------
    volume : float64 (n,)
        ``|det|`` (Angstrom^3).
    lengths : float64 (n, 3)
        Length of every box vector.
    plane_distances : float64 (n, 3)
        Distance between the lattice planes spanned by the two other vectors,
        ``volume / |b_{k+1} x b_{k+2}|``.
    inverse : float64 (n, 3, 3)
        Matrix inverse (fractional coordinates are ``r @ inverse``).
    """
    n = boxes.shape[0]
    volume = np.empty(n)
    lengths = np.empty((n, 3))
    planes = np.empty((n, 3))
    inverse = np.empty((n, 3, 3))
    cross = np.empty((3, 3))
    for f in range(n):
        b = boxes[f]
        for k in range(3):
            u = (k + 1) % 3
            v = (k + 2) % 3
            # cross[k] = b[u] x b[v]: column k of the adjugate
            cross[k, 0] = b[u, 1] * b[v, 2] - b[u, 2] * b[v, 1]
            cross[k, 1] = b[u, 2] * b[v, 0] - b[u, 0] * b[v, 2]
            cross[k, 2] = b[u, 0] * b[v, 1] - b[u, 1] * b[v, 0]
            lengths[f, k] = math.sqrt(b[k, 0] ** 2 + b[k, 1] ** 2 + b[k, 2] ** 2)
        det = b[0, 0] * cross[0, 0] + b[0, 1] * cross[0, 1] + b[0, 2] * cross[0, 2]
        volume[f] = abs(det)
        for k in range(3):
            planes[f, k] = volume[f] / math.sqrt(cross[k, 0] ** 2 + cross[k, 1] ** 2 + cross[k, 2] ** 2)
            for c in range(3):
                inverse[f, c, k] = cross[k, c] / det
    return volume, lengths, planes, inverse


#: Relative band around ``cutoff**2`` in which the wrapped-position distance only preselects and
#: the pair vector ``r_j - r_i + shift @ cell`` decides (far wider than the round-off of either).
BORDERLINE = 1e-8


@numba.njit(cache=True)
def _scan_atom(  # pragma: no cover - compiled
    i, frame, positions, wrapped, boxes, cells, transforms, periodic, n_bins, n_search, bin_first,
    bin_start, bin_atoms, atom_bins, wrap_offsets, cutoff2, self_pairs, fill, start, out_second,
    out_shift, out_vectors,
):
    """Visit the neighbours of atom ``i``; write them from ``start`` when ``fill``.

    Candidates are tested on the wrapped positions (``wrapped[j] - wrapped[i]`` plus the
    image translation of the visited bin, computed once per bin); the vectors of accepted
    pairs are computed from the original positions, ``r_j - r_i + shift @ cell``, which is
    exactly antisymmetric under exchange.  Candidates within a relative :data:`BORDERLINE` of
    the cutoff are decided on that vector, so ``(i, j, S)`` is listed if and only if
    ``(j, i, -S)`` is, even for a pair exactly at the cutoff.
    Returns the number of pairs found (self pair included when requested).
    """
    count = 0
    # candidates this close to the cutoff are decided on the exact pair vector (see below)
    cutoff2_low = cutoff2 * (1.0 - BORDERLINE)
    cutoff2_high = cutoff2 * (1.0 + BORDERLINE)
    if self_pairs:
        if fill:
            out_second[start] = i
            for k in range(3):
                out_shift[start, k] = 0
                out_vectors[start, k] = 0.0
        count += 1
    nb0 = n_bins[frame, 0]
    nb1 = n_bins[frame, 1]
    nb2 = n_bins[frame, 2]
    first_bin = bin_first[frame]
    is_periodic = periodic[frame]
    wx = wrapped[i, 0]
    wy = wrapped[i, 1]
    wz = wrapped[i, 2]
    for da in range(-n_search[frame, 0], n_search[frame, 0] + 1):
        ba = atom_bins[i, 0] + da
        sa = 0
        if is_periodic:
            if ba < 0 or ba >= nb0:
                sa = ba // nb0
                ba -= sa * nb0
        elif ba < 0 or ba >= nb0:
            continue
        for db in range(-n_search[frame, 1], n_search[frame, 1] + 1):
            bb = atom_bins[i, 1] + db
            sb = 0
            if is_periodic:
                if bb < 0 or bb >= nb1:
                    sb = bb // nb1
                    bb -= sb * nb1
            elif bb < 0 or bb >= nb1:
                continue
            for dc in range(-n_search[frame, 2], n_search[frame, 2] + 1):
                bc = atom_bins[i, 2] + dc
                sc = 0
                if is_periodic:
                    if bc < 0 or bc >= nb2:
                        sc = bc // nb2
                        bc -= sc * nb2
                elif bc < 0 or bc >= nb2:
                    continue
                # translation of this image of the bin, in Cartesian coordinates
                tx = sa * boxes[frame, 0, 0] + sb * boxes[frame, 1, 0] + sc * boxes[frame, 2, 0] - wx
                ty = sa * boxes[frame, 0, 1] + sb * boxes[frame, 1, 1] + sc * boxes[frame, 2, 1] - wy
                tz = sa * boxes[frame, 0, 2] + sb * boxes[frame, 1, 2] + sc * boxes[frame, 2, 2] - wz
                flat = first_bin + (ba * nb1 + bb) * nb2 + bc
                for idx in range(bin_start[flat], bin_start[flat + 1]):
                    j = bin_atoms[idx]
                    dx = wrapped[j, 0] + tx
                    dy = wrapped[j, 1] + ty
                    dz = wrapped[j, 2] + tz
                    d2 = dx * dx + dy * dy + dz * dz
                    if d2 >= cutoff2_high:
                        continue
                    # shift in the binning (reduced) basis
                    r0 = sa + wrap_offsets[i, 0] - wrap_offsets[j, 0]
                    r1 = sb + wrap_offsets[i, 1] - wrap_offsets[j, 1]
                    r2 = sc + wrap_offsets[i, 2] - wrap_offsets[j, 2]
                    if j == i and r0 == 0 and r1 == 0 and r2 == 0:
                        continue
                    borderline = d2 > cutoff2_low
                    if fill or borderline:
                        # r_j - r_i + shift @ cell from the original positions: exactly the
                        # negative of the vector of (j, i, -shift), so both directions of a
                        # pair at the cutoff get the same decision
                        vx = positions[j, 0] - positions[i, 0]
                        vy = positions[j, 1] - positions[i, 1]
                        vz = positions[j, 2] - positions[i, 2]
                        s0 = 0
                        s1 = 0
                        s2 = 0
                        if is_periodic:
                            # the same shift in the cell's basis
                            s0 = r0 * transforms[frame, 0, 0] + r1 * transforms[frame, 1, 0] + r2 * transforms[frame, 2, 0]
                            s1 = r0 * transforms[frame, 0, 1] + r1 * transforms[frame, 1, 1] + r2 * transforms[frame, 2, 1]
                            s2 = r0 * transforms[frame, 0, 2] + r1 * transforms[frame, 1, 2] + r2 * transforms[frame, 2, 2]
                            vx += s0 * cells[frame, 0, 0] + s1 * cells[frame, 1, 0] + s2 * cells[frame, 2, 0]
                            vy += s0 * cells[frame, 0, 1] + s1 * cells[frame, 1, 1] + s2 * cells[frame, 2, 1]
                            vz += s0 * cells[frame, 0, 2] + s1 * cells[frame, 1, 2] + s2 * cells[frame, 2, 2]
                        if borderline and vx * vx + vy * vy + vz * vz >= cutoff2:
                            continue
                    if fill:
                        p = start + count
                        out_second[p] = j
                        out_shift[p, 0] = s0
                        out_shift[p, 1] = s1
                        out_shift[p, 2] = s2
                        out_vectors[p, 0] = vx
                        out_vectors[p, 1] = vy
                        out_vectors[p, 2] = vz
                    count += 1
    return count


@numba.njit(cache=True)
def _before(p, q, second, shift):  # pragma: no cover - compiled
    """Whether pair ``p`` sorts before pair ``q`` by ``(second, shift_a, shift_b, shift_c)``."""
    if second[p] != second[q]:
        return second[p] < second[q]
    for k in range(3):
        if shift[p, k] != shift[q, k]:
            return shift[p, k] < shift[q, k]
    return False


@numba.njit(cache=True)
def _sort_segment(start, stop, second, shift, vectors):  # pragma: no cover - compiled
    """Sort pairs ``start:stop`` by ``(second, shift_a, shift_b, shift_c)`` in place.

    Insertion sort for the usual short segments (no allocation); a key sort for long ones.
    """
    n = stop - start
    if n < 2:
        return
    if n <= 64:
        for p in range(start + 1, stop):
            q = p
            while q > start and _before(q, q - 1, second, shift):
                second[q], second[q - 1] = second[q - 1], second[q]
                for k in range(3):
                    shift[q, k], shift[q - 1, k] = shift[q - 1, k], shift[q, k]
                    vectors[q, k], vectors[q - 1, k] = vectors[q - 1, k], vectors[q, k]
                q -= 1
        return
    lo = np.empty(3, dtype=np.int64)
    width = np.empty(3, dtype=np.int64)
    for k in range(3):
        smin = shift[start, k]
        smax = shift[start, k]
        for p in range(start + 1, stop):
            smin = min(smin, shift[p, k])
            smax = max(smax, shift[p, k])
        lo[k] = smin
        width[k] = smax - smin + 1
    keys = np.empty(n, dtype=np.int64)
    for p in range(start, stop):
        keys[p - start] = (
            (second[p] * width[0] + shift[p, 0] - lo[0]) * width[1] + shift[p, 1] - lo[1]
        ) * width[2] + shift[p, 2] - lo[2]
    order = np.argsort(keys)
    tmp_second = second[start:stop].copy()
    tmp_shift = shift[start:stop].copy()
    tmp_vectors = vectors[start:stop].copy()
    for q in range(n):
        o = order[q]
        second[start + q] = tmp_second[o]
        for k in range(3):
            shift[start + q, k] = tmp_shift[o, k]
            vectors[start + q, k] = tmp_vectors[o, k]


@numba.njit(cache=True, parallel=True)
def neighbor_pairs(  # pragma: no cover - compiled
    positions, atom_frame, cells, boxes, inv_boxes, transforms, origins, periodic, n_bins, n_search,
    cutoff, self_pairs,
):
    """All pairs closer than ``cutoff`` in every frame, as a sorted full list.

    Parameters
    ----------
    positions : float64 (n_atoms, 3)
        Concatenated Cartesian positions of all frames (Angstrom).
    atom_frame : int64 (n_atoms,)
        Frame of every atom.
    cells : float64 (n_frames, 3, 3)
        Lattice vectors as rows (periodic frames; unused for the others).
    boxes : float64 (n_frames, 3, 3)
        The binning boxes (rows): a reduced basis ``B' = U @ cell`` of the lattice for periodic
        frames, an axis-aligned bounding box for molecules.
    inv_boxes : float64 (n_frames, 3, 3)
        Inverse of the binning box, whose rows are a reduced basis ``B' = U @ cell`` of the
        lattice for periodic frames, or an axis-aligned bounding box for molecules
        (fractional = (position - origin) @ inv_box).
    transforms : int64 (n_frames, 3, 3)
        Unimodular ``U`` above: a shift ``s'`` in the reduced basis is ``s' @ U`` in the
        cell's basis.
    origins : float64 (n_frames, 3)
        Box origins (zero for periodic frames).
    periodic : bool (n_frames,)
    n_bins, n_search : int64 (n_frames, 3)
        Bins per box vector and bins searched on each side.
    cutoff : float
        Pairs with ``|r_ij| < cutoff`` are kept.
    self_pairs : bool
        Also list ``(i, i)`` with zero shift (sorted like every other pair).

    Returns
    -------
    first, second : int64 (n_pairs,)
        Global atom indices (rows of ``positions``); ``first`` is non-decreasing.
    shifts : int64 (n_pairs, 3)
        Lattice shifts (zero for non-periodic frames).
    vectors : float64 (n_pairs, 3)
        ``r_j - r_i + shifts @ cell``.
    """
    n_atoms = positions.shape[0]
    n_frames = cells.shape[0]
    atom_bins = np.empty((n_atoms, 3), dtype=np.int64)
    wrap_offsets = np.zeros((n_atoms, 3), dtype=np.int64)
    wrapped = np.empty((n_atoms, 3))
    for i in numba.prange(n_atoms):
        f = atom_frame[i]
        for k in range(3):
            frac = 0.0
            for c in range(3):
                frac += (positions[i, c] - origins[f, c]) * inv_boxes[f, c, k]
            if periodic[f]:
                o = math.floor(frac)
                frac -= o
                if frac >= 1.0:  # rounding of values just below an integer
                    frac -= 1.0
                    o += 1.0
                if frac < 0.0:
                    frac = 0.0
                wrap_offsets[i, k] = np.int64(o)
            b = np.int64(frac * n_bins[f, k])
            if b < 0:
                b = 0
            elif b >= n_bins[f, k]:
                b = n_bins[f, k] - 1
            atom_bins[i, k] = b
        # position moved into the box: r_i - wrap_offsets[i] @ box
        for c in range(3):
            w = positions[i, c]
            for k in range(3):
                w -= wrap_offsets[i, k] * boxes[f, k, c]
            wrapped[i, c] = w

    # counting sort of atoms by global bin index
    bin_first = np.zeros(n_frames + 1, dtype=np.int64)
    for f in range(n_frames):
        bin_first[f + 1] = bin_first[f] + n_bins[f, 0] * n_bins[f, 1] * n_bins[f, 2]
    n_total_bins = bin_first[n_frames]
    bin_start = np.zeros(n_total_bins + 1, dtype=np.int64)
    flat_bin = np.empty(n_atoms, dtype=np.int64)
    for i in range(n_atoms):
        f = atom_frame[i]
        flat_bin[i] = bin_first[f] + (
            atom_bins[i, 0] * n_bins[f, 1] + atom_bins[i, 1]
        ) * n_bins[f, 2] + atom_bins[i, 2]
        bin_start[flat_bin[i] + 1] += 1
    for b in range(n_total_bins):
        bin_start[b + 1] += bin_start[b]
    fill_pos = bin_start[:-1].copy()
    bin_atoms = np.empty(n_atoms, dtype=np.int64)
    for i in range(n_atoms):
        bin_atoms[fill_pos[flat_bin[i]]] = i
        fill_pos[flat_bin[i]] += 1

    cutoff2 = cutoff * cutoff
    dummy_i = np.empty(0, dtype=np.int64)
    dummy_s = np.empty((0, 3), dtype=np.int64)
    dummy_v = np.empty((0, 3), dtype=np.float64)
    counts = np.empty(n_atoms, dtype=np.int64)
    for i in numba.prange(n_atoms):
        counts[i] = _scan_atom(
            i, atom_frame[i], positions, wrapped, boxes, cells, transforms, periodic, n_bins, n_search,
            bin_first, bin_start, bin_atoms, atom_bins, wrap_offsets, cutoff2, self_pairs, False, 0,
            dummy_i, dummy_s, dummy_v,
        )
    pair_start = np.zeros(n_atoms + 1, dtype=np.int64)
    for i in range(n_atoms):
        pair_start[i + 1] = pair_start[i] + counts[i]
    n_pairs = pair_start[n_atoms]
    first = np.empty(n_pairs, dtype=np.int64)
    second = np.empty(n_pairs, dtype=np.int64)
    shifts = np.empty((n_pairs, 3), dtype=np.int64)
    vectors = np.empty((n_pairs, 3), dtype=np.float64)
    for i in numba.prange(n_atoms):
        start = pair_start[i]
        _scan_atom(
            i, atom_frame[i], positions, wrapped, boxes, cells, transforms, periodic, n_bins, n_search,
            bin_first, bin_start, bin_atoms, atom_bins, wrap_offsets, cutoff2, self_pairs, True, start,
            second, shifts, vectors,
        )
        for p in range(start, pair_start[i + 1]):
            first[p] = i
        _sort_segment(start, pair_start[i + 1], second, shifts, vectors)
    return first, second, shifts, vectors
