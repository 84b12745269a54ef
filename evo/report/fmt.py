"""How the report writes numbers, intervals and names (pure)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evo.report.stats import Interval, MethodStats


def fmt_score(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def fmt_seconds(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def fmt_rate(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def fmt_interval(iv: Interval | None, why: str = "", digits: int = 2) -> str:
    """``12.34 [10.00, 15.00]`` with a CI; without one, ``12.34 (why)``: never a fake interval."""
    if iv is None:
        return "—"
    if not iv.has_ci:
        return f"{iv.value:.{digits}f}" + (f" ({why})" if why else "")
    return f"{iv.value:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


def fmt_median_range(st: MethodStats | None) -> str:
    """``12.34 (10.00 to 15.00)``: the median and the range of the run scores (one run: its score)."""
    if st is None:
        return "—"
    if st.n == 1:
        return fmt_score(st.median.value)
    return f"{fmt_score(st.median.value)} ({fmt_score(st.low)} to {fmt_score(st.high)})"


def no_ci_why(n: int, *others: int) -> str:
    """Why a number has no CI: ``no CI: n = 3`` (or ``n = 3 vs 8`` for a comparison of two samples)."""
    return "no CI: n = " + " vs ".join(str(k) for k in (n, *others))


def short(v: Any) -> str:
    """A hyperparameter value in a few characters (floats to 4 significant digits)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def safe_name(name: str) -> str:
    """``name`` usable in a file name: anything but letters, digits and ``-_.`` becomes ``_``."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
