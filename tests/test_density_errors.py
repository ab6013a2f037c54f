"""Every error raised for bad structures or hyperparameters of the density expansion.

One ``pytest.raises(..., match=...)`` per message (ncsym._checks, ncsym.neighbors,
ncsym.radial, ncsym.density).
"""

import ase
import ase.build
import numpy as np
import pytest

from ncsym import PairExpansion, SphericalExpansion
from ncsym.conventions import MAX_ANGULAR
from ncsym.neighbors import neighbor_list

HYPERS = dict(cutoff=4.0, cutoff_width=0.5, density_width=0.3, max_radial=3, max_angular=3)
CALCULATORS = [SphericalExpansion, PairExpansion]


def _water():
    return ase.build.molecule("H2O")


def _compute_all(frames):
    """Every public entry point that takes structures must raise the same error."""
    for calculator in CALCULATORS:
        calc = calculator(**HYPERS)
        for method in (calc.compute, calc.compute_dense):
            yield method, frames


def _assert_raises_everywhere(frames, error, match, metadata=True):
    for method, arg in _compute_all(frames):
        with pytest.raises(error, match=match):
            method(arg)
    if metadata:
        for calculator in CALCULATORS:
            with pytest.raises(error, match=match):
                calculator(**HYPERS).compute_metadata(frames)
    with pytest.raises(error, match=match):
        neighbor_list(frames, 3.0)


# ----------------------------------------------------------------------------- structures
def test_frames_wrong_type():
    _assert_raises_everywhere(
        {"positions": [[0, 0, 0]]}, TypeError,
        "`frames` must be an ase.Atoms or a list of ase.Atoms, got dict",
    )


def test_frame_in_list_wrong_type():
    _assert_raises_everywhere([_water(), "H2O"], TypeError,
                              r"`frames\[1\]` must be an ase.Atoms, got str")


def test_no_frames():
    _assert_raises_everywhere([], ValueError, "`frames` is empty: expected at least one ase.Atoms")


def test_empty_structure():
    _assert_raises_everywhere([_water(), ase.Atoms()], ValueError,
                              "frame 1 has no atoms: every structure needs at least one atom")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_positions(bad):
    frame = ase.build.molecule("CH4")
    positions = frame.positions
    positions[[1, 3], 0] = bad
    frame.positions = positions
    _assert_raises_everywhere(
        frame, ValueError,
        r"positions of frame 0 contain NaN or infinite values for atoms \[1, 3\]",
    )


def test_positions_whose_sum_overflows():
    # the finite check runs on the sum of the positions first: finite values whose sum
    # overflows must still get a clear error, not pass as finite
    frame = ase.Atoms("H2", positions=[[1e308, 0, 0], [1e308, 0, 0]])
    _assert_raises_everywhere(frame, ValueError, r"positions of frame 0 are too large")


def test_mixed_pbc():
    frame = ase.build.bulk("Si", "diamond", 5.43)
    frame.pbc = [True, True, False]
    _assert_raises_everywhere(
        frame, ValueError,
        r"frame 0 has mixed periodic boundary conditions pbc=\[True, True, False\]",
    )


def test_periodic_zero_cell():
    frame = _water()
    frame.pbc = True
    _assert_raises_everywhere(frame, ValueError,
                              "frame 0 is periodic but its cell is zero: set `pbc=False`")


def test_periodic_singular_cell():
    frame = _water()
    frame.cell = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [3.0, 3.0, 0.0]]
    frame.pbc = True
    _assert_raises_everywhere(frame, ValueError, r"the cell of frame 0 is singular \(volume 0")


def test_periodic_non_finite_cell():
    frame = _water()
    frame.cell = [[3.0, 0.0, 0.0], [0.0, np.nan, 0.0], [0.0, 0.0, 3.0]]
    frame.pbc = True
    _assert_raises_everywhere(frame, ValueError,
                              "the cell of frame 0 contains NaN or infinite values")


def test_overlapping_atoms():
    frame = ase.build.molecule("CH4")
    positions = frame.positions
    positions[4] = positions[2] + [0.0, 5e-9, 0.0]
    frame.positions = positions
    match = r"atoms 2 and 4 of frame 0 are 5e-09 Angstrom apart \(minimum 1e-08\)"
    _assert_raises_everywhere(frame, ValueError, match, metadata=False)
    with pytest.raises(ValueError, match=match):
        PairExpansion(**HYPERS).compute_metadata(frame)


def test_overlapping_periodic_image():
    # atom 1 sits on the periodic image of atom 0 (one lattice vector away)
    cell = np.diag([4.0, 4.5, 5.0])
    frame = ase.Atoms("H2", positions=[[0.5, 0.5, 0.5], [4.5, 0.5, 0.5]], cell=cell, pbc=True)
    _assert_raises_everywhere(frame, ValueError, r"atoms 0 and 1 of frame 0 are 0 Angstrom apart",
                              metadata=False)


