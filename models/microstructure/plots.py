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
    zoom_minutes: int = 20,
    max_trades: int = 3000,
) -> Figure:
    """Resting size by price (one row per cent) and time (``bins`` columns, each the book
    after the last event in it): asks in reds, bids in blues, the mid as a line, executions
    as dots (green buyer-initiated, red seller-initiated; at most ``max_trades``, evenly
    thinned). The whole day above, ``zoom_minutes`` from the middle of the session below."""
    a = BookArrays.from_frames(events, book)
    price = events["price"].to_numpy()
    t = a.t_ns
    middle = (t[0] + t[-1]) // 2
    zoom = (middle, min(int(t[-1]), middle + zoom_minutes * 60 * 1_000_000_000))
    fig = Figure(figsize=(11, 8.5), layout="constrained")
    axes = fig.subplots(2, 1, height_ratios=(1, 1.2))
    for ax, (lo, hi), label, trades in (
        (axes[0], (int(t[0]), int(t[-1])), "the session", max_trades // 5),
        (axes[1], zoom, f"{zoom_minutes} minutes from mid-session", max_trades),
    ):
        image = _heat(ax, a, price, lo, hi, bins, trades)
        ax.set(title=f"{title}: {label}", xlabel="exchange time", ylabel="price ($)")
        ax.xaxis.set_major_formatter(lambda h, _: f"{int(h):02d}:{int(round(h % 1 * 60)) % 60:02d}")
    axes[1].legend(loc="upper right", fontsize=7, markerscale=3)
    fig.colorbar(image, ax=axes, label="resting shares (asks red, bids blue)", shrink=0.6)
    return fig


def _heat(ax, a: BookArrays, price: np.ndarray, lo: int, hi: int, bins: int, max_trades: int):
    t = a.t_ns
    edges = np.linspace(lo, hi, bins + 1)
    last = np.clip(np.searchsorted(t, edges[1:], side="right") - 1, 0, len(t) - 1)
    cent = PRICE_SCALE // 100
    prices = np.concatenate([a.ask_p[last], a.bid_p[last]], axis=1)
    occupied = np.abs(prices) != DUMMY
    bottom, top = int(prices[occupied].min() // cent), int(prices[occupied].max() // cent)
    grids = []
    for p, q in ((a.ask_p[last], a.ask_s[last]), (a.bid_p[last], a.bid_s[last])):
        grid = np.full((top - bottom + 1, bins), np.nan)
        on = np.abs(p) != DUMMY
        col = np.broadcast_to(np.arange(bins)[:, None], p.shape)
        grid[(p[on] // cent - bottom).astype(int), col[on]] = q[on]
        grids.append(grid)
    extent = (lo / 3.6e12, hi / 3.6e12, bottom / 100, (top + 1) / 100)
    peak = max(np.nanmax(g) if np.isfinite(g).any() else 1 for g in grids)
    norm = LogNorm(vmin=1, vmax=max(peak, 2))
    image = None
    for grid, cmap in zip(grids, ("Reds", "Blues"), strict=True):
        shown = ax.imshow(
            grid, origin="lower", aspect="auto", extent=extent, cmap=cmap, norm=norm,
            interpolation="nearest",
        )  # fmt: skip
        image = image or shown
    inside = (t >= lo) & (t <= hi)
    both = (a.ask_p[:, 0] != DUMMY) & (a.bid_p[:, 0] != -DUMMY)
    mid = np.where(both, (a.ask_p[:, 0] + a.bid_p[:, 0]) / 2 / PRICE_SCALE, np.nan)
    ax.plot(t[inside] / 3.6e12, mid[inside], color="black", lw=0.6, label="mid")
    trades = np.flatnonzero(np.isin(a.kind, (4, 5)) & inside)
    trades = trades[:: max(1, len(trades) // max_trades)]
    for sign, colour, label in (
        (1, "tab:green", "buyer-initiated"),
        (-1, "tab:orange", "seller-initiated"),
    ):
        pick = a.sign[trades] == sign
        ax.scatter(
            t[trades][pick] / 3.6e12,
            price[trades][pick],
            s=1.5,
            color=colour,
            label=label,
            zorder=3,
        )
    ax.set_xlim(extent[0], extent[1])
    return image


def ofi_vs_mid(intervals: pl.DataFrame, title: str) -> Figure:
    """Each interval's order-flow imbalance against its mid change (bp), with the
    least-squares line and its R^2: at the best level (Cont, Kukanov & Stoikov's figure) and
    summed over every level of the book (the multi-level form)."""
    levels = sum(1 for c in intervals.columns if c.startswith("ofi_") and c[4:].isdigit())
    frame = intervals.drop_nulls(["ofi_1", "return_bp"]).filter(pl.col("return_bp").is_finite())
    y = frame["return_bp"].to_numpy()
    sums = {
        "best level": frame["ofi_1"].to_numpy().astype(float),
        f"levels 1-{levels}": frame.select(
            pl.sum_horizontal(f"ofi_{k}" for k in range(1, levels + 1))
        ).to_series().to_numpy().astype(float),
    }  # fmt: skip
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2 if levels > 1 else 1, squeeze=False)[0]
    for ax, (label, x) in zip(axes, sums.items(), strict=False):
        ax.scatter(x, y, s=3, alpha=0.35)
        if len(x) > 2 and np.std(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            r2 = np.corrcoef(x, y)[0, 1] ** 2
            xs = np.linspace(x.min(), x.max(), 50)
            ax.plot(xs, intercept + slope * xs, color="black", lw=1, label=f"OLS, R² {r2:.2f}")
            ax.legend()
        ax.set(
            title=f"{title}: {label}",
            xlabel=f"order-flow imbalance, {label} (shares)",
            ylabel="mid change (bp)",
        )
        ax.grid(alpha=0.3)
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
