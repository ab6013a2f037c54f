"""Couple uncoupled Hamiltonian blocks into equivariant ``(lambda, sigma)`` blocks and back.

A block ``H_{l m, l' m'}`` (rows: shell ``(n, l)`` of the first atom, columns: shell
``(n', l')`` of the second) is the product of two real spherical tensors of orders ``l`` and
``l'``.  With the real Clebsch-Gordan table of :func:`ncsym.cg.clebsch_gordan`
(``out[mu] = sum cg[m1, m2, mu] a[m1] b[m2]``, featomic's effective sign included)::

    H^{lambda mu} = sum_{m m'} cg_{l l' lambda}[m, m', mu] H_{l m, l' m'},
    |l - l'| <= lambda <= l + l',   sigma = (-1)^(l + l' + lambda).

The table is orthogonal, so decoupling is the transpose and the round trip is exact.  Under a
rotation ``R`` of the structure ``H^lambda -> D_lambda(R) H^lambda``; under inversion it picks
up ``(-1)^(l + l') = sigma (-1)^lambda``, matching the parity rule of
:mod:`ncsym.conventions`.

Selection rule (DESIGN.md, point 6): for equal shells ``(n l) = (n' l')`` of the same species,
on-site blocks (type 0) and ``H^+`` (type +1) are symmetric matrices, whose coupled components
with odd ``l + l' + lambda`` vanish identically; ``H^-`` (type -1) is antisymmetric and keeps
odd ``l + l' + lambda`` only.  Those vanishing components are not stored, and are taken as
zero when decoupling.

References
----------
J. Nigam, M. J. Willatt, M. Ceriotti, J. Chem. Phys. 156, 014115 (2022), Sec. IV.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from ..blocks import Block, BlockMap, Labels
from .blocks import BLOCK_KEY_NAMES, BLOCK_SAMPLE_NAMES, BlockKey, MatrixBlock, MatrixBlocks

__all__ = ["COUPLED_KEY_NAMES", "couple_blocks", "decouple_blocks", "kept_lambdas"]

#: Key names of coupled blocks (``ncsym.BlockMap``).
COUPLED_KEY_NAMES = (*BLOCK_KEY_NAMES, "o3_lambda", "o3_sigma")


def _cg_dense(l1: int, l2: int, lam: int) -> np.ndarray:
    from ..cg import clebsch_gordan

    return np.asarray(clebsch_gordan(l1, l2, lam).todense(), dtype=np.float64)


def kept_lambdas(key: BlockKey) -> list[int]:
    """Angular orders ``lambda`` stored for an uncoupled block key.

    ``|l_i - l_j| <= lambda <= l_i + l_j``; for equal shells of one species, only even
    ``l_i + l_j + lambda`` for block types 0 and +1 and only odd for type -1.
    """
    key = BlockKey(*key)
    lams = range(abs(key.l_i - key.l_j), key.l_i + key.l_j + 1)
    same_shell = (
        key.block_type in (0, 1, -1)
        and key.first_atom_type == key.second_atom_type
        and (key.n_i, key.l_i) == (key.n_j, key.l_j)
    )
    if not same_shell:
        return list(lams)
    parity = 1 if key.block_type == -1 else 0
    return [lam for lam in lams if (key.l_i + key.l_j + lam) % 2 == parity]


def couple_blocks(blocks: MatrixBlocks) -> BlockMap:
    """Couple uncoupled blocks into equivariant blocks of order ``(lambda, sigma)``.

    Parameters
    ----------
    blocks : MatrixBlocks
        From :func:`ncsym.hamiltonian.matrix_to_blocks`.

    Returns
    -------
    ncsym.BlockMap
        Keys ``(block_type, first_atom_type, second_atom_type, n_i, l_i, n_j, l_j, o3_lambda, o3_sigma)``
        (:data:`COUPLED_KEY_NAMES`); each block has values ``(n_samples, 2 lambda + 1, 1)``
        (Hartree for Fock matrices), samples ``(system, first_atom, second_atom)`` and a
        single ``_`` property.  ``info["orbitals"]`` keeps the orbital layout when known.
        Components that vanish by symmetry (see :func:`kept_lambdas`) are not stored.
    """
    if not isinstance(blocks, Mapping):
        raise TypeError(f"`blocks` must be MatrixBlocks, got {type(blocks).__name__}")
    keys, out = [], []
    properties = Labels.single()
    for raw_key, block in blocks.items():
        key = BlockKey(*raw_key)
        values = np.asarray(block.values, dtype=np.float64)
        if values.shape[1:] != (2 * key.l_i + 1, 2 * key.l_j + 1):
            raise ValueError(f"block {tuple(key)} has values of shape {values.shape}, expected "
                             f"(n, {2 * key.l_i + 1}, {2 * key.l_j + 1})")
        samples = Labels(BLOCK_SAMPLE_NAMES, np.asarray(block.samples).reshape(-1, 3))
        for lam in kept_lambdas(key):
            cg = _cg_dense(key.l_i, key.l_j, lam)
            coupled = np.einsum("sab,abm->sm", values, cg)
            sigma = -1 if (key.l_i + key.l_j + lam) % 2 else 1
            keys.append((*key, lam, sigma))
            out.append(Block(coupled[:, :, None], samples, properties))
    info = {}
    orbitals = getattr(blocks, "orbitals", None)
    if orbitals is not None:
        info["orbitals"] = {str(z): [list(s) for s in shells] for z, shells in orbitals.items()}
    key_labels = Labels(COUPLED_KEY_NAMES, np.array(keys, dtype=np.int32).reshape(-1, 9))
    return BlockMap(key_labels, out, info)


def decouple_blocks(coupled: BlockMap) -> MatrixBlocks:
    """Inverse of :func:`couple_blocks`: sum ``lambda`` components back into ``(2l+1, 2l'+1)``.

    Parameters
    ----------
    coupled : ncsym.BlockMap
        Keys named :data:`COUPLED_KEY_NAMES`, values ``(n_samples, 2 lambda + 1, 1)``.  All
        ``lambda`` blocks of one uncoupled key must share their samples (same order);
        missing ``lambda`` blocks count as zero.

    Returns
    -------
    MatrixBlocks
        Uncoupled blocks ``(n_samples, 2 l_i + 1, 2 l_j + 1)``.

    Raises
    ------
    ValueError
        Wrong key names, ``lambda`` outside the triangle rule, a ``sigma`` inconsistent with
        ``(-1)^(l_i + l_j + lambda)``, more than one property, samples that differ between the
        ``lambda`` blocks of one key.
    """
    if not isinstance(coupled, BlockMap):
        raise TypeError(f"`coupled` must be ncsym.BlockMap, got {type(coupled).__name__}")
    if tuple(coupled.keys.names) != COUPLED_KEY_NAMES:
        raise ValueError(
            f"`coupled` keys must be named {COUPLED_KEY_NAMES}, got {tuple(coupled.keys.names)}"
        )
    grouped: dict[BlockKey, list[tuple[int, Block]]] = {}
    for i, block in enumerate(coupled.blocks):
        row = tuple(int(v) for v in coupled.keys.values[i])
        key, lam, sigma = BlockKey(*row[:7]), row[7], row[8]
        if not abs(key.l_i - key.l_j) <= lam <= key.l_i + key.l_j:
            raise ValueError(f"block {row}: o3_lambda {lam} violates |l_i - l_j| <= lambda <= "
                             f"l_i + l_j")
        if sigma != (-1 if (key.l_i + key.l_j + lam) % 2 else 1):
            raise ValueError(f"block {row}: o3_sigma must be (-1)^(l_i + l_j + lambda)")
        if block.values.shape[1] != 2 * lam + 1 or block.values.shape[2] != 1:
            raise ValueError(f"block {row}: values must have shape (n, {2 * lam + 1}, 1), got "
                             f"{block.values.shape}")
        grouped.setdefault(key, []).append((lam, block))

    result = {}
    for key, parts in grouped.items():
        samples = parts[0][1].samples
        for lam, block in parts[1:]:
            if block.samples != samples:
                raise ValueError(
                    f"coupled blocks of {tuple(key)} have different samples for lambda "
                    f"{parts[0][0]} and {lam}"
                )
        values = np.zeros((len(samples), 2 * key.l_i + 1, 2 * key.l_j + 1))
        for lam, block in parts:
            cg = _cg_dense(key.l_i, key.l_j, lam)
            values += np.einsum("sm,abm->sab", np.asarray(block.values[:, :, 0]), cg)
        sample_values = np.asarray(samples.select_columns(BLOCK_SAMPLE_NAMES).values)
        result[key] = MatrixBlock(sample_values, values)
    orbitals = coupled.info.get("orbitals")
    if isinstance(orbitals, str):
        orbitals = json.loads(orbitals)
    if orbitals is not None:
        orbitals = {int(z): [tuple(s) for s in shells] for z, shells in orbitals.items()}
    return MatrixBlocks(result, orbitals)
