"""Hand-written descriptors for testing ncsym.testing: correct ones and deliberately broken ones.

The correct descriptors follow DESIGN.md: per-atom neighbour sums of ``Y_l(r_ij) w(r_ij)``
(``w`` a Gaussian times a smooth cutoff) and pair features ``Y_l(r_ij) w(r_ij)`` symmetrised as
``(x_ij ± x_ji) / sqrt 2`` for same-species pairs.  Real harmonics come from sphericart (same
order and signs as ncsym), neighbours from ``ase.neighborlist`` (periodic images included).
Each broken descriptor violates exactly one rule.
"""

import numpy as np
from ase.neighborlist import neighbor_list

from ncsym.blocks import Block, BlockMap, Labels

#: Angular order, cutoff radius (Angstrom) and Gaussian decay of the test descriptors.
LMAX = 3
CUTOFF = 3.0
DECAY = 0.5


def harmonics(vectors: np.ndarray, lmax: int = LMAX) -> np.ndarray:
    """Real spherical harmonics of ``vectors``, shape (n, (lmax + 1)**2).

    The zero vector gets ``Y_0^0`` and zeros for ``l > 0`` (no direction).
    """
    import sphericart

    vectors = np.ascontiguousarray(vectors, dtype=np.float64).reshape(-1, 3)
    out = np.zeros((len(vectors), (lmax + 1) ** 2))
    nonzero = np.linalg.norm(vectors, axis=1) > 0
    if nonzero.any():
        out[nonzero] = sphericart.SphericalHarmonics(lmax).compute(vectors[nonzero])
    out[~nonzero, 0] = 0.5 / np.sqrt(np.pi)
    return out


def _weights(distances: np.ndarray) -> np.ndarray:
    cutoff = 0.5 * (1.0 + np.cos(np.pi * np.minimum(distances, CUTOFF) / CUTOFF))
    return np.exp(-DECAY * distances**2) * cutoff


def _neighbours(frame):
    """``i, j, r_ij, shifts`` for all pairs i != j (and periodic self-images) within CUTOFF."""
    i, j, vectors, shifts = neighbor_list("ijDS", frame, CUTOFF, self_interaction=False)
    return i, j, vectors, shifts


def density_values(frame, lmax: int = LMAX) -> tuple[list[np.ndarray], list[int]]:
    """Per-atom ``sum_{j in a} w(r_ij) Y_l(r_ij)``: one array (n_atoms, 2l+1, n_species) per l."""
    species = sorted(set(int(z) for z in frame.numbers))
    i, j, vectors, _ = _neighbours(frame)
    weights = _weights(np.linalg.norm(vectors, axis=1))
    y = harmonics(vectors, lmax) * weights[:, None]
    channel = np.searchsorted(species, frame.numbers[j]) if len(j) else np.zeros(0, dtype=int)
    out = []
    for l in range(lmax + 1):
        values = np.zeros((len(frame), 2 * l + 1, len(species)))
        np.add.at(values, (i, slice(None), channel), y[:, l * l : (l + 1) ** 2])
        out.append(values)
    return out, species


def _atom_samples(n: int) -> Labels:
    return Labels(("system", "atom"), np.stack([np.zeros(n, dtype=int), np.arange(n)], axis=1))


def _density_map(frame, values: list[np.ndarray], species, sigmas=None) -> BlockMap:
    sigmas = sigmas or [1] * len(values)
    properties = Labels(("neighbor_type",), np.asarray(species).reshape(-1, 1))
    keys = Labels(("o3_lambda", "o3_sigma"), [[l, s] for l, s in enumerate(sigmas)])
    blocks = [Block(v, _atom_samples(len(frame)), properties) for v in values]
    return BlockMap(keys, blocks)


def density(frame) -> BlockMap:
    """Correct per-atom equivariant descriptor (keys o3_lambda, o3_sigma)."""
    values, species = density_values(frame)
    return _density_map(frame, values, species)


def density_arrays(frame) -> dict:
    """The same features as a dict of arrays ``{"l0": (n, 1, n_species), ...}``."""
    values, _ = density_values(frame)
    return {f"l{l}": v for l, v in enumerate(values)}


def density_flat(frame) -> np.ndarray:
    """All orders on one flattened (l, m) axis: shape (n_species, n_atoms, (LMAX + 1)**2)."""
    values, _ = density_values(frame)
    return np.concatenate(values, axis=1).transpose(2, 0, 1)


def invariants(frame) -> np.ndarray:
    """Rotation invariants ``|X_l|^2`` per atom, shape (n_atoms, LMAX + 1)."""
    values, _ = density_values(frame)
    return np.stack([np.sum(v**2, axis=(1, 2)) for v in values], axis=1)


