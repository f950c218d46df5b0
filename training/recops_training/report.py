"""The evaluation report: PNG plots and one self-contained HTML page that embeds them."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .evaluation import RANKING_METRICS

_LABELS = {"hr": "Hit rate", "precision": "Precision", "recall": "Recall", "ndcg": "NDCG", "map": "MAP"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def plot_metrics_by_k(
    metrics: Mapping[str, float], baseline: Mapping[str, float], ks: Sequence[int], algorithm: str
) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, len(RANKING_METRICS), figsize=(3.2 * len(RANKING_METRICS), 3.0))
    for ax, m in zip(axes, RANKING_METRICS, strict=True):
        for suffix, style in (("", "-"), ("_repeat", "--")):
            tag = "new items" if not suffix else "with repeats"
            ax.plot(
                ks,
                [metrics.get(f"{m}_at_{k}{suffix}", 0.0) for k in ks],
                style,
                marker="o",
                color="C0",
                label=f"{algorithm} ({tag})",
            )
            ax.plot(
                ks,
                [baseline.get(f"{m}_at_{k}{suffix}", 0.0) for k in ks],
                style,
                marker="s",
                color="C7",
                label=f"popularity ({tag})",
            )
        ax.set_title(_LABELS[m])
        ax.set_xlabel("k")
        ax.set_xticks(list(ks))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, 0.0), frameon=False)
    data = _png(fig)
    plt.close(fig)
    return data


def plot_popularity(
    metrics: Mapping[str, float], baseline: Mapping[str, float], ks: Sequence[int], algorithm: str
) -> bytes:
    plt = _plt()
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    x = np.arange(len(ks))
    w = 0.38
    for ax, name, title in (
        (ax1, "popularity_bias", "Mean popularity of recommended items\n(share of users; lower = less biased)"),
        (ax2, "coverage", "Catalogue coverage\n(share of items ever recommended)"),
    ):
        ax.bar(x - w / 2, [metrics.get(f"{name}_at_{k}", 0.0) for k in ks], w, label=algorithm, color="C0")
        ax.bar(x + w / 2, [baseline.get(f"{name}_at_{k}", 0.0) for k in ks], w, label="popularity", color="C7")
        ax.set_xticks(x, [f"@{k}" for k in ks])
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))


def render_html(
    *,
    title: str,
    algorithm: str,
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    ks: Sequence[int],
    images: Mapping[str, bytes],
    facts: Mapping[str, Any],
) -> str:
    rows = []
    for suffix, label in (("", "new items only (seen items excluded)"), ("_repeat", "repeat purchases count")):
        rows.append(f"<tr><th colspan='{1 + 2 * len(ks)}' class='v'>{html.escape(label)}</th></tr>")
        for m in (*RANKING_METRICS, "coverage", "popularity_bias"):
            cells = []
            for k in ks:
                a, b = metrics.get(f"{m}_at_{k}{suffix}", 0.0), baseline.get(f"{m}_at_{k}{suffix}", 0.0)
                better = (a < b) if m == "popularity_bias" else (a > b)
                cells.append(f"<td class='{'up' if better else ''}'>{a:.4f}</td><td class='b'>{b:.4f}</td>")
            rows.append(f"<tr><td>{html.escape(m)}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>@{k} {html.escape(algorithm)}</th><th>@{k} popularity</th>" for k in ks)
    imgs = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'/>"
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, png in images.items()
    )
    fact_rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in facts.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}} td:first-child{{text-align:left}}
th.v{{text-align:left;background:#eef}} td.b{{color:#777}} td.up{{background:#e6f6e6}} img{{max-width:100%}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{fact_rows}</table>
<h2>Metrics (model vs popularity baseline)</h2>
<table><tr><th>metric</th>{head}</tr>{"".join(rows)}</table>
<h2>Plots</h2>{imgs}
</body></html>
"""


def write_report(
    out_dir: Path,
    *,
    algorithm: str,
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    ks: Sequence[int],
    facts: Mapping[str, Any],
) -> list[Path]:
    """Write ``metrics_by_k.png``, ``popularity.png`` and ``report.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {
        "metrics_by_k.png": plot_metrics_by_k(metrics, baseline, ks, algorithm),
        "popularity.png": plot_popularity(metrics, baseline, ks, algorithm),
    }
    paths = []
    for name, data in images.items():
        (out_dir / name).write_bytes(data)
        paths.append(out_dir / name)
    page = render_html(
        title=f"Recops evaluation: {algorithm}",
        algorithm=algorithm,
        metrics=metrics,
        baseline=baseline,
        ks=ks,
        images=images,
        facts=facts,
    )
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    paths.append(out_dir / "report.html")
    return paths
