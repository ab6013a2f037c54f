"""Per-block linear models of atomic-orbital Hamiltonians.

The AO matrix of each structure is split into atom-pair, shell-pair blocks
(:func:`ncsym.hamiltonian.matrix_to_blocks`), coupled into irreducible ``(lambda, sigma)``
components (:func:`ncsym.hamiltonian.couple_blocks`), and every component is learned by a
ridge model on the N-centre features with the same ``(block_type, species pair, lambda,
sigma)`` (:func:`ncsym.hamiltonian_features`).  One model per (block type, species pair,
orbital pair, lambda); the regularisation is chosen per model by cross-validation over whole
samples (never splitting the m components of one atom pair); an intercept only for
``lambda = 0`` on-site blocks (the only ones that may carry a constant).  Predictions are
uncoupled and reassembled into matrices.

Because each model is linear in equivariant features of matching ``(lambda, sigma)``, the
predicted matrix of a rotated (or inverted) molecule is ``D F D^T`` with ``D`` the
block-diagonal real Wigner matrix of the AO basis, and permuting atoms permutes the matrix.

References
----------
J. Nigam, M. J. Willatt, M. Ceriotti, J. Chem. Phys. 156, 014115 (2022), section IV.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .._checks import check_int
from ..blocks import Block, BlockMap, Labels, concatenate_blocks
from ._kernel import (
    MIN_KERNEL_ALPHA,
    NystromKernel,
    exact_kernel_bytes,
    farthest_points,
    invariant_power,
    invariant_power_width,
    invariant_rows,
    primal_predict,
    primal_weights,
    principal_axes,
)
from ._ridge import DEFAULT_ALPHAS, RidgeFit, fit_kernel_ridge_cv, fit_ridge_cv
from .blocks import BLOCK_SAMPLE_NAMES, _check_symmetric, blocks_to_matrix, check_orbitals, matrix_to_blocks
from .coupling import couple_blocks, decouple_blocks
from .targets import lowdin_deorthogonalize, lowdin_orthogonalize

__all__ = ["HamiltonianModel"]

_FEATURE_KEY_NAMES = ("block_type", "first_atom_type", "second_atom_type", "o3_lambda", "o3_sigma")
#: 2: exact kernel weights over the symmetric tensor power of the invariants (version 1 used
#: the plain power, the same layout for zeta <= 2)
_MODEL_FORMAT_VERSION = 2
_MODEL_ARRAYS = ("scale", "weights", "intercept", "alpha", "cv_rmse")
_KERNEL_ARRAYS = (
    "scale0",
    "kernel_x",
    "kernel_u",
    "kernel_basis",
    "kernel_center",
    "kernel_axes",
    "kernel_weights",
    "linear_weights",
    "uses_kernel",
    "kernel_share",
)

#: Smallest per-property scale relative to the largest one of the same feature block.
SCALE_FLOOR = 1e-3

#: Feature hyperparameters used when none are given: density cutoff 3 A, pair cutoff 5 A (it
#: must cover every atom pair whose block is learned, DESIGN.md: ethanol H-H reaches 4.3 A),
#: nu = 2 on-site, nu = 1 pairs.  max_angular = 6 > 4 (the largest lambda of def2-SVP blocks)
#: because the nu = 2 products need l1 + l2 >= lambda from many (l1, l2): on the water
#: benchmark max_angular 4 / 5 / 6 gave a test median frame MAE of 6.2 / 1.5 / 0.9 uHa.
#: These defaults suit small molecules (water).  For ethanol (RHF/def2-SVP, 150 training
#: structures) a linear model on nu = 1 pair features stops near 250 uHa even on its training
#: set: it is three-body, and the products of displacements of two different neighbours need
#: four-body terms.  ``dict(cutoff=5.0, max_angular=4, nu_pair=2, inner_contraction=32)`` with
#: ``low_memory=True`` reached 104 uHa, and 86 uHa with ``pair_terms=("i", "j")`` (the
#: j-centred three-body term rho_j^(1) x g_ij next to the four-body one; fit time +25 %);
#: ``inner_contraction=48`` with the j term 81 uHa (fit 14 min, 20 GB peak); learning
#: ``F - F0`` on PySCF's minao guess Fock matrix (``baseline="minao"``): 78.6 uHa at PCA 32 + j,
#: 71.7 uHa at PCA 48 + j (fit 15 min, 18 GB peak); with ``kernel="select", n_active=None,
#: kernel_components=48, cv_groups="structure"`` at PCA 32 + j + minao 64.8 uHa (fit 27 min,
#: 16.5 GB peak), at PCA 40 63.2 uHa (fit 26 min, 18.7 GB peak), and ``kernel="blend"`` at PCA 40
#: 61.0 uHa (fit 28 min, 18.5 GB peak), at PCA 48 59.9 uHa (fit 31 min; 132 / 79.3 uHa at 50 /
#: 100 structures), at PCA 56 58.7 uHa (fit 32 min, 19.4 GB peak) (benchmarks/bench_hamiltonian.py),
#: at PCA 64 58.1 uHa (fit 37 min, 21.3 GB peak: the gain per component is fading).
#: ``orthogonalize=True`` (learning the Löwdin-orthogonalised residual ``S^-1/2 (F - F0) S^-1/2``)
#: at PCA 56 + j + minao + blend: 46.0 uHa (fit 37 min, 20.8 GB peak; 106.5 against 132.1 uHa at
#: 50 structures with PCA 48), and 49.1 uHa on a second ethanol set never used for tuning
#: (``make_datasets.py ethanol --seed 7``; 19.8 GB peak).
#: Hardly or not better with PCA 48 + j + minao + blend at 50 structures (132.1 uHa): ``zeta=3``
#: with ``kernel_components=16`` (134.2), ``kernel_components=96`` (131.6), max_radial 6 (140.2),
#: density_width 0.2 (139.4); ``message_passing=True`` ran out of memory (killed at 22.5 GB) on
#: 50 ethanols with ``chunk_size=2``.  The mean of the PCA 48 and PCA 56 predictions at 150
#: structures is no better than PCA 56 alone (59.0): their errors coincide.
#: Not better at PCA 32 + j + minao, linear, 50 structures (146 uHa): the coupled blocks of F0
#: as extra equivariant features (146), density_width 0.5 (153), max_radial 6 (156), a radial
#: scaling ``1 / (1 + (r / r0)**4)`` of the neighbour densities with r0 = 2 / 3 A (168 / 151),
#: the j term scaled by 2 / 0.5 against the i term (145 / 148).
DEFAULT_FEATURES = dict(
    cutoff=3.0,
    pair_cutoff=5.0,
    cutoff_width=0.5,
    density_width=0.3,
    max_radial=4,
    max_angular=6,
    nu_onsite=2,
    nu_pair=1,
)


def _as_frame_list(frames) -> list:
    import ase

    if isinstance(frames, ase.Atoms):
        return [frames]
    frames = list(frames)
    for i, f in enumerate(frames):
        if not isinstance(f, ase.Atoms):
            raise TypeError(f"`frames[{i}]` must be ase.Atoms, got {type(f).__name__}")
    if not frames:
        raise ValueError("`frames` is empty")
    return frames


def _sample_index(samples: np.ndarray) -> dict:
    return {tuple(int(v) for v in row): i for i, row in enumerate(samples)}


def _family(key) -> tuple:
    """Atom-pair family of a feature key ``(block_type, z1, z2, ...)``: on-site (0), same
    species (block types +1 and -1 together: the kernel of -1 uses the +1 invariants) or
    different species (2)."""
    bt = int(key[0])
    return (0 if bt == 0 else (1 if bt in (1, -1) else 2), int(key[1]), int(key[2]))


def _scale(x: np.ndarray, mode: str = "block") -> np.ndarray:
    """Divisor of each property of a feature block (the same for every ``mu``: equivariance
    is kept), shape ``(n_properties,)``.

    ``"block"``: one RMS for the whole block, so the ridge penalty keeps the features' own
    relative scales (PCA-contracted features keep their variance ordering, and columns that
    vanish by symmetry stay at round-off level).  ``"property"``: the RMS of every property,
    floored at :data:`SCALE_FLOOR` times the largest (without the floor, round-off noise in
    columns that vanish by symmetry, e.g. pseudo-tensors of planar molecules, would be
    amplified to O(1)).
    """
    n_prop = x.shape[-1]
    if mode == "block":
        rms = float(np.sqrt((x**2).mean())) if x.size else 0.0
        return np.full(n_prop, rms if rms > 0 else 1.0)
    rms = np.sqrt((x**2).mean(axis=(0, 1))) if x.shape[0] else np.zeros(n_prop)
    if rms.size and rms.max() > 0:
        return np.maximum(rms, SCALE_FLOOR * rms.max())
    return np.ones_like(rms)


def _invariants(feats: BlockMap, fkey: tuple, samples: np.ndarray) -> np.ndarray:
    """Invariant features of ``samples``, shape (n, 1, p0), for the kernel of block ``fkey``.

    The ``lambda = 0, sigma = +1`` features of the same atom pair; for ``block_type = -1`` those
    of ``block_type = +1`` (the antisymmetric invariants change sign under the exchange of the
    two atoms, the symmetric ones do not, and ``k0`` must not).  Zero columns when missing.
    """
    bt, z1, z2 = fkey[:3]
    block = feats.get(
        **dict(zip(_FEATURE_KEY_NAMES, (1 if bt == -1 else bt, z1, z2, 0, 1), strict=True))
    )
    if block is None or block.values.shape[2] == 0:
        return np.zeros((len(samples), 1, 0))
    index = _sample_index(block.samples.select_columns(BLOCK_SAMPLE_NAMES).values)
    rows = [index.get(tuple(int(v) for v in s)) for s in samples]
    if any(r is None for r in rows):
        raise ValueError(f"invariant features are missing samples of block {fkey}")
    return block.values[np.array(rows, dtype=np.int64)]


def _release(feats: BlockMap, fkey: tuple) -> None:
    """Replace the block ``fkey`` of ``feats`` by an empty one (same properties), so that its
    values are freed once the caller's copy is made (peak memory of the block fits)."""
    i = feats.find(**dict(zip(_FEATURE_KEY_NAMES, fkey, strict=True)))[0]
    b = feats.blocks[i]
    empty = Labels(b.samples.names, b.samples.values[:0])
    feats.blocks[i] = Block(b.values[:0].copy(), empty, b.properties)


