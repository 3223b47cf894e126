"""What a tuning fold is scored by: the forecasts' Rank IC, or the net return of the book they
would trade (``models.objective: rank_ic | net_return``).

A model with a higher Rank IC is not always the one that pays after costs: a forecast whose
ranks churn from day to day trades its edge away. ``net_return`` scores a fold by the book its
predictions build, as the pipeline builds it (the top ``k`` names, equal weight, rebalanced
every ``every`` dates of the fold), earning each period the mean label of its names (the label
is the forward return, so its horizon should match ``every``) less what the names bought and
sold cost (per row: the commission plus the half-spread the cost model charges), annualised.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

from models.learning.metrics import mean_rank_ic

OBJECTIVES = ("rank_ic", "net_return")


@dataclass(frozen=True)
class BookScorer:
    """Scores a fold by its book's annualised net return.

    ``symbols`` (integer codes) and ``costs`` (cost per unit traded, a return) are aligned with
    the problem's rows."""

    symbols: np.ndarray
    costs: np.ndarray
    top_k: int = 10
    every: int = 5

    def identity(self) -> str:
        """What makes two scorers' studies comparable (for the study name)."""
        digest = hashlib.sha256(np.asarray(self.costs, np.float64).tobytes()).hexdigest()[:12]
        return f"net_return(k={self.top_k}, every={self.every}, costs={digest})"

    def __call__(self, dates: np.ndarray, pred: np.ndarray, label: np.ndarray, rows: np.ndarray):
        return book_net_return(
            dates, pred, label, self.symbols[rows], self.costs[rows], self.top_k, self.every
        )


def book_net_return(
    dates: np.ndarray,
    pred: np.ndarray,
    label: np.ndarray,
    symbols: np.ndarray,
    costs: np.ndarray,
    top_k: int,
    every: int,
) -> float:
    """Annualised mean net return of the top-``top_k`` book rebalanced every ``every`` dates:
    per period the mean ``label`` of the held names less the cost of the names that changed
    (``1/k`` of the book each, sold and bought)."""
    unique, inverse = np.unique(dates, return_inverse=True)
    chosen = np.flatnonzero(np.isin(inverse, np.arange(0, len(unique), every)))
    if not len(chosen):
        return float("nan")
    # rows of each rebalance date, best forecast first (one sort, no loop over rows)
    order = chosen[np.lexsort((-pred[chosen], inverse[chosen]))]
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    ends = np.r_[starts[1:], len(order)]
    held: dict[int, float] = {}
    net = []
    for a, b in zip(starts, ends, strict=True):  # one step per rebalance date
        top = order[a : min(b, a + top_k)]
        book = dict(zip(symbols[top].tolist(), costs[top].tolist(), strict=True))
        traded = sum(book[s] for s in book.keys() - held.keys())
        traded += sum(held[s] for s in held.keys() - book.keys())
        net.append(float(np.mean(label[top])) - traded / top_k)
        held = book
    return float(np.mean(net) * 252 / every)


def rank_ic(dates: np.ndarray, pred: np.ndarray, label: np.ndarray, rows: np.ndarray) -> float:
    """The mean per-date Rank IC (the default objective)."""
    return mean_rank_ic(dates, pred, label)
