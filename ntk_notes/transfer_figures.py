"""The figures of the transfer experiment: transfer ratios against how far each
network's kernel turned, over the α sweep, at matched robustness and over widths."""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def transfer_ratios(results: pd.DataFrame, surrogates):
    """Two panels against the cosine distance of each network's kernel (log scale):
    left, f_∞'s transfer ratio per network (hue α, style seed), with the linearised nets
    (α NaN) as stars at a third of the smallest distance; right, every surrogate's ratio
    (columns ``ratio, <name>`` of ``results``, a ``transfer_tables.results_table``).
    Returns the figure."""
    scaled, controls = results[results.alpha.notna()], results[results.alpha.isna()]
    floor = scaled["cosine distance"].min() / 3
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    sns.scatterplot(
        scaled, x="cosine distance", y="ratio, f_∞", hue="α", style="seed", s=70, ax=axes[0], palette="viridis"
    )
    axes[0].scatter(
        np.full(len(controls), floor), controls["ratio, f_∞"], marker="*", s=160, color="crimson", label="linearised"
    )
    axes[0].legend(fontsize="small", ncols=2)
    axes[0].set_title("f_∞'s examples, one point per network")
    by_source = scaled.melt(
        id_vars=["cosine distance", "seed"],
        value_vars=[f"ratio, {n}" for n in surrogates],
        var_name="surrogate",
        value_name="transfer ratio",
    )
    by_source["surrogate"] = by_source.surrogate.str.removeprefix("ratio, ")
    sns.scatterplot(by_source, x="cosine distance", y="transfer ratio", hue="surrogate", s=50, ax=axes[1])
    axes[1].set_title("every surrogate")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("cosine distance S(K₀, K_T) of the empirical NTK")
        ax.axhline(0, color="grey", lw=0.8)
    axes[0].set_ylabel("transfer ratio (clean − transfer) / (clean − white-box)")
    return fig


def matched_robustness(matched: pd.DataFrame):
    """Two panels against the cosine distance (log scale), one point per trained network
    (hue seed): the ε at which its own PGD falls to the matched accuracy, and the matched
    transfer ratio (``transfer_sweep.Experiment.matched_ratios``). Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    shown = matched[matched.alpha.notna()]
    sns.scatterplot(shown, x="cosine distance", y="matched ε", hue="seed", ax=axes[0])
    sns.scatterplot(shown, x="cosine distance", y="matched ratio", hue="seed", ax=axes[1], legend=False)
    for ax in axes:
        ax.set_xscale("log")
    return fig


def width_sweep(by_width: pd.DataFrame):
    """f_∞'s transfer ratio against the cosine distance (log scale), one point per network
    of the width sweep (``transfer_tables.width_frame``), coloured by width on a log
    scale. Returns the figure."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(
        by_width,
        x="cosine distance",
        y="ratio, f_∞",
        hue="width",
        style="seed",
        palette="viridis",
        s=70,
        ax=ax,
        hue_norm=matplotlib.colors.LogNorm(),
        legend="full",  # every width and seed, not a few round values of the colour scale
    )
    ax.set_xscale("log")
    ax.set_xlabel("cosine distance S(K₀, K_T)")
    ax.set_ylabel("transfer ratio of f_∞'s examples")
    return fig
