"""Fits of final loss against training compute, their uncertainty, and the Cerebras-GPT paper's published law.

The fit (``fit_power_law``): L = a * C^b, a straight line in log-log space fitted by least squares, with the
standard errors and covariance of (ln a, b) from the residual scatter (s^2 = RSS / (n - 2)) and a 95% prediction
interval (Student's t with n - 2 degrees of freedom) for a new point, the held-out size.

The alternative (``fit_with_floor``): L = c + a * C^b, the paper's form, an irreducible loss c (scipy's curve_fit,
its covariance). It has three parameters, so it is reported only with at least 5 points and chosen over the pure
power law only when its small-sample AIC (AICc) is lower (``choose_fit``). With the quick study's 4 fitted sizes it
is not identifiable (AICc needs n > k + 1 = 4): tiny models sit far above any floor, where the two forms agree.

``PAPER_LAW``: Dey et al. 2023, "Cerebras-GPT: Open Compute-Optimal Language Models Trained on the Cerebras
Wafer-Scale Cluster", arXiv 2304.03208v1, Sec. 3.1, Eq. (1): L(f) = (f / 5.984e22)^-0.0737 + 0.5066, f the
pre-training compute in the paper's algorithmic FLOPs (its Appendix F; model.config.GPTConfig.flops_per_token_paper),
L the Pile test loss in nats/token (footnote 3), fitted on the SP models 111M..6.7B (13B landed within 0.5% of it).
The paper publishes no separate muP law: its muP models lie on average 0.43% below the SP law, with 0.04% standard
deviation against SP's 0.66% (Sec. 3.3). ``PAPER_POINTS``: the published losses it was fitted to (Table 3 / Appendix
C.2 Table 8: training FLOPs and Pile test loss of each SP and muP model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAPER_LAW = {"f0": 5.984e22, "alpha": 0.0737, "c": 0.5066,
             "form": "L(f) = (f / 5.984e22)^-0.0737 + 0.5066",
             "source": "Dey et al. 2023, arXiv 2304.03208v1, Sec. 3.1, Eq. (1)",
             "units": "f: pre-training FLOPs (the paper's algorithmic FLOPs, Appendix F); L: Pile test loss, nats/token"}
# (model, training FLOPs, Pile test loss): arXiv 2304.03208v1 Table 3 and Appendix C.2 Table 8. The HF model cards
# print other SP losses for 111M (2.566) and 256M (2.299); the paper's own are used, as its muP column is paper-only.
PAPER_POINTS = {
    "sp": [("111M", 2.6e18, 2.608), ("256M", 1.3e19, 2.349), ("590M", 6.1e19, 2.181), ("1.3B", 2.8e20, 1.997),
           ("2.7B", 1.1e21, 1.834), ("6.7B", 6.3e21, 1.704), ("13B", 2.3e22, 1.572)],
    "mup": [("111M", 2.6e18, 2.588), ("256M", 1.3e19, 2.359), ("590M", 6.1e19, 2.155), ("1.3B", 2.8e20, 1.984),
            ("2.7B", 1.1e21, 1.846)],
}
CONFIDENCE = 0.95


def paper_loss(flops) -> np.ndarray:
    """The paper's law at ``flops`` (its algorithmic FLOPs): Pile test loss, nats/token."""
    return (np.asarray(flops, float) / PAPER_LAW["f0"]) ** -PAPER_LAW["alpha"] + PAPER_LAW["c"]


def paper_local_exponent(flops: float) -> float:
    """d ln L / d ln f of the paper's law at ``flops``: the exponent a pure power law fitted near there would have."""
    power = (flops / PAPER_LAW["f0"]) ** -PAPER_LAW["alpha"]
    return -PAPER_LAW["alpha"] * power / (power + PAPER_LAW["c"])


