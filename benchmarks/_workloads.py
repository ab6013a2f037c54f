"""Structures shared by the benchmark scripts (imported from the scripts' own folder)."""

from __future__ import annotations


def si216_frames(n: int = 1) -> list:
    """``n`` Si216 cells (diamond, 3x3x3 cubic, a = 5.43 A); copies after the first rattled by
    0.01 A (seeded), so that repeated structures are not identical."""
    import ase.build

    base = ase.build.bulk("Si", "diamond", 5.43, cubic=True) * (3, 3, 3)
    frames = [base]
    for i in range(1, n):
        frame = base.copy()
        frame.rattle(stdev=0.01, seed=i)
        frames.append(frame)
    return frames