def _blend_shares(r_kernel, r_linear, share, cv_rmse):
    """Kernel share ``w`` in [0, 1] per target minimising ``|w r_kernel + (1 - w) r_linear|^2``
    over the leave-one-out residuals ``(n_rows, n_targets)``, and the blend's CV RMSE.

    Targets with non-finite residuals keep ``share`` and ``cv_rmse`` (the select rule)."""
    diff = r_linear - r_kernel
    den = (diff**2).sum(axis=0)
    with np.errstate(all="ignore"):
        w = np.clip((r_linear * diff).sum(axis=0) / den, 0.0, 1.0)
    w = np.where(den > 0, w, share)
    mixed = np.sqrt(((w * r_kernel + (1.0 - w) * r_linear) ** 2).mean(axis=0))
    ok = np.isfinite(r_kernel).all(axis=0) & np.isfinite(r_linear).all(axis=0) & np.isfinite(w)
    return np.where(ok, w, share), np.where(ok, mixed, cv_rmse)


def _project_invariants(u: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Invariant rows of :func:`invariant_rows` with the unit part projected on ``axes``
    (the constant column kept): ``k0 = (u_A . u_B)`` then uses the leading components only."""
    return np.hstack([(u[:, :-1] * np.sqrt(2.0)) @ axes / np.sqrt(2.0), u[:, -1:]])


def _check_kernel_memory(fkey, n_samples, n_comp, n_features, d, zeta, n_targets) -> None:
    """Refuse an exact kernel fit that would not fit in the available memory."""
    from ..acdc import _available_memory

    need = exact_kernel_bytes(n_samples, n_comp, n_features, d, zeta, n_targets)
    available = _available_memory()
    if need > available:
        raise ValueError(
            f"the exact kernel model of feature block {fkey} needs about "
            f"{need / 2**30:.1f} GiB ({n_samples} samples x {n_comp} components, zeta={zeta}, "
            f"{invariant_power_width(d, zeta)} invariant monomials x {n_features} features x "
            f"{n_targets} targets), more than the {available / 2**30:.1f} GiB available: lower `zeta` or "
            "`kernel_components`, set `n_active` (projected-process kernel), or fit fewer "
            "structures"
        )


class HamiltonianModel:
    """Learn AO Hamiltonians (Fock / Kohn-Sham, Hartree) block by block from structures.

    Parameters
    ----------
    basis : str, optional
        PySCF basis name (e.g. ``"def2-svp"``, ``"sto-3g"``) used to find the shell layout
        of each species (needs PySCF).  Ignored when ``orbitals`` is given.
    orbitals : dict, optional
        ``{atomic number: [(n, l), ...]}`` shell layout per species, in the AO order of the
        matrices (PySCF order with p shells reordered to ``m = -1, 0, 1``).
    features : dict, optional
        Keyword arguments of :class:`ncsym.PairFeatures` (defaults: :data:`DEFAULT_FEATURES`).
        ``species`` is filled in from the training frames.
    alphas : sequence of float
        Relative ridge regularisations tried by cross-validation (the Nystrom kernel models,
        ``n_active`` an int, use only those ``>= MIN_KERNEL_ALPHA``, 1e-6, of
        :mod:`ncsym.hamiltonian._kernel`, which keeps their predictions equivariant to
        round-off).
    cv : "loo" or int
        Cross-validation of the ridge regularisation over whole atom-pair samples: exact
        grouped leave-one-out (default) or grouped K-fold.
    chunk_size : int
        Structures per feature computation (bounds the memory of one call).
    kernel : bool, "select" or "blend"
        ``True``: use the equivariant polynomial (lambda-SOAP) kernel of
        :mod:`ncsym.hamiltonian._kernel` instead of the linear model: each feature block is
        multiplied by a polynomial of the invariant features of the same atom pair.
        ``"select"``: fit both the linear and the kernel model of every block and keep, for
        each target (orbital pair), the one with the lower cross-validation error (the
        kernel pays where a block has many samples, e.g. H-H and H-C pairs, and can lose
        on blocks with one sample per structure).  On water (default features, exact kernel
        ``n_active=None``, ``cv_groups="structure"``) it reached a test MAE of 1.29 uHa from 100
        structures and 0.87 uHa from 250, against 5.83 and 5.24 uHa for the linear model; on
        ethanol (150 structures, nu = 2 PCA 32 pair features with the j term, minao baseline,
        ``kernel_components=48``) 64.8 against 78.6 uHa (benchmarks/bench_hamiltonian.py).
        ``"blend"`` (``cv="loo"`` only): fit both and predict, per target, ``w kernel + (1 - w)
        linear`` with the ``w`` in [0, 1] that minimises the sum of squares of the blended
        leave-one-out residuals (stacking; ``w`` is 0 or 1 where one model is better on
        every left-out group).  Ethanol (as above, PCA 40): 61.0 uHa against 63.2 for
        ``"select"``.
    zeta : int
        Polynomial order of the kernel (``zeta = 2`` doubles the body order of the features).
    n_active : int or None
        Active (representative) samples per feature block, chosen by farthest-point sampling;
        the Nystrom basis has at most ``n_active (2 lambda + 1)`` columns.  ``None``: every
        training sample is active and the kernel ridge regression is solved exactly in the
        dual (memory and time grow as ``(n_samples (2 lambda + 1))**2`` and ``**3`` per
        block), then stored as primal weights (no training features are kept; see
        ``kernel_components``): ``C(d + zeta - 2, zeta - 1)`` matrices of ``n_features x
        n_targets`` per block, ``d`` the number of invariant axes (plus one).  A fit whose Gram
        matrix and weights alone exceed the available memory raises ``ValueError`` before
        anything large is allocated.
    kernel_components : int or None
        Project the invariant features of every block on their ``kernel_components``
        leading principal axes (fitted on the training samples) before the kernel's
        invariant factor ``k0`` is formed.  ``None``: no projection.  With ``n_active=None``
        the model stores ``C(kernel_components + zeta - 1, zeta - 1)`` weight matrices of the
        linear model's size per block (``kernel_components + 1`` for ``zeta = 2``), so wide
        features (ethanol, nu = 2 pairs) need it.
    cv_groups : {"sample", "structure"}
        What the cross-validation of the regularisation leaves out together: the ``2 lambda + 1``
        rows of one atom-pair sample (default), or every sample of one structure.  Samples of
        one structure are correlated, so ``"structure"`` measures generalisation to new
        structures; it changed the test MAE by under 2 % on water (250 structures, 5.24 vs
        5.16 uHa) and ethanol (150 structures, nu = 1 pairs: 248 vs 243 uHa; nu = 2 pairs, PCA 32: 104 vs 103).
    feature_scaling : {"block", "property"}
        Features are divided by one RMS per feature block (default) or by the RMS of each
        property before the ridge fit.  On water (250 training structures, default features)
        ``"block"`` gave a test MAE of 5.2 uHa against 6.9 uHa for ``"property"``; on the
        H-C blocks of ethanol with ``nu_pair = 2`` pair features 123 against 143 uHa.
    baseline : {None, "minao", "atom", "huckel", "1e"}
        Delta-learning: learn ``F - F0`` instead of ``F``, with ``F0`` the Fock / Kohn-Sham
        matrix built (with PySCF, one Fock build, no SCF iterations) from that initial-guess
        density (:func:`ncsym.hamiltonian.pyscf_data.guess_fock`), and add ``F0`` back in
        :meth:`predict`.  Needs PySCF and ``basis`` at fit and predict time; ``F0`` rotates as
        ``D F0 D^T`` (to PySCF's integral precision), so the model stays equivariant.  On ethanol (RHF/def2-SVP, 150 training
        structures, nu = 2 PCA 32 pair features with the j term) ``"minao"`` lowered the test
        MAE from 86.3 to 78.6 uHa (benchmarks/bench_hamiltonian.py); the Fock build
        takes about 0.4 s per ethanol (2 busy cores) in fit and in predict.
    orthogonalize : bool
        Learn the blocks of the Löwdin-orthogonalised matrix ``S^-1/2 (F - F0) S^-1/2`` (``F0 =
        0`` without ``baseline``) and transform the prediction back with ``S^1/2``
        (:func:`~ncsym.hamiltonian.lowdin_orthogonalize` / ``lowdin_deorthogonalize``), with
        ``S`` the AO overlap of each structure from PySCF (needs ``basis``; a one-electron
        integral, about 30 ms per ethanol).  The matrices given to :meth:`fit` and returned
        by :meth:`predict` are the raw AO matrices either way.  ``S^+-1/2`` are matrix
        functions of ``S``, so the model stays equivariant.  The orthogonal basis removes the
        overlap-driven part of the blocks (the residual ``F - F0`` of ethanol shrinks from 18.3
        to 5.3 mHa mean absolute value): on ethanol (nu = 2 pairs + j + minao,
        ``kernel="blend"``) the test MAE of ``F`` fell from 58.7 to 46.0 uHa with 150
        training structures (PCA 56), from 132.1 to 106.5 uHa with 50 (PCA 48).  Use it with a
        baseline: on water (250 structures, default features) without one it raised the test
        MAE from 5.2 to 45.1 uHa (linear) and from 0.85 to 8.7 uHa (``kernel="blend"``) --
        ``S^-1/2`` spreads the large core elements of ``F`` over the blocks of every atom --
        and with ``baseline="minao"`` (linear) it gave 5.55 against 4.73 uHa.
    method, xc : str
        Level of theory of the baseline Fock build (``"RHF"`` or ``"RKS"`` with functional
        ``xc``); it should match the training matrices.
    low_memory : bool
        Compute and fit (and predict) one atom-pair family at a time (on-site blocks of one
        species, pairs of one species pair): the features are recomputed once per family
        (about ``n_species (n_species + 3) / 2`` times the feature cost) and the peak memory is
        that of the largest family instead of all features.  Needed for wide features such as
        ``nu_pair = 2`` on many structures.
    progress : bool
        Show progress bars.

    Examples
    --------
    >>> model = HamiltonianModel(basis="def2-svp")            # doctest: +SKIP
    >>> model.fit(train_frames, train_fock)                     # doctest: +SKIP
    >>> predicted = model.predict(test_frames)  # list of (n_ao, n_ao) arrays, Hartree
    """

    def __init__(
        self,
        *,
        basis: str | None = "def2-svp",
        orbitals: dict | None = None,
        features: dict | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        cv: str | int = "loo",
        chunk_size: int = 50,
        kernel: bool = False,
        zeta: int = 2,
        n_active: int | None = 300,
        kernel_components: int | None = None,
        feature_scaling: str = "block",
        cv_groups: str = "sample",
        baseline: str | None = None,
        orthogonalize: bool = False,
        method: str = "RHF",
        xc: str = "PBE",
        low_memory: bool = False,
        progress: bool = True,
    ) -> None:
        if basis is None and orbitals is None:
            raise ValueError("give either `basis` (a PySCF basis name) or `orbitals`")
        self.basis = basis
        self.orbitals = None if orbitals is None else check_orbitals(orbitals)
        self.feature_hypers = dict(DEFAULT_FEATURES)
        if features:
            self.feature_hypers.update(features)
        self.alphas = tuple(float(a) for a in alphas)
        self.cv = cv
        self.chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
        if kernel not in (False, True, "select", "blend"):
            raise ValueError(f"`kernel` must be False, True, 'select' or 'blend', got {kernel!r}")
        self.kernel = kernel if kernel in ("select", "blend") else bool(kernel)
        if self.kernel == "select" and cv == 1:
            raise ValueError("`kernel='select'` chooses by cross-validation: it needs `cv` = 'loo' or K >= 2")
        if self.kernel == "blend" and cv != "loo":
            raise ValueError(f"`kernel='blend'` weighs leave-one-out residuals: it needs `cv='loo'`, got {cv!r}")
        self.zeta = check_int(zeta, "zeta", minimum=1, maximum=8)
        self.n_active = None if n_active is None else check_int(n_active, "n_active", minimum=1)
        self.kernel_components = (
            None if kernel_components is None else check_int(kernel_components, "kernel_components", minimum=1)
        )
        self.low_memory = bool(low_memory)
        if feature_scaling not in ("block", "property"):
            raise ValueError(f"`feature_scaling` must be 'block' or 'property', got {feature_scaling!r}")
        self.feature_scaling = feature_scaling
        if cv_groups not in ("sample", "structure"):
            raise ValueError(f"`cv_groups` must be 'sample' or 'structure', got {cv_groups!r}")
        self.cv_groups = cv_groups
        from .pyscf_data import _METHODS, GUESSES

        if baseline is not None and baseline not in GUESSES:
            raise ValueError(f"`baseline` must be None or one of {GUESSES}, got {baseline!r}")
        if baseline is not None and basis is None:
            raise ValueError("`baseline` builds a Fock matrix with PySCF: give `basis` (a PySCF basis name)")
        if str(method).upper() not in _METHODS:
            raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}")
        if orthogonalize and basis is None:
            raise ValueError(
                "`orthogonalize` needs the overlap matrices from PySCF: give `basis` (a PySCF basis name)"
            )
        self.baseline = baseline
        self.orthogonalize = bool(orthogonalize)
        self.method = str(method).upper()
        self.xc = str(xc)
        self.progress = progress
        self.species_: list[int] | None = None
        self.features_ = None
        self.models_: dict = {}

    # ------------------------------------------------------------------ helpers
    def _orbitals_for(self, frames) -> dict:
        species = sorted({int(z) for f in frames for z in f.numbers})
        if self.orbitals is not None:
            missing = [z for z in species if z not in self.orbitals]
            if missing:
                raise ValueError(f"species {missing} have no entry in `orbitals`")
            return self.orbitals
        from .pyscf_data import ao_labels

        layout: dict = {}
        for f in frames:
            if set(int(z) for z in f.numbers) - set(layout):
                layout.update(ao_labels(f, self.basis))
        return check_orbitals(layout)

    def _baseline_matrices(self, frames) -> list | None:
        """``F0`` of every frame (``baseline``), or None."""
        if self.baseline is None:
            return None
        from tqdm.auto import tqdm

        from .pyscf_data import guess_fock

        return [
            guess_fock(f, self.basis, self.method, self.xc, guess=self.baseline)
            for f in tqdm(frames, desc=f"baseline ({self.baseline})", disable=not self.progress)
        ]

    def _overlaps(self, frames) -> list | None:
        """AO overlap ``S`` of every frame (``orthogonalize``), or None."""
        if not self.orthogonalize:
            return None
        from .pyscf_data import cross_overlap

        return [cross_overlap(f, self.basis, self.basis) for f in frames]

    def _features(self):
        from ..pairs import PairFeatures

        hypers = dict(self.feature_hypers)
        if hypers.get("max_lambda") is None:
            # every coupled target has lambda <= l_i + l_j
            l_max = max(l for shells in self.orbitals_.values() for _, l in shells)
            hypers["max_lambda"] = min(2 * l_max, 2 * hypers["max_angular"])
        return PairFeatures(species=self.species_, **hypers)

    def _compute_features(self, frames, family: tuple | None = None) -> BlockMap:
        """Features of ``frames``, computed ``chunk_size`` structures at a time.

        ``family`` (see :func:`_family`) keeps only the blocks of one atom-pair family, chunk by
        chunk, so that the other families never accumulate in memory.
        """
        from tqdm.auto import tqdm

        starts = range(0, len(frames), self.chunk_size)
        parts = []
        desc = "features" if family is None else f"features {family}"
        for s in tqdm(starts, desc=desc, disable=not self.progress or len(starts) == 1):
            part = self.features_.compute(frames[s : s + self.chunk_size])
            if family is not None:
                keep = [i for i, k in enumerate(part.keys.values) if _family(k) == family]
                part = BlockMap(
                    Labels(part.keys.names, part.keys.values[keep]), [part.blocks[i] for i in keep], part.info
                )
            parts.append(part)
        if len(parts) == 1:
            return parts[0]
        return concatenate_blocks(parts, system_offsets=list(starts), consume=True)

    def _families(self, keys) -> list:
        """Atom-pair families of ``keys`` (feature keys), in order; one when not ``low_memory``."""
        if not self.low_memory:
            return [None]
        return sorted({_family(k) for k in keys})

    def _check_fitted(self):
        if self.features_ is None:
            raise ValueError("this HamiltonianModel is not fitted yet: call `fit(frames, matrices)` first")

    # ---------------------------------------------------------------------- fit
    def fit(self, frames, matrices) -> HamiltonianModel:
        """Fit one ridge model per (block type, species pair, orbital pair, lambda).

        Parameters
        ----------
        frames : sequence of ase.Atoms
            Training structures (Angstrom).
        matrices : sequence of ndarray, shape (n_ao, n_ao)
            Symmetric AO matrices (Hartree), one per frame, in the AO order of ``basis``
            (PySCF order, p shells reordered to ``m = -1, 0, 1``).

        Returns
        -------
        self
        """
        frames = _as_frame_list(frames)
        matrices = (
            list(matrices) if not isinstance(matrices, np.ndarray) or matrices.ndim == 3 else [matrices]
        )
        if len(matrices) != len(frames):
            raise ValueError(f"got {len(matrices)} matrices for {len(frames)} frames")
        self.species_ = sorted({int(z) for f in frames for z in f.numbers})
        self.orbitals_ = self._orbitals_for(frames)
        base = self._baseline_matrices(frames)
        if base is not None:
            self._check_shapes(matrices, base, "baseline")
            matrices = [np.asarray(m, dtype=np.float64) - b for m, b in zip(matrices, base, strict=True)]
        overlaps = self._overlaps(frames)
        if overlaps is not None:
            self._check_shapes(matrices, overlaps, "overlap")
            for i, m in enumerate(matrices):
                _check_symmetric(np.asarray(m, dtype=np.float64), f"matrices[{i}]")
            matrices = lowdin_orthogonalize(matrices, overlaps)
        targets = couple_blocks(matrix_to_blocks(matrices, frames, self.orbitals_))
        features = self._features()
        if hasattr(features, "fit"):  # fixes the species, fits any PCA contraction
            features.fit(frames)
        self.features_ = features
        self.models_ = {}
        fkeys = list(self._group_targets(targets))
        for family in self._families(fkeys):
            feats = self._compute_features(frames, family)
            self.models_.update(self._fit_blocks(feats, targets, family))
            del feats
        self.target_key_names_ = targets.keys.names
        return self

    def _check_shapes(self, matrices, references, what: str) -> None:
        """Each training matrix has the shape of its frame's PySCF ``what`` matrix."""
        for i, (m, r) in enumerate(zip(matrices, references, strict=True)):
            if np.shape(m) != r.shape:
                raise ValueError(
                    f"matrices[{i}] has shape {np.shape(m)} but the {self.basis} {what} of its frame has {r.shape}"
                )

    def _group_targets(self, targets: BlockMap):
        names = targets.keys.names
        groups = defaultdict(list)
        for i, key in enumerate(targets.keys):
            k = dict(zip(names, key, strict=True))
            fkey = (
                k["block_type"],
                k["first_atom_type"],
                k["second_atom_type"],
                k["o3_lambda"],
                k["o3_sigma"],
            )
            groups[fkey].append(i)
        return groups

    def _fit_blocks(self, feats: BlockMap, targets: BlockMap, family: tuple | None = None) -> dict:
        """Fit the models of the target blocks (of ``family``) on ``feats``, which it consumes:
        every feature block but the invariant ones is emptied once its design matrix is copied."""
        from tqdm.auto import tqdm

        groups = self._group_targets(targets)
        if family is not None:
            groups = {k: v for k, v in groups.items() if _family(k) == family}
        models = {}
        for fkey, target_ids in tqdm(
            sorted(groups.items()), desc="fitting blocks", disable=not self.progress
        ):
            fblock = feats.get(**dict(zip(_FEATURE_KEY_NAMES, fkey, strict=True)))
            if fblock is None:
                raise ValueError(
                    f"no features for target key {dict(zip(_FEATURE_KEY_NAMES, fkey, strict=True))}: "
                    "the feature calculator must cover every (block_type, species pair, lambda, sigma)"
                )
            fsamples = fblock.samples.select_columns(BLOCK_SAMPLE_NAMES).values
            findex = _sample_index(fsamples)
            n_comp = fblock.values.shape[1]
            # samples present in both targets and features (pairs beyond the cutoff are skipped)
            tsamples = targets.blocks[target_ids[0]].samples.values
            rows_t, rows_f = [], []
            for it, s in enumerate(tsamples):
                j = findex.get(tuple(int(v) for v in s))
                if j is not None:
                    rows_t.append(it)
                    rows_f.append(j)
            if not rows_t:
                continue
            rows_t = np.array(rows_t)
            rows_f = np.array(rows_f)
            x = fblock.values[rows_f]  # a copy (fancy indexing)
            fsamples = fsamples[rows_f]
            if (fkey[3], fkey[4]) != (0, 1):
                # only the invariant (lambda = 0, sigma = +1) blocks are read again (by the
                # kernels of the other blocks): free the rest before the solver's arrays exist
                _release(feats, fkey)
            del fblock
            scale = _scale(x, self.feature_scaling)
            x /= scale
            x = x.reshape(x.shape[0] * x.shape[1], x.shape[2])
            y = np.stack([targets.blocks[t].values[rows_t, :, 0] for t in target_ids], axis=-1).reshape(
                -1, len(target_ids)
            )
            if self.cv_groups == "structure":
                groups_ = np.repeat(tsamples[rows_t, 0], n_comp)
            else:
                groups_ = np.repeat(np.arange(len(rows_t)), n_comp)
            intercept = fkey[0] == 0 and fkey[3] == 0
            model = {"target_keys": [tuple(int(v) for v in targets.keys.values[t]) for t in target_ids]}
            model["scale"] = scale
            if self.kernel:
                fit = self._fit_kernel(feats, fkey, fsamples, x, n_comp, y, groups_, intercept, model)
            else:
                fit = fit_ridge_cv(x, y, groups_, alphas=self.alphas, cv=self.cv, intercept=intercept)
            model.update(weights=fit.weights, intercept=fit.intercept, alpha=fit.alpha, cv_rmse=fit.cv_rmse)
            models[fkey] = model
        return models

    def _fit_kernel(self, feats, fkey, samples, x, n_comp, y, groups, intercept, model) -> RidgeFit:
        """Kernel (or, with ``kernel="select"`` / ``"blend"``, kernel-or-linear / a CV-weighted
        mix of both per target) fit of one block.

        ``x`` is the scaled design matrix ``(n_samples (2 lambda + 1), p)``; fills the kernel
        arrays of ``model`` and returns the fit whose ``weights`` apply to the kernel features.
        """
        x0 = _invariants(feats, fkey, samples)
        model["scale0"] = _scale(x0, self.feature_scaling)
        u = invariant_rows(x0 / model["scale0"])
        if self.kernel_components is not None and self.kernel_components < u.shape[1] - 1:
            model["kernel_axes"] = principal_axes(u[:, :-1], self.kernel_components)
            u = _project_invariants(u, model["kernel_axes"])
        xs = x.reshape(len(samples), n_comp, -1)
        blend = self.kernel == "blend"
        if self.n_active is None:
            # exact kernel ridge, solved in the dual and stored as primal weights
            _check_kernel_memory(fkey, len(samples), n_comp, xs.shape[2], u.shape[1], self.zeta, y.shape[1])
            if intercept:
                # lambda = 0 on-site blocks: the intercept is the targets' mean and the kernel
                # sees centred features (invariant, so the centring keeps the equivariance)
                model["kernel_center"] = xs.mean(axis=0)
                xs = xs - model["kernel_center"]
            psi = invariant_power(u, self.zeta)
            flat = xs.reshape(-1, xs.shape[2])
            n_rows = flat.shape[0]
            gram = (flat @ flat.T).reshape(len(samples), n_comp, len(samples), n_comp)
            gram *= (psi @ psi.T)[:, None, :, None]
            gram = gram.reshape(n_rows, n_rows)
            fit = fit_kernel_ridge_cv(
                gram, y, groups, alphas=self.alphas, cv=self.cv, intercept=intercept, residuals=blend
            )
            del gram
            model["kernel_weights"] = primal_weights(xs, psi, fit.weights)
            fit.weights = np.zeros((0, y.shape[1]))
        else:
            alphas = tuple(a for a in self.alphas if a >= MIN_KERNEL_ALPHA) or (MIN_KERNEL_ALPHA,)
            active = farthest_points(u, self.n_active)
            nk = NystromKernel(xs[active], u[active], self.zeta)
            phi = nk.features(xs, u).reshape(len(samples) * n_comp, nk.width)
            fit = fit_ridge_cv(phi, y, groups, alphas=alphas, cv=self.cv, intercept=intercept, residuals=blend)
            del phi
            model.update(kernel_x=nk.x_active, kernel_u=nk.u_active, kernel_basis=nk.basis)
        if self.kernel not in ("select", "blend"):
            return fit
        lin = fit_ridge_cv(x, y, groups, alphas=self.alphas, cv=self.cv, intercept=intercept, residuals=blend)
        # a NaN CV error (no CV possible) never wins
        share = (np.nan_to_num(fit.cv_rmse, nan=np.inf) <= np.nan_to_num(lin.cv_rmse, nan=np.inf)) * 1.0
        cv_rmse = np.where(share > 0, fit.cv_rmse, lin.cv_rmse)
        if blend and fit.cv_residuals is not None and lin.cv_residuals is not None:
            share, cv_rmse = _blend_shares(fit.cv_residuals, lin.cv_residuals, share, cv_rmse)
        model.update(linear_weights=lin.weights * (1.0 - share), uses_kernel=share > 0)
        if blend:
            model["kernel_share"] = share
        if "kernel_weights" in model:
            model["kernel_weights"] *= share
        return RidgeFit(
            weights=fit.weights * share,
            intercept=share * fit.intercept + (1.0 - share) * lin.intercept,
            alpha=np.where(share >= 0.5, fit.alpha, lin.alpha),
            cv_rmse=cv_rmse,
        )

    # ------------------------------------------------------------------ predict
    def predict_coupled(self, frames) -> BlockMap:
        """Predicted coupled blocks, keyed like :func:`ncsym.hamiltonian.couple_blocks`
        (of ``F - F0`` with a ``baseline``, of ``S^-1/2 (F - F0) S^-1/2`` with
        ``orthogonalize``)."""
        self._check_fitted()
        frames = _as_frame_list(frames)
        unknown = sorted({int(z) for f in frames for z in f.numbers} - set(self.species_))
        if unknown:
            raise ValueError(f"species {unknown} were not in the training frames {self.species_}")
        keys, blocks = [], []
        for family in self._families(self.models_):
            feats = self._compute_features(frames, family)
            self._predict_blocks(feats, family, keys, blocks)
            del feats
        return BlockMap(
            Labels(self.target_key_names_, np.array(keys).reshape(-1, len(self.target_key_names_))), blocks
        )

    def _predict_blocks(self, feats: BlockMap, family, keys: list, blocks: list) -> None:
        for fkey, m in self.models_.items():
            if family is not None and _family(fkey) != family:
                continue
            fblock = feats.get(**dict(zip(_FEATURE_KEY_NAMES, fkey, strict=True)))
            if fblock is None or len(fblock.samples) == 0:
                continue
            samples = Labels(BLOCK_SAMPLE_NAMES, fblock.samples.select_columns(BLOCK_SAMPLE_NAMES).values)
            x = fblock.values / m["scale"]
            if "kernel_basis" in m or "kernel_weights" in m:
                u = invariant_rows(_invariants(feats, fkey, samples.values) / m["scale0"])
                if "kernel_axes" in m:
                    u = _project_invariants(u, m["kernel_axes"])
                if "kernel_weights" in m:  # exact model, primal form
                    xk = x - m["kernel_center"] if "kernel_center" in m else x
                    pred = primal_predict(xk, invariant_power(u, self.zeta), m["kernel_weights"])
                else:
                    nk = NystromKernel(m["kernel_x"], m["kernel_u"], self.zeta, basis=m["kernel_basis"])
                    pred = np.einsum("scp,pt->sct", nk.features(x, u), m["weights"])
                pred += m["intercept"]
                if "linear_weights" in m:
                    pred += np.einsum("scp,pt->sct", x, m["linear_weights"])
            else:
                pred = np.einsum("scp,pt->sct", x, m["weights"]) + m["intercept"]
            for t, tkey in enumerate(m["target_keys"]):
                keys.append(tkey)
                blocks.append(Block(pred[:, :, t : t + 1].copy(), samples, Labels.single()))

    def predict(self, frames) -> list[np.ndarray]:
        """Predict AO matrices.

        Parameters
        ----------
        frames : ase.Atoms or sequence of ase.Atoms

        Returns
        -------
        list of ndarray, shape (n_ao, n_ao)
            Symmetric matrices in Hartree, same AO order as the training matrices; atom
            pairs farther apart than the pair cutoff are zero (or ``F0`` with a ``baseline``;
            with ``orthogonalize`` they are zero in the Löwdin basis, and ``S^1/2`` spreads
            the learned blocks onto them).
        """
        frames = _as_frame_list(frames)
        coupled = self.predict_coupled(frames)
        orbitals = self._orbitals_for(frames) if self.orbitals is None else self.orbitals
        mats = blocks_to_matrix(decouple_blocks(coupled), frames, orbitals)
        mats = mats if isinstance(mats, list) else [mats]
        overlaps = self._overlaps(frames)
        if overlaps is not None:
            mats = lowdin_deorthogonalize(mats, overlaps)
        base = self._baseline_matrices(frames)
        if base is not None:
            mats = [m + b for m, b in zip(mats, base, strict=True)]
        return mats

    # ------------------------------------------------------------------ save/load
    def save(self, path: str | os.PathLike) -> None:
        """Save the fitted model to ``.npz`` (atomic write)."""
        from .._cache import atomic_save

        self._check_fitted()
        meta = {
            "format_version": _MODEL_FORMAT_VERSION,
            "basis": self.basis,
            "orbitals": {str(z): [list(s) for s in sh] for z, sh in self.orbitals_.items()},
            "user_orbitals": self.orbitals is not None,
            "feature_hypers": self.feature_hypers,
            "species": self.species_,
            "alphas": list(self.alphas),
            "cv": self.cv,
            "chunk_size": self.chunk_size,
            "kernel": self.kernel,
            "zeta": self.zeta,
            "n_active": self.n_active,
            "kernel_components": self.kernel_components,
            "low_memory": self.low_memory,
            "feature_scaling": self.feature_scaling,
            "cv_groups": self.cv_groups,
            "baseline": self.baseline,
            "orthogonalize": self.orthogonalize,
            "method": self.method,
            "xc": self.xc,
            "target_key_names": list(self.target_key_names_),
            "models": [],
        }
        if hasattr(self.features_, "get_state"):
            state = self.features_.get_state()
        else:
            state = {}
        arrays = {}
        for i, (fkey, m) in enumerate(self.models_.items()):
            meta["models"].append({"key": list(fkey), "target_keys": [list(k) for k in m["target_keys"]]})
            for name in _MODEL_ARRAYS + _KERNEL_ARRAYS:
                if name in m:
                    arrays[f"m{i}_{name}"] = m[name]
        for name, value in state.items():
            arrays[f"features_{name}"] = np.asarray(value)
        arrays["meta"] = np.array(json.dumps(meta))
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
        from pathlib import Path

        atomic_save(Path(path), arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> HamiltonianModel:
        """Load a model written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = {k: np.array(data[k]) for k in data.files if k != "meta"}
        except Exception as exc:
            raise ValueError(f"`path` {os.fspath(path)!r} is not a saved HamiltonianModel: {exc}") from None
        version = meta.get("format_version")
        if version not in (1, _MODEL_FORMAT_VERSION):
            raise ValueError(f"unsupported model format version {version}")
        if version == 1 and meta.get("zeta", 2) >= 3 and meta.get("n_active", 300) is None and meta.get("kernel"):
            raise ValueError(
                "this exact zeta >= 3 kernel model was saved by an older ncsym whose weights have "
                "another layout: fit it again"
            )
        orbitals = {int(z): [tuple(s) for s in sh] for z, sh in meta["orbitals"].items()}
        model = cls(
            basis=meta["basis"],
            orbitals=orbitals if meta["user_orbitals"] else None,
            features=meta["feature_hypers"],
            alphas=meta["alphas"],
            cv=meta["cv"],
            chunk_size=meta["chunk_size"],
            kernel=meta.get("kernel", False),
            zeta=meta.get("zeta", 2),
            n_active=meta.get("n_active", 300),
            kernel_components=meta.get("kernel_components"),
            low_memory=meta.get("low_memory", False),
            feature_scaling=meta.get("feature_scaling", "property"),
            cv_groups=meta.get("cv_groups", "sample"),
            baseline=meta.get("baseline"),
            orthogonalize=meta.get("orthogonalize", False),
            method=meta.get("method", "RHF"),
            xc=meta.get("xc", "PBE"),
            progress=False,
        )
        model.species_ = meta["species"]
        model.orbitals_ = check_orbitals(orbitals)
        model.target_key_names_ = tuple(meta["target_key_names"])
        features = model._features()
        state = {k[len("features_") :]: v for k, v in arrays.items() if k.startswith("features_")}
        if state and hasattr(features, "set_state"):
            features.set_state(state)
        model.features_ = features
        for i, m in enumerate(meta["models"]):
            model.models_[tuple(m["key"])] = {
                "target_keys": [tuple(k) for k in m["target_keys"]],
                **{
                    name: arrays[f"m{i}_{name}"]
                    for name in _MODEL_ARRAYS + _KERNEL_ARRAYS
                    if f"m{i}_{name}" in arrays
                },
            }
        return model
