"""The HTML drift report: a summary table and, per feature, reference vs current (PNG, base64-embedded).

One self-contained file (no external assets, no scripts), so it opens from an MLflow artifact view,
an S3 console or a laptop alike.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

from . import stats as S

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.5rem;margin-bottom:.2rem}.sub{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:1rem 0}
td,th{padding:.3rem .7rem;border-bottom:1px solid #d0d7de;text-align:left}
th{background:#f6f8fa}.Drifted{color:#cf222e;font-weight:600}.NoDrift{color:#1a7f37}
.InsufficientData,.Missing{color:#9a6700}
.badge{display:inline-block;padding:.2rem .6rem;border-radius:1rem;color:#fff}
.bd{background:#cf222e}.bn{background:#1a7f37}.bi{background:#9a6700}
.feature{display:inline-block;vertical-align:top;margin:0 1rem 1.5rem 0}.feature img{width:440px}
"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot(feature: S.FeatureResult) -> str | None:
    dist = feature.distribution
    if dist is None:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(dist.labels)
    ref, cur = np.asarray(dist.reference), np.asarray(dist.current)
    if len(labels) > 20:  # keep the 20 largest buckets readable
        keep = np.sort(np.argsort(-(ref + cur))[:20])
        labels, ref, cur = [labels[i] for i in keep], ref[keep], cur[keep]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    try:
        ax.bar(x - 0.2, ref, width=0.4, label="reference", color="#8c959f")
        ax.bar(x + 0.2, cur, width=0.4, label="current", color="#cf222e" if feature.drifted else "#0969da")
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share")
        ax.set_title(
            f"{feature.name}: {feature.method} {feature.score_text} (threshold {feature.threshold_text})",
            fontsize=9,
        )
        ax.legend(fontsize=7)
        return _png(fig)
    finally:
        plt.close(fig)


def render_html(
    result: S.DriftResult,
    *,
    title: str = "Drift report",
    context: Mapping[str, str] | None = None,
    plots: bool = True,
) -> str:
    """The report as one HTML string."""
    esc = html.escape
    badge = {"Drifted": "bd", "NoDrift": "bn"}.get(result.status, "bi")
    facts = {
        "status": result.status,
        "score (share of drifted features)": result.score_text,
        "drift share threshold": S.format_score(result.drift_share),
        "samples": str(result.samples),
        "reference version": result.reference_version or "-",
        **dict(context or {}),
    }
    rows = []
    for f in result.features:
        p = S.format_score(f.p_value) if f.p_value is not None else ""
        score = f.score_text if f.status in (S.DRIFTED, S.NO_DRIFT) else ""
        rows.append(
            f"<tr><td>{esc(f.name)}</td><td>{esc(f.kind)}</td><td>{esc(f.method)}</td><td>{esc(score)}</td>"
            f"<td>{esc(f.threshold_text)}</td><td>{esc(p)}</td><td>{f.n_reference}</td><td>{f.n_current}</td>"
            f'<td class="{esc(f.status)}">{esc(f.status)}</td><td>{esc(f.message)}</td></tr>'
        )
    figures = []
    if plots:
        ordered = sorted(result.features, key=lambda f: (not f.drifted, f.name))
        for f in ordered:
            png = _plot(f)
            if png:
                figures.append(
                    f'<div class="feature"><img alt="{esc(f.name)} reference vs current" '
                    f'src="data:image/png;base64,{png}"></div>'
                )
    fact_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts.items())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{esc(title)} <span class="badge {badge}">{esc(result.status)}</span></h1>'
        f'<p class="sub">{len(result.drifted_features)} of '
        f"{sum(1 for f in result.features if f.status in (S.DRIFTED, S.NO_DRIFT))} checked features drifted"
        f"{': ' + esc(', '.join(result.drifted_features)) if result.drifted_features else ''}.</p>"
        f"<table>{fact_rows}</table>"
        "<h2>Features</h2><table><tr><th>feature</th><th>kind</th><th>method</th><th>score</th><th>threshold</th>"
        "<th>p-value</th><th>reference n</th><th>current n</th><th>status</th><th>note</th></tr>"
        + "".join(rows)
        + "</table><h2>Reference vs current</h2>"
        + "".join(figures)
        + "</body></html>"
    )
