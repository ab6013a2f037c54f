"""PySCF adapter: Fock / Kohn-Sham matrices of ase structures in ncsym's AO conventions.

PySCF is an optional dependency (``pip install 'ncsym[hamiltonian]'``), imported only inside
the functions that need it.  Everything returned here is in ncsym's AO order: atoms in
structure order, shells in PySCF order, ``m = -l .. l`` within each shell.  PySCF's spherical
AOs (``cart=False``) already use ncsym's real harmonics for ``l != 1`` (same order and phase,
checked against sphericart up to ``l = 4`` in the tests); p shells come as ``(px, py, pz)``
and are reordered with :data:`ncsym.conventions.PYSCF_P_ORDER` to ``m = -1, 0, 1``.

Units: positions in Angstrom, energies and matrices in Hartree.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from ..conventions import PYSCF_P_ORDER
from .blocks import check_orbitals, orbital_labels

__all__ = [
    "SCF_CONV_TOL",
    "SCF_CONV_TOL_GRAD",
    "SCFNotConvergedError",
    "HamiltonianData",
    "ao_labels",
    "pyscf_ao_permutation",
    "run_scf",
    "guess_fock",
    "cross_overlap",
    "distort",
    "make_distorted_dataset",
    "save_dataset",
    "load_dataset",
    "load_water_dataset",
]

#: SCF energy convergence threshold (Hartree).
SCF_CONV_TOL = 1e-12
#: SCF orbital-gradient convergence threshold (Hartree).
SCF_CONV_TOL_GRAD = 1e-8

#: Default displacement widths (Angstrom) for :func:`make_distorted_dataset`.
DEFAULT_SIGMA = {"H2O": 0.08, "CH3CH2OH": 0.06}

_FORMAT_VERSION = 1
_METHODS = ("RHF", "RKS")


class SCFNotConvergedError(RuntimeError):
    """Raised when an SCF calculation does not reach the requested convergence."""


def _import_pyscf():
    try:
        import pyscf  # noqa: F401
        from pyscf import dft, gto, lib, scf
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "ncsym.hamiltonian needs PySCF for electronic-structure data: "
            "pip install 'ncsym[hamiltonian]'"
        ) from None
    return gto, scf, dft, lib


# ------------------------------------------------------------------------------ molecules
def _symbols_positions(frame):
    if not hasattr(frame, "get_chemical_symbols"):
        raise TypeError(f"`frame` must be an ase.Atoms, got {type(frame).__name__}")
    positions = np.asarray(frame.get_positions(), dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        raise ValueError("`frame` positions contain NaN or infinite values")
    if len(frame) == 0:
        raise ValueError("`frame` has no atoms")
    if np.any(frame.get_pbc()):
        raise ValueError(
            "`frame` is periodic; the PySCF adapter handles molecules only: set pbc to False"
        )
    return frame.get_chemical_symbols(), positions


def _build_mol(frame, basis, *, charge: int = 0, spin: int | None = None):
    gto, _, _, _ = _import_pyscf()
    symbols, positions = _symbols_positions(frame)
    n_electrons = int(np.sum(frame.get_atomic_numbers())) - int(charge)
    if spin is None:
        spin = n_electrons % 2
    mol = gto.Mole()
    mol.atom = [(s, tuple(p)) for s, p in zip(symbols, positions, strict=True)]
    mol.unit = "Angstrom"
    mol.basis = basis
    mol.charge = int(charge)
    mol.spin = int(spin)
    mol.cart = False
    mol.verbose = 0
    try:
        mol.build(parse_arg=False, dump_input=False)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ValueError(f"PySCF could not build basis {basis!r} for {frame.get_chemical_formula()}"
                         f": {exc}") from None
    return mol


def _mol_layout(mol):
    """Per-atom shell list [(n, l), ...] in PySCF AO order, n = l + 1 + (count of l so far)."""
    per_atom = [[] for _ in range(mol.natm)]
    counts = [dict() for _ in range(mol.natm)]
    for shell in range(mol.nbas):
        atom = int(mol.bas_atom(shell))
        l = int(mol.bas_angular(shell))
        for _ in range(int(mol.bas_nctr(shell))):
            k = counts[atom].get(l, 0)
            counts[atom][l] = k + 1
            per_atom[atom].append((l + 1 + k, l))
    return per_atom


def _layout_by_species(mol, numbers) -> dict[int, list[tuple[int, int]]]:
    per_atom = _mol_layout(mol)
    layout: dict[int, list[tuple[int, int]]] = {}
    for atom, z in enumerate(numbers):
        z = int(z)
        if z not in layout:
            layout[z] = per_atom[atom]
        elif layout[z] != per_atom[atom]:
            raise ValueError(
                f"atoms of species {z} have different basis layouts ({layout[z]} and "
                f"{per_atom[atom]}); ncsym needs one layout per species"
            )
    return layout


def ao_labels(frame, basis) -> dict[int, list[tuple[int, int]]]:
    """Orbital layout per species of ``basis`` (needs only ``pyscf.gto``, no SCF).

    Parameters
    ----------
    frame : ase.Atoms
        Structure (its species select the basis functions).
    basis : str or dict
        Any basis PySCF knows, e.g. ``"def2-svp"``, ``"sto-3g"``.

    Returns
    -------
    dict
        ``{atomic_number: [(n, l), ...]}``: shells in PySCF order, each holding ``2 l + 1``
        functions ``m = -l .. l`` in ncsym's order.  ``n = l + 1 + k`` for the ``k``-th shell
        of angular momentum ``l`` on the atom (PySCF's labels for all-electron bases, e.g.
        def2-SVP oxygen ``(1,0), (2,0), (3,0), (2,1), (3,1), (3,2)``).
    """
    mol = _build_mol(frame, basis)
    return _layout_by_species(mol, frame.get_atomic_numbers())


def pyscf_ao_permutation(numbers, orbitals) -> np.ndarray:
    """Permutation taking PySCF's spherical AO order to ncsym's.

    ``M_ncsym = M_pyscf[perm][:, perm]`` and ``C_ncsym = C_pyscf[perm]`` for MO coefficients.

    Parameters
    ----------
    numbers : array_like of int, shape (n_atoms,)
    orbitals : mapping
        Shell layout per species (see :func:`ao_labels`).

    Returns
    -------
    ndarray of int64, shape (n_ao,)
    """
    orbitals = check_orbitals(orbitals)
    perm = []
    start = 0
    p_order = np.asarray(PYSCF_P_ORDER, dtype=np.int64)
    for z in np.asarray(numbers).reshape(-1):
        if int(z) not in orbitals:
            raise ValueError(f"species {int(z)} has no entry in `orbitals`")
        for _, l in orbitals[int(z)]:
            local = p_order if l == 1 else np.arange(2 * l + 1)
            perm.extend(start + local)
            start += 2 * l + 1
    return np.asarray(perm, dtype=np.int64)


def cross_overlap(frame, basis_a, basis_b) -> np.ndarray:
    """Overlap ``<chi_mu^a | chi_nu^b>`` between two AO bases on the same structure.

    Parameters
    ----------
    frame : ase.Atoms
    basis_a, basis_b : str or dict
        PySCF basis names.

    Returns
    -------
    ndarray of float64, shape (n_ao_a, n_ao_b)
        In ncsym's AO order for both bases (dimensionless).
    """
    gto, _, _, _ = _import_pyscf()
    numbers = frame.get_atomic_numbers()
    mol_a = _build_mol(frame, basis_a)
    mol_b = _build_mol(frame, basis_b)
    perm_a = pyscf_ao_permutation(numbers, _layout_by_species(mol_a, numbers))
    perm_b = pyscf_ao_permutation(numbers, _layout_by_species(mol_b, numbers))
    s_ab = gto.intor_cross("int1e_ovlp", mol_a, mol_b)
    return np.ascontiguousarray(s_ab[perm_a][:, perm_b])


# ------------------------------------------------------------------------------ data set
@dataclass
class HamiltonianData:
    """Electronic-structure data of many structures, in ncsym's AO order.

    Every list has one entry per structure.  All matrices use the AO layout of
    ``orbitals`` (atoms in structure order, shells per species, ``m = -l .. l``).

    Attributes
    ----------
    numbers : list of ndarray of int64, shape (n_atoms,)
        Atomic numbers.
    positions : list of ndarray of float64, shape (n_atoms, 3)
        Positions in Angstrom.
    fock : list of ndarray of float64, shape (n_ao, n_ao)
        Converged Fock (RHF) or Kohn-Sham (RKS) matrices, Hartree, built from the final
        density.
    overlap : list of ndarray of float64, shape (n_ao, n_ao)
        AO overlap matrices (dimensionless).
    mo_energy : list of ndarray of float64, shape (n_ao,)
        Orbital energies in Hartree, ascending: eigenvalues of ``fock`` with metric ``overlap``
        (``scipy.linalg.eigh(F, S)``).
    mo_occ : list of ndarray of float64, shape (n_ao,)
        Occupations (0 or 2 for closed-shell calculations), same order as ``mo_energy``.
    energy : list of float
        Total SCF energies, Hartree.
    orbitals : dict
        ``{atomic_number: [(n, l), ...]}`` shell layout per species.
    basis, method, xc : str
        Basis set name, ``"RHF"`` or ``"RKS"``, exchange-correlation functional (``""`` for RHF).
    info : dict
        JSON-serialisable provenance (e.g. ``molecule``, ``sigma``, ``seed`` of
        :func:`make_distorted_dataset`), kept by :func:`save_dataset`.
    """

    numbers: list
    positions: list
    fock: list
    overlap: list
    mo_energy: list
    mo_occ: list
    energy: list
    orbitals: dict
    basis: str
    method: str
    xc: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.orbitals = {z: list(s) for z, s in check_orbitals(self.orbitals).items()}
        n = len(self.numbers)
        for name in ("positions", "fock", "overlap", "mo_energy", "mo_occ", "energy"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"`{name}` has {len(getattr(self, name))} entries, `numbers` has {n}"
                )

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, index) -> HamiltonianData:
        """A subset: ``data[3]``, ``data[:100]`` or ``data[[0, 5, 7]]``."""
        if isinstance(index, slice):
            idx = list(range(len(self)))[index]
        elif np.ndim(index) == 0:
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} structures")
            idx = [i % len(self)]
        else:
            idx = [int(i) for i in np.asarray(index).reshape(-1)]

        def pick(values):
            return [values[i] for i in idx]

        return HamiltonianData(
            numbers=pick(self.numbers),
            positions=pick(self.positions),
            fock=pick(self.fock),
            overlap=pick(self.overlap),
            mo_energy=pick(self.mo_energy),
            mo_occ=pick(self.mo_occ),
            energy=pick(self.energy),
            orbitals=self.orbitals,
            basis=self.basis,
            method=self.method,
            xc=self.xc,
            info=dict(self.info),
        )

    @property
    def n_occupied(self) -> list[int]:
        """Number of occupied orbitals per structure."""
        return [int(np.count_nonzero(occ > 0)) for occ in self.mo_occ]

    @property
    def frames(self) -> list:
        """The structures as ``ase.Atoms`` (positions in Angstrom, no cell)."""
        import ase

        return [ase.Atoms(numbers=z, positions=p) for z, p in zip(self.numbers, self.positions,
                                                                   strict=True)]

    @property
    def ao_labels(self) -> list[np.ndarray]:
        """AO labels per structure: int arrays ``(n_ao, 4)`` with columns ``atom, n, l, m``."""
        return [orbital_labels(z, self.orbitals) for z in self.numbers]

    def save(self, path: str | os.PathLike) -> None:
        """Write to a compressed ``.npz`` file atomically (see :func:`save_dataset`)."""
        save_dataset(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HamiltonianData:
        """Read a file written by :meth:`save`."""
        return load_dataset(path)


def _mean_field(frame, basis, method: str, xc: str, charge: int):
    """PySCF molecule and closed-shell mean-field object; ``method`` (upper case) and the
    electron count are checked here, for :func:`run_scf` and :func:`guess_fock` alike."""
    _, scf, dft, _ = _import_pyscf()
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}")
    n_electrons = int(np.sum(frame.get_atomic_numbers())) - int(charge)
    if n_electrons % 2:
        raise ValueError(
            f"`method` {method} is closed-shell but {frame.get_chemical_formula()} with charge "
            f"{charge} has {n_electrons} electrons (odd)"
        )
    mol = _build_mol(frame, basis, charge=charge, spin=0)
    if method == "RHF":
        mf = scf.RHF(mol)
    else:
        mf = dft.RKS(mol)
        mf.xc = xc
    mf.verbose = 0
    return mol, mf


def run_scf(
    frame,
    basis="def2-svp",
    method: str = "RHF",
    xc: str = "PBE",
    *,
    charge: int = 0,
    conv_tol: float = SCF_CONV_TOL,
    conv_tol_grad: float = SCF_CONV_TOL_GRAD,
    max_cycle: int = 100,
    on_unconverged: str = "raise",
) -> HamiltonianData:
    """Closed-shell SCF of one molecule, returned as a one-structure :class:`HamiltonianData`.

    Parameters
    ----------
    frame : ase.Atoms
        Molecule, positions in Angstrom, no periodicity.
    basis : str or dict
        Any basis PySCF knows.
    method : {"RHF", "RKS"}
        Hartree-Fock or Kohn-Sham DFT (restricted, closed shell).
    xc : str
        Exchange-correlation functional for ``"RKS"`` (ignored for ``"RHF"``).
    charge : int
        Total charge; the electron count must be even.
    conv_tol, conv_tol_grad : float
        Energy and orbital-gradient thresholds, Hartree.
    max_cycle : int
        Maximum SCF iterations.
    on_unconverged : {"raise", "warn"}
        What to do when the SCF does not converge: raise :class:`SCFNotConvergedError` or
        emit a ``RuntimeWarning`` and return the last iterate.

    Returns
    -------
    HamiltonianData
        Fock/KS matrix built from the final density, overlap, orbital energies (from
        ``eigh(F, S)``), occupations, total energy.

    Raises
    ------
    ValueError
        Unknown method, odd electron count, unknown basis.
    SCFNotConvergedError
        Unconverged SCF with ``on_unconverged="raise"``.
    """
    _import_pyscf()  # a clear error first when PySCF is missing
    if on_unconverged not in ("raise", "warn"):
        raise ValueError(f"`on_unconverged` must be 'raise' or 'warn', got {on_unconverged!r}")
    method = str(method).upper()
    mol, mf = _mean_field(frame, basis, method, xc, charge)
    mf.conv_tol = float(conv_tol)
    mf.conv_tol_grad = float(conv_tol_grad)
    mf.max_cycle = int(max_cycle)
    energy = float(mf.kernel())
    if not mf.converged:
        message = (
            f"{method}/{basis} SCF of {frame.get_chemical_formula()} did not converge in "
            f"{max_cycle} cycles (conv_tol={conv_tol:g}, conv_tol_grad={conv_tol_grad:g})"
        )
        if on_unconverged == "raise":
            raise SCFNotConvergedError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    numbers = np.asarray(frame.get_atomic_numbers(), dtype=np.int64)
    orbitals = _layout_by_species(mol, numbers)
    perm = pyscf_ao_permutation(numbers, orbitals)
    dm = mf.make_rdm1()
    fock = np.asarray(mf.get_fock(dm=dm))[perm][:, perm]
    overlap = np.asarray(mf.get_ovlp())[perm][:, perm]
    fock = 0.5 * (fock + fock.T)
    overlap = 0.5 * (overlap + overlap.T)
    mo_energy = scipy.linalg.eigh(fock, overlap, eigvals_only=True)
    mo_occ = np.zeros_like(mo_energy)
    mo_occ[: mol.nelectron // 2] = 2.0
    return HamiltonianData(
        numbers=[numbers],
        positions=[np.asarray(frame.get_positions(), dtype=np.float64)],
        fock=[fock],
        overlap=[overlap],
        mo_energy=[mo_energy],
        mo_occ=[mo_occ],
        energy=[energy],
        orbitals=orbitals,
        basis=str(basis),
        method=method,
        xc=xc if method == "RKS" else "",
    )


#: Initial-guess densities accepted by :func:`guess_fock` (PySCF ``init_guess`` keys).
GUESSES = ("minao", "atom", "huckel", "1e")


def guess_fock(
    frame,
    basis="def2-svp",
    method: str = "RHF",
    xc: str = "PBE",
    *,
    guess: str = "minao",
    charge: int = 0,
) -> np.ndarray:
    """Fock / Kohn-Sham matrix built from an initial-guess density (no SCF iterations).

    A cheap physical baseline for :class:`~ncsym.hamiltonian.HamiltonianModel`
    (``baseline=...``): one Fock build from a density made of atomic pieces (``"minao"``,
    ``"atom"``) or from a model Hamiltonian (``"huckel"``, ``"1e"``).  The one-electron
    terms are then exact and the two-electron terms approximate, so a model only learns
    what the SCF changes from that density.

    Parameters
    ----------
    frame : ase.Atoms
        Molecule, positions in Angstrom.
    basis, method, xc, charge
        As in :func:`run_scf`.
    guess : {"minao", "atom", "huckel", "1e"}
        PySCF initial guess: projected minimal-basis atomic densities (``"minao"``),
        spherically averaged atomic HF densities (``"atom"``), extended Hueckel, or the core
        Hamiltonian (``"1e"``; the matrix is then built from the density of the core guess).

    Returns
    -------
    ndarray, shape (n_ao, n_ao)
        Symmetric matrix in Hartree, ncsym AO order (p shells ``m = -1, 0, 1``).
    """
    if guess not in GUESSES:
        raise ValueError(f"`guess` must be one of {GUESSES}, got {guess!r}")
    mol, mf = _mean_field(frame, basis, str(method).upper(), xc, charge)
    dm0 = mf.get_init_guess(key=guess)
    numbers = np.asarray(frame.get_atomic_numbers(), dtype=np.int64)
    perm = pyscf_ao_permutation(numbers, _layout_by_species(mol, numbers))
    fock = np.asarray(mf.get_fock(dm=dm0))[perm][:, perm]
    return 0.5 * (fock + fock.T)


def _concatenate(parts: Sequence[HamiltonianData]) -> HamiltonianData:
    first = parts[0]
    orbitals = dict(first.orbitals)
    for p in parts[1:]:
        for z, shells in p.orbitals.items():
            if z in orbitals and list(orbitals[z]) != list(shells):
                raise ValueError(f"inconsistent orbital layouts for species {z}")
            orbitals[z] = shells
    return HamiltonianData(
        numbers=[x for p in parts for x in p.numbers],
        positions=[x for p in parts for x in p.positions],
        fock=[x for p in parts for x in p.fock],
        overlap=[x for p in parts for x in p.overlap],
        mo_energy=[x for p in parts for x in p.mo_energy],
        mo_occ=[x for p in parts for x in p.mo_occ],
        energy=[x for p in parts for x in p.energy],
        orbitals=orbitals,
        basis=first.basis,
        method=first.method,
        xc=first.xc,
    )


# -------------------------------------------------------------------- distorted frames
def _random_rotation_matrix(rng: np.random.Generator) -> np.ndarray:
    """Uniformly random proper rotation (3, 3) from a normalised Gaussian quaternion.

    Kept here (rather than :func:`ncsym.rotations.random_rotation`) so that the random
    stream, hence the shipped data set, never changes with other modules.
    """
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def distort(frame, sigma: float, rng: np.random.Generator):
    """Randomly rotated copy of ``frame`` with every coordinate displaced by N(0, sigma).

    The rotation is about the centre of mass; ``sigma`` is in Angstrom.
    """
    out = frame.copy()
    centre = out.get_center_of_mass()
    rotation = _random_rotation_matrix(rng)
    positions = (out.get_positions() - centre) @ rotation.T
    positions += rng.normal(scale=sigma, size=positions.shape)
    out.set_positions(positions)
    return out


def _frame_seed(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def make_distorted_dataset(
    molecule: str = "H2O",
    n_frames: int = 100,
    sigma: float | None = None,
    seed: int = 0,
    basis="def2-svp",
    method: str = "RHF",
    xc: str = "PBE",
    *,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    on_unconverged: str = "raise",
) -> HamiltonianData:
    """SCF data for random rotations + Gaussian distortions of an ``ase.build.molecule``.

    Frame ``k`` is drawn from ``numpy.random.default_rng(SeedSequence([seed, k]))``: a
    uniformly random rotation about the centre of mass, then every Cartesian coordinate
    displaced by ``N(0, sigma)``.  Frames therefore do not depend on ``n_frames``, and a
    cache directory can be reused when more frames are requested.

    Parameters
    ----------
    molecule : str
        Name for ``ase.build.molecule`` (``"H2O"``, ``"CH3CH2OH"``, ...).
    n_frames : int
        Number of structures.
    sigma : float, optional
        Displacement width in Angstrom; defaults to 0.08 for water, 0.06 for ethanol,
        0.05 otherwise.
    seed : int
        Random seed.
    basis, method, xc
        Passed to :func:`run_scf`.
    progress : bool
        Show a tqdm progress bar.
    cache_dir : path, optional
        If given, each frame's result is stored there (one small ``.npz`` per frame, keyed by
        all parameters) and reused on later calls.
    on_unconverged : {"raise", "warn"}
        Passed to :func:`run_scf`.

    Returns
    -------
    HamiltonianData
    """
    from ase.build import molecule as ase_molecule
    from tqdm.auto import tqdm

    from .._checks import check_int, check_positive_float

    n_frames = check_int(n_frames, "n_frames", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if sigma is None:
        sigma = DEFAULT_SIGMA.get(molecule, 0.05)
    sigma = check_positive_float(sigma, "sigma", allow_zero=True)
    try:
        reference = ase_molecule(molecule)
    except KeyError:
        raise ValueError(f"`molecule` {molecule!r} is not known to ase.build.molecule") from None
    tag = None
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
        params = json.dumps(
            [_FORMAT_VERSION, molecule, sigma, seed, str(basis), method.upper(),
             xc if method.upper() == "RKS" else "", SCF_CONV_TOL, SCF_CONV_TOL_GRAD],
        )
        tag = hashlib.sha256(params.encode()).hexdigest()[:16]
    parts = []
    for k in tqdm(range(n_frames), disable=not progress, desc=f"{method}/{basis} {molecule}"):
        path = None if tag is None else os.path.join(cache_dir, f"{molecule}-{tag}-{k:06d}.npz")
        if path is not None and os.path.exists(path):
            try:
                parts.append(load_dataset(path))
                continue
            except (ValueError, OSError) as exc:
                warnings.warn(f"ignoring unreadable cache file {path}: {exc}", stacklevel=2)
        frame = distort(reference, sigma, _frame_seed(seed, k))
        result = run_scf(frame, basis, method, xc, on_unconverged=on_unconverged)
        if path is not None:
            save_dataset(result, path, compress=False)
        parts.append(result)
    data = _concatenate(parts)
    data.info = {"molecule": molecule, "sigma": sigma, "seed": seed}
    return data


# --------------------------------------------------------------------------------- I/O
def save_dataset(data: HamiltonianData, path: str | os.PathLike, *, compress: bool = True) -> None:
    """Write ``data`` to an ``.npz`` file atomically (temporary file, then ``os.replace``).

    Matrices are stored as their upper triangles (they are symmetric), concatenated over
    structures; the file is readable with ``numpy.load(allow_pickle=False)``.
    """
    if not isinstance(data, HamiltonianData):
        raise TypeError(f"`data` must be HamiltonianData, got {type(data).__name__}")
    n_atoms = np.array([len(z) for z in data.numbers], dtype=np.int64)
    n_ao = np.array([len(e) for e in data.mo_energy], dtype=np.int64)

    def triu(mats):
        return np.concatenate(
            [m[np.triu_indices(m.shape[0])] for m in mats] or [np.zeros(0)]
        )

    arrays = {
        "format_version": np.array(_FORMAT_VERSION),
        "meta": np.array(json.dumps({
            "basis": data.basis, "method": data.method, "xc": data.xc, "info": data.info,
            "orbitals": {str(z): [list(s) for s in shells] for z, shells in data.orbitals.items()},
        })),
        "n_atoms": n_atoms,
        "n_ao": n_ao,
        "numbers": np.concatenate(data.numbers).astype(np.int64),
        "positions": np.concatenate(data.positions).astype(np.float64),
        "fock": triu(data.fock),
        "overlap": triu(data.overlap),
        "mo_energy": np.concatenate(data.mo_energy),
        "mo_occ": np.concatenate(data.mo_occ),
        "energy": np.asarray(data.energy, dtype=np.float64),
    }
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    from .._cache import atomic_save

    atomic_save(path, arrays, compress=compress)


def load_dataset(path: str | os.PathLike) -> HamiltonianData:
    """Read a file written by :func:`save_dataset`.

    Raises
    ------
    ValueError
        Missing or corrupted file, unsupported format version.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            version = int(f["format_version"])
            if version != _FORMAT_VERSION:
                raise ValueError(f"unsupported data set format version {version}")
            meta = json.loads(str(f["meta"]))
            arrays = {k: np.array(f[k]) for k in (
                "n_atoms", "n_ao", "numbers", "positions", "fock", "overlap",
                "mo_energy", "mo_occ", "energy")}
    except (KeyError, OSError, EOFError, json.JSONDecodeError, ValueError) as exc:
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)
        raise ValueError(f"`path` {name!r} is not a valid ncsym Hamiltonian data set: {exc}"
                         ) from None
    atom_split = np.cumsum(arrays["n_atoms"])[:-1]
    ao_split = np.cumsum(arrays["n_ao"])[:-1]
    tri_split = np.cumsum(arrays["n_ao"] * (arrays["n_ao"] + 1) // 2)[:-1]

    def full(flat, n):
        m = np.zeros((n, n))
        iu = np.triu_indices(n)
        m[iu] = flat
        m[(iu[1], iu[0])] = flat
        return m

    focks = np.split(arrays["fock"], tri_split)
    overlaps = np.split(arrays["overlap"], tri_split)
    return HamiltonianData(
        numbers=list(np.split(arrays["numbers"], atom_split)),
        positions=list(np.split(arrays["positions"], atom_split)),
        fock=[full(x, n) for x, n in zip(focks, arrays["n_ao"], strict=True)],
        overlap=[full(x, n) for x, n in zip(overlaps, arrays["n_ao"], strict=True)],
        mo_energy=list(np.split(arrays["mo_energy"], ao_split)),
        mo_occ=list(np.split(arrays["mo_occ"], ao_split)),
        energy=[float(e) for e in arrays["energy"]],
        orbitals={int(z): [tuple(s) for s in shells] for z, shells in meta["orbitals"].items()},
        basis=meta["basis"],
        method=meta["method"],
        xc=meta["xc"],
        info=meta.get("info", {}),
    )


def load_water_dataset() -> HamiltonianData:
    """The shipped RHF/def2-SVP data set of 300 distorted water molecules.

    Generated by ``benchmarks/make_datasets.py water`` (sigma 0.08 Angstrom, seed 0).
    """
    from importlib.resources import files

    resource = files("ncsym") / "data" / "water_def2svp.npz"
    with resource.open("rb") as fd:
        return load_dataset(fd)
