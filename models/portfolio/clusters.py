"""Clusters of assets on return correlations, each portfolio's exposure to them, and the
cluster cap the mean-variance books take as linear constraints.

The clustering is skfolio's (Pearson distance, Ward linkage, the tree cut into at most
``n_clusters`` groups): the same hierarchy HRP allocates along.
"""

import numpy as np
import polars as pl
from skfolio.cluster import HierarchicalClustering
from skfolio.distance import PearsonDistance

from models.data.panel import to_dense
from models.types import DATE, SYMBOL


def correlation_clusters(window: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cluster label of each column of a ``(days, assets)`` return window."""
    distance = PearsonDistance().fit(window).distance_
    return HierarchicalClustering(max_clusters=n_clusters).fit(distance).labels_


def clusters_before(returns: pl.DataFrame, day, lookback: int, n_clusters: int) -> pl.DataFrame:
    """``[symbol, cluster]`` from the ``lookback`` days of returns up to and including ``day``
    (symbols with a full window only): known on ``day``, so point-in-time for what follows."""
    dates, symbols, matrix = to_dense(returns.filter(pl.col(DATE) <= day), "ret")
    window = matrix[-lookback:]
    keep = ~np.isnan(window).any(axis=0)
    labels = correlation_clusters(window[:, keep], n_clusters)
    return pl.DataFrame({SYMBOL: symbols[keep], "cluster": labels.astype(np.int64)})


def cluster_constraints(labels: np.ndarray, cap: float, long_short: bool) -> dict:
    """skfolio ``groups`` and ``linear_constraints`` holding each cluster's net weight within
    ``cap`` (and above ``-cap`` for a long-short book)."""
    names = [f"cluster{label}" for label in labels]
    rules = [f"{name} <= {cap}" for name in sorted(set(names))]
    if long_short:
        rules += [f"{name} >= {-cap}" for name in sorted(set(names))]
    return {"groups": [names], "linear_constraints": rules}


def cluster_exposure(weights: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    """``[strategy, cluster, net, gross]``: each strategy's mean net and gross weight in each
    cluster over its rebalance dates (symbols without a cluster count as cluster -1)."""
    per_date = (
        weights.join(clusters, on=SYMBOL, how="left")
        .with_columns(pl.col("cluster").fill_null(-1))
        .group_by("strategy", DATE, "cluster")
        .agg(net=pl.col("weight").sum(), gross=pl.col("weight").abs().sum())
    )
    dates = weights.group_by("strategy").agg(n=pl.col(DATE).n_unique())
    return (
        per_date.group_by("strategy", "cluster")
        .agg(pl.col("net").sum(), pl.col("gross").sum())
        .join(dates, on="strategy")
        # a date without a cluster's names is a zero for that cluster, not a missing value
        .select(
            "strategy",
            "cluster",
            pl.col("net") / pl.col("n"),
            pl.col("gross") / pl.col("n"),
        )
        .sort("strategy", "cluster")
    )
