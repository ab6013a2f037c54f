"""Exact real-basis Clebsch-Gordan coefficients from integer arithmetic (symbolic layer).

Every complex Clebsch-Gordan coefficient is ``s sqrt(p / q)`` with integers ``p, q``.  The
Racah sum is rewritten as an integer sum of binomial products,

    C(j1 m1 j2 m2 | J M)^2 = (2J+1) I^2 (J+M)! (J-M)! (j1-m1)! (j1+m1)! (j2-m2)! (j2+m2)!
                             / [(j1+j2+J+1)! a! (J+j1-j2)! (J-j1+j2)!],
    I = sum_k (-1)^k binom(a, k) binom(J+j1-j2, j1-m1-k) binom(J-j1+j2, j2+m2-k),

with ``a = j1 + j2 - J``, so each coefficient costs a few big-integer products and one
``gcd`` (no SymPy on this path; SymPy only renders the result on request).

The real coefficients follow DESIGN.md: ``raw = Re or Im of U_L C U_l1^* U_l2^*`` (real part
if ``l1 + l2 + L`` is even, imaginary part if odd), then the effective coupling table is
``(-1)^(l1 + l2 + L) raw``.  For fixed real ``(m1, m2, M)`` all contributing complex terms
share ``|C|`` (they are related by ``m -> -m``), so the real coefficient is again
``s sqrt(p / q)``: it is returned exactly as ``(sign, p, q)``.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb, gcd

_FACT: list[int] = [1]


def _fact(n: int) -> int:
    while len(_FACT) <= n:
        _FACT.append(_FACT[-1] * len(_FACT))
    return _FACT[n]


def complex_cg_squared(j1: int, m1: int, j2: int, m2: int, J: int) -> tuple[int, int, int]:
    """Complex CG ``<j1 m1; j2 m2 | J m1+m2>`` (Condon-Shortley) as ``(sign, p, q)``.

    The coefficient equals ``sign * sqrt(p / q)`` with ``gcd(p, q) = 1``; ``sign`` is 0 for
    a zero coefficient.
    """
    M = m1 + m2
    if abs(m1) > j1 or abs(m2) > j2 or abs(M) > J:
        return 0, 0, 1
    a = j1 + j2 - J
    b = J + j1 - j2
    c = J - j1 + j2
    if a < 0 or b < 0 or c < 0:
        return 0, 0, 1
    kmin = max(0, j1 - m1 - b, j2 + m2 - c)
    kmax = min(a, j1 - m1, j2 + m2)
    total = 0
    for k in range(kmin, kmax + 1):
        term = comb(a, k) * comb(b, j1 - m1 - k) * comb(c, j2 + m2 - k)
        total += -term if k & 1 else term
    if total == 0:
        return 0, 0, 1
    f = _fact
    num = (2 * J + 1) * total * total
    num *= f(J + M) * f(J - M) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2)
    den = f(j1 + j2 + J + 1) * f(a) * f(b) * f(c)
    g = gcd(num, den)
    return (1 if total > 0 else -1), num // g, den // g


def _u_entries(l: int, m: int) -> list[tuple[int, complex]]:
    """Non-zero ``U_l[m, m']`` as ``(m', phase)``; magnitude is 1 (m=0) or 1/sqrt2."""
    if m == 0:
        return [(0, 1)]
    if m < 0:
        return [(m, 1j), (-m, -1j * (-1) ** m)]
    return [(-m, 1), (m, (-1) ** m)]


def real_cg_exact(l1: int, l2: int, lam: int) -> dict[tuple[int, int, int], tuple[int, int, int]]:
    """Exact effective real coupling table for one ``(l1, l2, lam)``.

    Returns
    -------
    dict
        ``{(m1 + l1, m2 + l2, mu + lam): (sign, p, q)}`` for the non-zero entries, where the
        coefficient is ``sign * sqrt(p / q)``.  Contracting ``out[mu] = sum cg[m1, m2, mu]
        a[m1] b[m2]`` couples two real spherical tensors into order ``lam``.
    """
    parity_odd = (l1 + l2 + lam) & 1
    out: dict[tuple[int, int, int], tuple[int, int, int]] = {}
    cache: dict[tuple[int, int], tuple[int, int, int]] = {}
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            # candidate real output mu: |mu| must equal |m1' + m2'| for some signs
            targets = {abs(m1) + abs(m2), abs(abs(m1) - abs(m2))}
            for tabs in targets:
                if tabs > lam:
                    continue
                for mu in {tabs, -tabs}:
                    z = 0j
                    sq = None
                    nroot2 = 0
                    for c1, u1 in _u_entries(l1, m1):
                        for c2, u2 in _u_entries(l2, m2):
                            cM = c1 + c2
                            if abs(cM) != tabs:
                                continue
                            for cL, uL in _u_entries(lam, mu):
                                if cL != cM:
                                    continue
                                key = (c1, c2)
                                if key not in cache:
                                    cache[key] = complex_cg_squared(l1, c1, l2, c2, lam)
                                s, p, q = cache[key]
                                if s == 0:
                                    continue
                                if sq is None:
                                    sq = (p, q)
                                    nroot2 = (m1 != 0) + (m2 != 0) + (mu != 0)
                                elif sq != (p, q):  # pragma: no cover - mathematical invariant
                                    raise AssertionError("real CG terms with different |C|")
                                z += uL * u1.conjugate() * u2.conjugate() * s
                    if sq is None:
                        continue
                    value = z.imag if parity_odd else z.real
                    value = round(value)  # an exact (Gaussian) integer sum of phases
                    if value == 0:
                        continue
                    if parity_odd:
                        value = -value  # (-1)^(l1+l2+lam) effective sign
                    p, q = sq
                    # value * 2^(-nroot2 / 2) * sqrt(p / q)
                    num = value * value * p
                    den = q * (2**nroot2)
                    g = gcd(num, den)
                    out[(m1 + l1, m2 + l2, mu + lam)] = (1 if value > 0 else -1, num // g, den // g)
    return out


def exact_to_sympy(sign: int, p: int, q: int):
    """Render ``sign * sqrt(p / q)`` as a SymPy expression."""
    import sympy

    return sign * sympy.sqrt(sympy.Rational(p, q))


def exact_to_float(sign: int, p: int, q: int) -> float:
    """``sign * sqrt(p / q)`` in float64 (``p / q`` correctly rounded, then sqrt)."""
    return sign * (p / q) ** 0.5


def exact_fraction_squared(sign: int, p: int, q: int) -> Fraction:
    """The signed square ``sign * p / q`` as a Fraction (handy in tests)."""
    return sign * Fraction(p, q)
