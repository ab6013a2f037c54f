"""Atomic-orbital Hamiltonians as learning targets for N-center features.

* :mod:`~ncsym.hamiltonian.pyscf_data` -- PySCF adapter (optional extra:
  ``pip install 'ncsym[hamiltonian]'``; PySCF is imported only when a calculation runs):
  :func:`run_scf`, :func:`guess_fock`, :func:`make_distorted_dataset`, :class:`HamiltonianData`, ``.npz`` I/O,
  :func:`ao_labels`, :func:`load_water_dataset`;
* :mod:`~ncsym.hamiltonian.targets` -- raw Fock, Löwdin-orthogonalised ``S^-1/2 F S^-1/2``
  and the symmetry-adapted projected Hamiltonian (:func:`saph`);
* :mod:`~ncsym.hamiltonian.blocks` -- :func:`matrix_to_blocks` / :func:`blocks_to_matrix`
  (atom-pair, shell-pair blocks; block types 0, +1, -1, 2);
* :mod:`~ncsym.hamiltonian.coupling` -- :func:`couple_blocks` / :func:`decouple_blocks`
  into ``(lambda, sigma)`` equivariant blocks (``ncsym.BlockMap``);
* :mod:`~ncsym.hamiltonian.metrics` -- :func:`metrics` (matrix and orbital-energy errors);
* :mod:`~ncsym.hamiltonian.model` -- :class:`HamiltonianModel` (per-block ridge models on
  :class:`ncsym.PairFeatures`, ``fit`` / ``predict`` / ``save`` / ``load``).

Units: Angstrom, Hartree.  Importing this package imports neither PySCF nor Numba.
"""

from __future__ import annotations

from .blocks import (
    BLOCK_KEY_NAMES,
    BLOCK_SAMPLE_NAMES,
    BlockKey,
    MatrixBlock,
    MatrixBlocks,
    blocks_to_matrix,
    check_orbitals,
    matrix_to_blocks,
    orbital_labels,
)
from .coupling import COUPLED_KEY_NAMES, couple_blocks, decouple_blocks, kept_lambdas
from .metrics import metrics
from .model import HamiltonianModel
from .pyscf_data import (
    HamiltonianData,
    SCFNotConvergedError,
    ao_labels,
    cross_overlap,
    guess_fock,
    load_dataset,
    load_water_dataset,
    make_distorted_dataset,
    run_scf,
    save_dataset,
)
from .targets import (
    SAPHResult,
    inverse_sqrt,
    lowdin_deorthogonalize,
    lowdin_orthogonalize,
    saph,
    subbasis_projection,
)

__all__ = [
    "BLOCK_KEY_NAMES",
    "BLOCK_SAMPLE_NAMES",
    "COUPLED_KEY_NAMES",
    "BlockKey",
    "MatrixBlock",
    "MatrixBlocks",
    "HamiltonianData",
    "HamiltonianModel",
    "SAPHResult",
    "SCFNotConvergedError",
    "ao_labels",
    "blocks_to_matrix",
    "check_orbitals",
    "couple_blocks",
    "cross_overlap",
    "decouple_blocks",
    "guess_fock",
    "inverse_sqrt",
    "kept_lambdas",
    "load_dataset",
    "load_water_dataset",
    "lowdin_deorthogonalize",
    "lowdin_orthogonalize",
    "make_distorted_dataset",
    "matrix_to_blocks",
    "metrics",
    "orbital_labels",
    "run_scf",
    "saph",
    "save_dataset",
    "subbasis_projection",
]
