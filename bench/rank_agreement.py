"""Do the label-free estimators predict the probes? Kendall's tau between each estimator (``RunRecord.estimators``,
mean over a leaderboard row's runs) and the row's headline mean, over the rows that have both.

Kendall's tau-b of pairs (x_i, y_i), i = 1..n: over all pairs i < j, P concordant (x and y order them alike),
Q discordant, T_x pairs tied only in x, T_y tied only in y:
``tau_b = (P - Q) / sqrt((P + Q + T_x) * (P + Q + T_y))`` (pairs tied in both count in neither);
+1: the estimator ranks the rows as the probe does, -1: in reverse (alpha-ReQ is expected to fall as quality
rises). ``scipy.stats.kendalltau`` (tau-b, with its p-value) is used where scipy is installed."""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["estimator_agreement", "kendall_tau", "kendall_tau_b"]


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """tau-b by counting pairs (see the module docstring); NaN for n < 2 or when x or y is constant."""
    p = q = tx = ty = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                tx += 1
            elif dy == 0:
                ty += 1
            elif (dx > 0) == (dy > 0):
                p += 1
            else:
                q += 1
    denom = math.sqrt((p + q + tx) * (p + q + ty))
    return (p - q) / denom if denom else math.nan


def kendall_tau(x: list[float], y: list[float]) -> tuple[float, float | None]:
    """(tau-b, two-sided p-value): scipy's where installed, else :func:`kendall_tau_b` and no p-value."""
    if len(x) < 2:
        return math.nan, None
    try:
        from scipy.stats import kendalltau
    except ImportError:
        return kendall_tau_b(list(x), list(y)), None
    res = kendalltau(x, y)
    return float(res.statistic), (None if math.isnan(res.pvalue) else float(res.pvalue))


def estimator_agreement(df: pd.DataFrame, records: list, headline: str) -> list[dict]:
    """One entry per estimator found in the rows' records: ``estimator, tau, p, n`` (n: rows with the estimator
    and a headline mean), in the order rankme, alpha_req, lidar, then any other."""
    by_id = {r.run_id: r for r in records}
    values: dict[str, list[tuple[float, float]]] = {}
    for _, row in df.iterrows():
        score = row.get(f"{headline}_mean")
        if score is None or pd.isna(score):
            continue
        runs = [by_id[i] for i in str(row["run_ids"]).split() if i in by_id]
        for name in dict.fromkeys(k for r in runs for k in r.estimators):
            vals = [r.estimators[name] for r in runs if name in r.estimators]
            values.setdefault(name, []).append((sum(vals) / len(vals), float(score)))
    order = {"rankme": 0, "alpha_req": 1, "lidar": 2}
    out = []
    for name in sorted(values, key=lambda k: (order.get(k, 3), k)):
        xs, ys = zip(*values[name])
        tau, p = kendall_tau(list(xs), list(ys))
        out.append({"estimator": name, "tau": tau, "p": p, "n": len(xs)})
    return out