@dataclass(frozen=True)
class PowerLaw:
    """L = a * C^b fitted to ``n`` points: ``log_a`` and ``b`` with their covariance ``cov`` (2x2, order ln a, b),
    ``s`` the residual standard deviation of ln L, ``dof`` = n - 2."""

    log_a: float
    b: float
    cov: np.ndarray
    s: float
    n: int

    @property
    def a(self) -> float:
        return math.exp(self.log_a)

    @property
    def dof(self) -> int:
        return self.n - 2

    def __call__(self, compute) -> np.ndarray:
        return np.exp(self.log_a + self.b * np.log(np.asarray(compute, float)))

    def interval(self, compute: float, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
        """(prediction, low, high) at ``compute``: the ``confidence`` prediction interval of a new point (parameter
        uncertainty plus the residual scatter), Student's t with n - 2 degrees of freedom."""
        from scipy import stats

        x = np.array([1.0, math.log(compute)])
        var = float(x @ self.cov @ x) + self.s ** 2
        half = stats.t.ppf(0.5 + confidence / 2, max(self.dof, 1)) * math.sqrt(var)
        mid = self.log_a + self.b * x[1]
        return math.exp(mid), math.exp(mid - half), math.exp(mid + half)

    def describe(self) -> dict:
        se = np.sqrt(np.diag(self.cov))
        return {"form": "L = a * C^b", "a": self.a, "b": self.b, "b_stderr": float(se[1]), "log_a": self.log_a,
                "log_a_stderr": float(se[0]), "cov_log_a_b": self.cov.tolist(), "residual_std_log": self.s,
                "points": self.n, "dof": self.dof}


def fit_power_law(compute, loss) -> PowerLaw:
    """Least squares of ln L = ln a + b ln C over the points. ValueError with fewer than 3 points (no scatter left
    to measure the uncertainty with) or non-positive values."""
    c, L = np.asarray(compute, float), np.asarray(loss, float)
    if len(c) != len(L) or len(c) < 3:
        raise ValueError(f"a power-law fit with an uncertainty needs at least 3 points, got {len(c)}")
    if np.any(c <= 0) or np.any(L <= 0):
        raise ValueError("compute and loss must be positive")
    X = np.column_stack([np.ones_like(c), np.log(c)])
    y = np.log(L)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    s2 = float(resid @ resid) / (len(c) - 2)
    cov = s2 * np.linalg.inv(X.T @ X)
    return PowerLaw(float(coef[0]), float(coef[1]), cov, math.sqrt(s2), len(c))


@dataclass(frozen=True)
class FloorLaw:
    """L = c + a * (C / C_mid)^b fitted to ``n`` points: parameters ``p`` = (a, b, c), their covariance ``cov``,
    ``s`` the residual standard deviation of L, ``c_mid`` the geometric mean compute (keeps a of order one)."""

    p: tuple[float, float, float]
    cov: np.ndarray
    s: float
    n: int
    c_mid: float

    def __call__(self, compute) -> np.ndarray:
        a, b, c = self.p
        return c + a * (np.asarray(compute, float) / self.c_mid) ** b

    def interval(self, compute: float, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
        """(prediction, low, high): the delta method over (a, b, c) plus the residual scatter, t with n - 3 dof."""
        from scipy import stats

        a, b, _ = self.p
        x = compute / self.c_mid
        grad = np.array([x ** b, a * x ** b * math.log(x), 1.0])
        half = stats.t.ppf(0.5 + confidence / 2, max(self.n - 3, 1)) * math.sqrt(float(grad @ self.cov @ grad) + self.s ** 2)
        mid = float(self(compute))
        return mid, mid - half, mid + half

    def describe(self) -> dict:
        se = np.sqrt(np.diag(self.cov))
        return {"form": "L = c + a * (C / C_mid)^b", "C_mid": self.c_mid, "a": self.p[0], "b": self.p[1],
                "c": self.p[2], "stderr": {"a": float(se[0]), "b": float(se[1]), "c": float(se[2])},
                "residual_std": self.s, "points": self.n}


def fit_with_floor(compute, loss) -> FloorLaw | None:
    """L = c + a * C^b by scipy's curve_fit, started from the power law with c = 0; None with fewer than 5 points
    (not identifiable) or when it does not converge to 0 <= c < min L with a finite covariance."""
    from scipy.optimize import curve_fit

    c_, L = np.asarray(compute, float), np.asarray(loss, float)
    if len(c_) < 5:
        return None
    pl = fit_power_law(c_, L)
    mid = float(np.exp(np.mean(np.log(c_))))

    def model(x, a, b, floor):
        return floor + a * (x / mid) ** b

    try:
        p, cov = curve_fit(model, c_, L, p0=(float(pl(mid)), pl.b, 0.0), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    if not 0 <= p[2] < L.min() or not np.all(np.isfinite(cov)):
        return None
    rss = float(np.sum((L - model(c_, *p)) ** 2))
    return FloorLaw((float(p[0]), float(p[1]), float(p[2])), cov, math.sqrt(rss / (len(L) - 3)), len(L), mid)


def aicc(rss: float, n: int, k: int) -> float:
    """Small-sample Akaike information criterion of a least-squares fit with ``k`` parameters (inf when n <= k + 1)."""
    if n <= k + 1 or rss <= 0:
        return math.inf
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def choose_fit(compute, loss) -> dict:
    """Both fits and which one the data supports: ``law`` (the chosen fit: predicts with ``interval``), ``chosen``,
    ``why``, and both described. The floor is chosen only when its AICc is lower than the power law's."""
    pl = fit_power_law(compute, loss)
    L = np.asarray(loss, float)
    floor = fit_with_floor(compute, loss)
    pl_aicc = aicc(float(np.sum((L - pl(compute)) ** 2)), len(L), 2)
    floor_aicc = aicc(floor.s ** 2 * (len(L) - 3), len(L), 3) if floor is not None else math.inf
    use_floor = floor_aicc < pl_aicc
    if use_floor:
        why = f"the irreducible term lowers the small-sample AIC ({floor_aicc:.1f} against {pl_aicc:.1f})"
    elif floor is None:
        why = (f"{len(L)} points leave a 3-parameter law too few degrees of freedom to pin an irreducible term"
               if len(L) < 5 else "a fit with an irreducible term does not converge to a floor below the losses")
    else:
        why = f"the irreducible term does not lower the small-sample AIC ({floor_aicc:.1f} against {pl_aicc:.1f})"
    return {"law": floor if use_floor else pl, "chosen": "with_floor" if use_floor else "power_law", "why": why,
            "power_law": pl.describe(), "power_law_aicc": pl_aicc,
            "with_floor": None if floor is None else {**floor.describe(), "aicc": floor_aicc}}
