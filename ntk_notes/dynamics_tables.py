"""The tables, sentences and glued numbers of the chapter on claim 7
(``book/adversarial_training_dynamics.py``) and of the reproduction report's claim-7 table,
from what ``ntk_notes.dynamics_experiment`` computes: the accuracy table and its summary, the
settling table, the linearisation gaps, the concentration, the rule on the other probes,
the positive control, the report's values and the kernel's turn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ntk_notes import claims, stats
from ntk_notes.adversarial_training import MODES
from ntk_notes.dynamics_experiment import PROBES, Control, epochs_of


def accuracy_table(final: pd.DataFrame, seeds, n: int) -> pd.DataFrame:
    """Clean and PGD accuracy per training (rows) and seed (columns, with 95% Wilson
    intervals over the ``n`` test images), and their mean ± sd over seeds."""
    table = {}
    for column, name in [("clean_accuracy", "clean"), ("robust_accuracy", "PGD")]:
        for mode in MODES:
            values = final[final["mode"] == mode].set_index("seed")[column]
            row = {f"seed {s}": stats.accuracy_text(values[s], n) for s in seeds}
            row["over seeds"] = f"{values.mean():.3f} ± {values.std(ddof=0):.3f}"
            table[name, mode] = row
    return pd.DataFrame(table).T


def accuracy_summary(final: pd.DataFrame, chance: float) -> str:
    """The sentence under the accuracy table: mean accuracies and the robustness gained."""
    mean = final.groupby("mode")[["clean_accuracy", "robust_accuracy"]].mean()
    return (
        f"Predicting the most common class scores {chance:.2f}. Mean over seeds: "
        + "; ".join(
            f"{m} training, clean {mean.loc[m, 'clean_accuracy']:.3f} and PGD {mean.loc[m, 'robust_accuracy']:.3f}"
            for m in MODES
        )
        + ". Adversarial training raises PGD accuracy over standard training by "
        + ", ".join(
            f"{gain:+.3f} ({m})"
            for m, gain in (mean.robust_accuracy - mean.robust_accuracy["standard"])[list(MODES[1:])].items()
        )
        + ". The rule below tests whether every run learns and every adversarial run is "
        "more robust than its seed's standard run before it compares them."
    )


def settling_view(settling: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """The settling table as the chapter shows it, by probe, mode and seed."""
    columns = [
        "settling_epoch",
        "direction_epoch",
        "norm_epoch",
        "linearisation_epoch",
        "turned",
        "norm_ratio",
        f"outside_top{top_k}_end",
    ]
    return settling.set_index(["probe", "mode", "seed"])[columns].sort_index().round(3)


def linearisation_gaps(linearisations: dict) -> pd.DataFrame:
    """Every linearised continuation tried, by mode, seed and epoch k: its accuracies and
    their gaps to the full run."""
    return (
        pd.concat([lin.table.assign(seed=s, mode=mode) for (s, mode), lin in linearisations.items()], ignore_index=True)
        .set_index(["mode", "seed", "linearised_from"])
        .round(3)
    )


def concentration_text(settling: pd.DataFrame, top_k: int) -> str:
    """Test 4 in words: the centred mass outside the top-k eigenspace, first → last epoch."""
    outside = [f"outside_top{top_k}_start", f"outside_top{top_k}_end"]
    ends = settling.groupby(["probe", "mode"])[outside].agg(["mean", "std"])
    return (
        f"Centred mass outside the top-{top_k} eigenspace, mean over seeds at the "
        "first → the last epoch (sd over seeds at the last): "
        + "; ".join(
            f"{probe} probe, "
            + ", ".join(
                f"{m} {ends.loc[(probe, m)].iloc[0]:.3f} → {ends.loc[(probe, m)].iloc[2]:.3f} "
                f"({ends.loc[(probe, m)].iloc[3]:.3f})"
                for m in MODES
            )
            for probe in PROBES
        )
        + "."
    )


def other_probes_text(settling: pd.DataFrame, by_mode: dict, chance: float, seeds) -> str:
    """The rule's verdict with tests 1 and 2 on the other two probes, in words."""
    others = {name: claims.claim7(epochs_of(settling, name, seeds), by_mode, chance) for name in PROBES[1:]}
    return (
        "The same rule with tests 1 and 2 on the other probes (test 3 does not depend "
        "on a probe): "
        + "; ".join(f"{name} probe, **{r.verdict}** ({r.deciding.weakest})" for name, r in others.items())
        + "."
    )


def control_text(control: Control) -> str:
    """The positive control's outcome in words."""
    return (
        f"Positive control: the rule finds the claim **{control.result.verdict}** "
        f"({control.result.parts[0].weakest}); settling epochs of the controls "
        f"{control.rows.settling_epoch.tolist()} against the standard runs' "
        f"{control.standard.tolist()}."
    )


def spread(values, digits: int = 1) -> str:
    """'mean ± sd' over the defined values (population sd), with how many are undefined
    (NaN); 'undefined' when none is defined."""
    values = np.asarray(values, np.float64)
    if np.isnan(values).all():
        return "undefined"
    undefined = int(np.isnan(values).sum())
    return f"{np.nanmean(values):.{digits}f} ± {np.nanstd(values):.{digits}f}" + (
        f" ({undefined} undefined)" if undefined else ""
    )


def report_values(settling: pd.DataFrame, final: pd.DataFrame, cfg) -> dict:
    """{glue key: text} of the report's claim-7 table: for each mode, the clean-probe tests
    and turn (``spread`` over seeds) and the final accuracies; the top k and the seeds."""
    clean_rows = settling[settling.probe == "clean"].set_index("mode")
    values = {}
    for mode in MODES:
        rows, accuracies = clean_rows.loc[mode], final[final["mode"] == mode]
        for key, column, digits in [
            ("settling", rows.settling_epoch, 1),
            ("direction_norm", rows.direction_and_norm_epoch, 1),
            ("linearisation", rows.linearisation_epoch, 1),
            ("turned", rows.turned, 3),
            ("norm_ratio", rows.norm_ratio, 1),
            ("outside", rows[f"outside_top{cfg.top_k}_end"], 3),
            ("clean", accuracies.clean_accuracy, 3),
            ("pgd", accuracies.robust_accuracy, 3),
        ]:
            values[f"dynamics_{mode}_{key}"] = spread(column, digits)
    return values | {"dynamics_top_k": cfg.top_k, "dynamics_seeds": len(cfg.seeds)}


def glue_report_values(settling: pd.DataFrame, final: pd.DataFrame, cfg) -> dict:
    """Glue ``report_values`` (hidden) for the reproduction report; returns them."""
    from myst_nb import glue

    values = report_values(settling, final, cfg)
    for key, value in values.items():
        glue(key, value, display=False)
    return values


def turned_text(settling: pd.DataFrame) -> str:
    """How far training turned the kernel on the clean probe, per mode, against the
    standard runs' spread over seeds."""
    turned = settling[settling.probe == "clean"].groupby("mode").turned.agg(["mean", lambda x: x.std(ddof=0)])
    turned.columns = ["mean", "sd"]
    return (
        "How far training turned the kernel on the clean probe, S(K_0, K_T), mean ± sd "
        "over seeds: "
        + "; ".join(f"{m} {row['mean']:.3f} ± {row['sd']:.3f}" for m, row in turned.loc[list(MODES)].iterrows())
        + ". Standard training's turn is {:.0f} times its spread over seeds.".format(
            turned.loc["standard", "mean"] / max(turned.loc["standard", "sd"], 1e-12)
        )
    )