def test_atom_on_its_own_image():
    # a non-singular cell whose first vector is shorter than 1e-8 Angstrom
    frame = ase.Atoms("H", positions=[[0.0, 0.0, 0.0]], cell=np.diag([5e-9, 3.0, 3.0]), pbc=True)
    with pytest.raises(ValueError, match=r"atom 0 of frame 0 is 5e-09 Angstrom from its own periodic"):
        neighbor_list(frame, 1e-7)


def test_too_many_pairs():
    frame = ase.build.bulk("Si", "diamond", 5.43)
    with pytest.raises(ValueError, match=r"`cutoff` 2000 Angstrom is too large for the cell of frame 0"):
        neighbor_list(frame, 2000.0)
    calc = SphericalExpansion(**dict(HYPERS, cutoff=2000.0, density_width=50.0))
    with pytest.raises(ValueError, match="is too large for the cell of frame 0"):
        calc.compute(frame)


def test_unknown_species():
    for calculator in CALCULATORS:
        calc = calculator(species=[1, 8], **HYPERS)
        for method in (calc.compute, calc.compute_dense, calc.compute_metadata):
            with pytest.raises(
                ValueError, match=r"the frames contain species \[6\] that are not in `species` \[1, 8\]"
            ):
                method([_water(), ase.build.molecule("CH4")])


def test_neighbor_list_cutoff():
    with pytest.raises(ValueError, match="`cutoff` must be > 0, got 0.0"):
        neighbor_list(_water(), 0.0)


# ----------------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("calculator", CALCULATORS)
@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"cutoff": 0.0}, ValueError, "`cutoff` must be > 0, got 0.0"),
        ({"cutoff": -3.0}, ValueError, "`cutoff` must be > 0, got -3.0"),
        ({"cutoff": np.nan}, ValueError, "`cutoff` must be finite, got nan"),
        ({"cutoff": "4"}, TypeError, "`cutoff` must be a real number, got '4'"),
        ({"cutoff_width": 0.0}, ValueError, "`cutoff_width` must be > 0, got 0.0"),
        ({"cutoff_width": 4.5}, ValueError,
         "`cutoff_width` must be <= `cutoff`, got cutoff_width=4.5 and cutoff=4.0"),
        ({"density_width": -0.1}, ValueError, "`density_width` must be > 0, got -0.1"),
        ({"max_angular": MAX_ANGULAR + 1}, ValueError, f"`max_angular` must be <= {MAX_ANGULAR}"),
        ({"max_angular": -1}, ValueError, "`max_angular` must be >= 0, got -1"),
        ({"max_angular": 2.0}, TypeError, "`max_angular` must be an integer"),
        ({"max_radial": -1}, ValueError, "`max_radial` must be >= 0, got -1"),
        ({"max_radial": "3"}, TypeError, "`max_radial` must be an integer"),
        ({"max_radial": 30}, ValueError, "`max_radial` is too large: the GTO overlap matrix"),
        ({"center_atom_weight": "1"}, TypeError, "`center_atom_weight` must be a real number"),
        ({"center_atom_weight": np.inf}, ValueError, "`center_atom_weight` must be finite"),
        ({"spline_accuracy": 0.0}, ValueError, "`spline_accuracy` must be > 0, got 0.0"),
        ({"spline_accuracy": 1e-20}, ValueError,
         r"`spline_accuracy` 1e-20 cannot be reached \(error .* limited by rounding errors\)"),
        ({"cutoff": 2000.0, "spline_accuracy": 1e-12}, ValueError,
         r"`spline_accuracy` 1e-12 cannot be reached \(error .* limited by at most 65536"),
        ({"species": 6}, TypeError, "`species` must be a list of atomic numbers, got 6"),
        ({"species": [1, 6.5]}, TypeError, "`species` must contain integer atomic numbers"),
        ({"species": []}, ValueError, r"`species` must contain at least one atomic number"),
        ({"species": [1, -6]}, ValueError, r"`species` must contain atomic numbers >= 0"),
        ({"species": [1, 6, 1]}, ValueError,
         r"`species` must contain unique atomic numbers, got \[1, 6, 1\]"),
    ],
)
def test_bad_hyperparameters(calculator, changes, error, match):
    with pytest.raises(error, match=match):
        calculator(**dict(HYPERS, **changes))


def test_neighbors_to_properties_type():
    with pytest.raises(TypeError, match="`neighbors_to_properties` must be a bool, got str"):
        SphericalExpansion(neighbors_to_properties="yes", **HYPERS)


def test_keyword_only_and_required():
    with pytest.raises(TypeError, match="positional"):
        SphericalExpansion(4.0)
    with pytest.raises(TypeError, match="max_angular"):
        SphericalExpansion(max_radial=3)
    with pytest.raises(TypeError, match="neighbors_to_properties"):
        PairExpansion(neighbors_to_properties=True, **HYPERS)