def pair_features(frame, *, symmetrise: bool = True, lmax: int = LMAX) -> BlockMap:
    """Pair features ``x_ij = c_i Y_l(r_ij) w(r_ij)`` stored once per unordered pair.

    ``c_i = 1 + (number of neighbours of i) / 10`` decorates each pair with its first atom's
    environment so that both symmetrised combinations are non-zero.  Same-species pairs are
    stored with ``i < j`` (self-images ``(i, i, S)`` with ``S > 0`` lexicographically) as
    ``(x_ij ± x_ji) / sqrt 2`` with block_type ±1 (or, with ``symmetrise=False``, as ``x_ij``
    under block_type +1: the bug the kit must catch).  Different species: lower atomic number
    first, block_type 2.
    """
    i, j, vectors, shifts = _neighbours(frame)
    coordination = 1.0 + np.bincount(i, minlength=len(frame)) / 10.0
    weights = _weights(np.linalg.norm(vectors, axis=1))
    y_ij = harmonics(vectors, lmax) * weights[:, None]
    numbers = frame.numbers
    rows = {}  # block_type -> list of (first, second, shift, features)
    for p in range(len(i)):
        a, b, shift = int(i[p]), int(j[p]), tuple(int(s) for s in shifts[p])
        za, zb = numbers[a], numbers[b]
        if za != zb:
            if za > zb:
                continue  # the pair is stored from the lower atomic number
            rows.setdefault(2, []).append((a, b, shift, coordination[a] * y_ij[p]))
            continue
        if a > b or (a == b and shift <= (0, 0, 0)):
            continue
        x_ij = coordination[a] * y_ij[p]
        # x_ji: seen from b, the vector is -r_ij, and Y_l(-r) = (-1)^l Y_l(r)
        parity = np.concatenate([np.full(2 * l + 1, (-1.0) ** l) for l in range(lmax + 1)])
        x_ji = coordination[b] * parity * y_ij[p]
        if symmetrise:
            rows.setdefault(1, []).append((a, b, shift, (x_ij + x_ji) / np.sqrt(2.0)))
            rows.setdefault(-1, []).append((a, b, shift, (x_ij - x_ji) / np.sqrt(2.0)))
        else:
            rows.setdefault(1, []).append((a, b, shift, x_ij))
    names = ("system", "first_atom", "second_atom", "cell_shift_a", "cell_shift_b", "cell_shift_c")
    keys, blocks = [], []
    for block_type in sorted(rows):
        entries = rows[block_type]
        samples = Labels(names, [[0, a, b, *shift] for a, b, shift, _ in entries])
        features = np.array([f for *_, f in entries])
        for l in range(lmax + 1):
            values = features[:, l * l : (l + 1) ** 2, None]
            keys.append([l, 1, block_type])
            blocks.append(Block(values, samples, Labels.single()))
    return BlockMap(Labels(("o3_lambda", "o3_sigma", "block_type"), keys), blocks)


# ----------------------------------------------------------------------------- broken ones
def wrong_sigma(frame) -> BlockMap:
    """A true vector (lambda = 1) labelled as a pseudo-vector (sigma = -1)."""
    values, species = density_values(frame)
    return _density_map(frame, values, species, sigmas=[1, -1, 1, 1])


def unrotated_component(frame) -> BlockMap:
    """The m = 0 component of lambda = 2 replaced by a rotation invariant."""
    values, species = density_values(frame)
    values[2][:, 2, :] = np.linalg.norm(values[2], axis=1)
    return _density_map(frame, values, species)


def wrong_m_order(frame) -> BlockMap:
    """lambda = 1 in (x, y, z) order instead of (y, z, x)."""
    values, species = density_values(frame)
    values[1] = values[1][:, [2, 0, 1], :]
    return _density_map(frame, values, species)


def non_symmetrised_pairs(frame) -> BlockMap:
    """Pairs stored once without (x_ij ± x_ji) / sqrt 2."""
    return pair_features(frame, symmetrise=False)


def translation_dependent(frame) -> BlockMap:
    """Adds ``Y_l(x_i)`` of the absolute position: rotation-equivariant about the origin only."""
    values, species = density_values(frame)
    y = harmonics(frame.positions) * 0.1
    for l, v in enumerate(values):
        v += y[:, l * l : (l + 1) ** 2, None]
    return _density_map(frame, values, species)


def index_dependent(frame) -> BlockMap:
    """Neighbours weighted by their index: changes when atoms are relabelled."""
    i, j, vectors, _ = _neighbours(frame)
    y = harmonics(vectors) * (_weights(np.linalg.norm(vectors, axis=1)) * (1.0 + j))[:, None]
    values = []
    for l in range(LMAX + 1):
        v = np.zeros((len(frame), 2 * l + 1, 1))
        np.add.at(v, (i, slice(None), 0), y[:, l * l : (l + 1) ** 2])
        values.append(v)
    return _density_map(frame, values, [0])


def ignores_periodic_images(frame) -> BlockMap:
    """Neighbours without periodic images: changes when atoms move by lattice vectors."""
    open_frame = frame.copy()
    open_frame.pbc = False
    return density(open_frame)


def size_normalised(frame) -> BlockMap:
    """Divided by the number of atoms: fine for one cell, wrong for a supercell."""
    values, species = density_values(frame)
    return _density_map(frame, [v / len(frame) for v in values], species)


def nan_for_two_atoms_or_more(frame) -> BlockMap:
    """Returns NaN as soon as the structure has two atoms."""
    result = density(frame)
    if len(frame) >= 2:
        result.blocks[0].values[0, 0, 0] = np.nan
    return result


def raises_for_hydrogen(frame) -> BlockMap:
    """Raises for any structure containing hydrogen."""
    if 1 in frame.numbers:
        raise RuntimeError("hydrogen is not supported")
    return density(frame)


def wrong_lambda(frame) -> BlockMap:
    """Declares o3_lambda = 2 for a block with 3 components."""
    result = density(frame)
    keys = np.array(result.keys.values)
    keys[1, 0] = 2
    return BlockMap(Labels(result.keys.names, keys), result.blocks)


def drops_last_atom(frame) -> np.ndarray:
    """Array output with one atom fewer than the structure."""
    return density_values(frame)[0][1][:-1]
