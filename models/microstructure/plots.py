"""Pictures of an order-book day: the depth heat-map, order-flow imbalance against the mid's
move, the impact curve. Pure: each returns a matplotlib Figure."""

import numpy as np
import polars as pl
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from models.microstructure.features import BookArrays
from models.microstructure.reader import DUMMY, PRICE_SCALE


def depth_heatmap(
    events: pl.DataFrame,
    book: pl.DataFrame,
    title: str,
    bins: int = 600,
    max_trades: int = 4000,
) -> Figure:
    """Resting size by price (one row per cent) and time (``bins`` columns, each the book
    after the last event in it): asks in reds, bids in blues, the mid as a line, executions
    as dots (green buyer-initiated, red seller-initiated; at most ``max_trades`` of them,
    evenly thinned)."""
    a = BookArrays.from_frames(events, book)
    t = a.t_ns
    edges = np.linspace(t[0], t[-1], bins + 1)
    last = np.clip(np.searchsorted(t, edges[1:], side="right") - 1, 0, len(t) - 1)
    cent = PRICE_SCALE // 100
    prices = np.concatenate([a.ask_p[last], a.bid_p[last]], axis=1)
    occupied = np.abs(prices) != DUMMY
    lo = int(prices[occupied].min() // cent)
    hi = int(prices[occupied].max() // cent)
    grid_ask = np.full((hi - lo + 1, bins), np.nan)
    grid_bid = np.full((hi - lo + 1, bins), np.nan)
    for grid, p, q in (
        (grid_ask, a.ask_p[last], a.ask_s[last]),
        (grid_bid, a.bid_p[last], a.bid_s[last]),
    ):
        on = np.abs(p) != DUMMY
        col = np.broadcast_to(np.arange(bins)[:, None], p.shape)
        grid[(p[on] // cent - lo).astype(int), col[on]] = q[on]
    hours = (edges - edges[0]) / 3.6e12
    start_h = edges[0] / 3.6e12
    extent = (start_h, start_h + hours[-1], lo / 100, (hi + 1) / 100)
    fig = Figure(figsize=(11, 5.5))
    ax = fig.subplots()
    top = np.nanmax([np.nanmax(grid_ask), np.nanmax(grid_bid)])
    norm = LogNorm(vmin=1, vmax=max(top, 2))
    im_a = ax.imshow(
        grid_ask,
        origin="lower",
        aspect="auto",
        extent=extent,
        cmap="Reds",
        norm=norm,
        interpolation="nearest",
    )
    ax.imshow(
        grid_bid,
        origin="lower",
        aspect="auto",
        extent=extent,
        cmap="Blues",
        norm=norm,
        interpolation="nearest",
    )
    both = (a.ask_p[:, 0] != DUMMY) & (a.bid_p[:, 0] != -DUMMY)
    mid = np.where(both, (a.ask_p[:, 0] + a.bid_p[:, 0]) / 2 / PRICE_SCALE, np.nan)
    ax.plot(t[last] / 3.6e12, mid[last], color="black", lw=0.8, label="mid")
    trades = np.flatnonzero(np.isin(a.kind, (4, 5)))
    trades = trades[:: max(1, len(trades) // max_trades)]
    px = events["price"].to_numpy()[trades]
    for sign, colour, label in (
        (1, "tab:green", "buyer-initiated"),
        (-1, "tab:red", "seller-initiated"),
    ):
        pick = a.sign[trades] == sign
        ax.scatter(t[trades][pick] / 3.6e12, px[pick], s=3, color=colour, label=label, zorder=3)
    ax.set(title=title, xlabel="hour (exchange time)", ylabel="price ($)")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    fig.colorbar(im_a, ax=ax, label="resting shares (ask reds, bid blues)")
    fig.tight_layout()
    return fig


def ofi_vs_mid(intervals: pl.DataFrame, title: str) -> Figure:
    """Each interval's level-1 order-flow imbalance against its mid change (bp), with the
    least-squares line and its R^2 (Cont, Kukanov & Stoikov's figure)."""
    frame = intervals.drop_nulls(["ofi_1", "return_bp"])
    x, y = frame["ofi_1"].to_numpy().astype(float), frame["return_bp"].to_numpy()
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    ax.scatter(x, y, s=3, alpha=0.35)
    if len(x) > 2 and np.std(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        r2 = np.corrcoef(x, y)[0, 1] ** 2
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, intercept + slope * xs, color="black", lw=1, label=f"OLS, R² {r2:.2f}")
        ax.legend()
    ax.set(title=title, xlabel="order-flow imbalance, level 1 (shares)", ylabel="mid change (bp)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def impact_curve(curves: dict[str, dict], bins: int = 20) -> Figure:
    """Per ticker: the mean interval return (bp) in quantile bins of the signed flow as a share
    of daily volume (test intervals dots, training crosses), with the fitted square-root law
    and Kyle's line."""
    fig = Figure(figsize=(5.5 * max(1, len(curves)), 4.5))
    axes = np.atleast_1d(fig.subplots(1, max(1, len(curves))))
    for ax, (symbol, c) in zip(axes, curves.items(), strict=False):
        x, r, n_train = c["x_share"], c["returns"], c["n_train"]
        for part, marker, label in (
            (slice(0, n_train), "x", "train"),
            (slice(n_train, None), "o", "test"),
        ):
            xs, rs = x[part], r[part]
            edges = np.unique(np.quantile(xs, np.linspace(0, 1, bins + 1)))
            which = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, len(edges) - 2)
            mx = [xs[which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
            mr = [rs[which == b].mean() for b in range(len(edges) - 1) if (which == b).any()]
            ax.scatter(np.array(mx) * 100, mr, marker=marker, label=f"binned mean ({label})")
        grid = np.linspace(x.min(), x.max(), 200)
        sqrt = c["sqrt"].coef * c["scale"].sigma_bp * np.sign(grid) * np.sqrt(np.abs(grid))
        ax.plot(
            grid * 100,
            sqrt,
            color="black",
            label=f"square root, Y={c['sqrt'].coef:.2f} (OOS R² {c['sqrt'].r2_oos:.2f})",
        )
        kyle = c["kyle"]
        dollars = grid * c["scale"].volume * c["price"] / 1e6
        ax.plot(
            grid * 100,
            kyle.intercept + kyle.coef * dollars,
            color="tab:orange",
            ls="--",
            label=f"Kyle, {kyle.coef:.2f} bp per $1M (OOS R² {kyle.r2_oos:.2f})",
        )
        ax.set(
            title=f"{symbol}: impact of signed flow per {c['interval_s']} s",
            xlabel="signed volume, % of daily volume",
            ylabel="mid return (bp)",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
