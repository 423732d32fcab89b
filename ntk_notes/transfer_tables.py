"""Tables and summaries of the transfer experiment (``ntk_notes.transfer_sweep``).

Every function takes what the experiment measured (``transfer.ScaledRun``s, their
``transfer.Evaluation``s, the matched-robustness frames) and returns a table, the rule's
inputs or lines of text; none trains or attacks anything except ``surrogate_table``,
which scores the surrogates on the images it is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ntk_notes import claims, stats, transfer
from ntk_notes.transfer_sweep import Sweep, alpha_label

WHITE_BOX = ["clean", "white-box", "PGD", "FGSM", "FGSM, smoothed gradient", "noise"]
DEEP_COLUMNS = [
    "cosine distance",
    "norm ratio",
    "clean",
    "white-box",
    "transfer from f_∞",
    "noise",
    "ratio, f_∞",
    "matched ratio",
]
WIDTH_COLUMNS = ["cosine distance", "norm ratio", "clean", "white-box", "transfer from f_∞", "ratio, f_∞"]


def surrogate_table(models: dict, x_test, labels, adversarial: dict, noise_images) -> pd.DataFrame:
    """Per surrogate (the index): its accuracy with a 95% Wilson interval on the clean
    images, on its own PGD images (``adversarial[name]``) and under noise."""
    rows = []
    for name, fn in models.items():
        row = {"surrogate": name}
        for column, images in [("clean", x_test), ("own PGD", adversarial[name]), ("noise", noise_images)]:
            row[column] = str(stats.accuracy(transfer.correct_on(fn, images, labels)))
        rows.append(row)
    return pd.DataFrame(rows).set_index("surrogate")


def training_table(runs) -> pd.DataFrame:
    """One row per run: seed, α, learning rate, steps, final loss, whether it reached the
    target loss, cosine distance and norm ratio of its kernel."""
    return pd.DataFrame(
        [
            {
                "seed": r.seed,
                "α": alpha_label(r.alpha),
                "learning rate": r.net.learning_rate,
                "steps": r.net.steps,
                "final loss": r.net.losses[-1],
                "reached target": r.reached,
                "cosine distance": r.laziness.cosine_distance,
                "norm ratio": r.laziness.norm_ratio,
            }
            for r in runs
        ]
    )


def training_summary(runs, seconds: float) -> tuple[str, pd.DataFrame]:
    """A line (how many runs, in how long, how many missed the target loss) and the mean
    and standard deviation over seeds of steps, final loss and laziness, per α."""
    table = training_table(runs)
    line = (
        f"{len(runs)} networks trained in {seconds:.0f} s; "
        f"{int((~table['reached target']).sum())} did not reach the target loss"
    )
    columns = ["steps", "final loss", "cosine distance", "norm ratio"]
    return line, table.groupby("α", sort=False)[columns].agg(["mean", "std"]).round(4)


def results_table(runs, evaluations) -> pd.DataFrame:
    """One row per network: seed, alpha (NaN: linearised), laziness, every accuracy and
    transfer ratio of its evaluation (``Evaluation.row``) and its α label."""
    results = pd.DataFrame(
        [
            {
                "seed": r.seed,
                "alpha": r.alpha,
                "cosine distance": r.laziness.cosine_distance,
                "norm ratio": r.laziness.norm_ratio,
                **e.row(),
            }
            for r, e in zip(runs, evaluations)
        ]
    )
    results["α"] = results.alpha.map(alpha_label)
    return results


def mean_table(results: pd.DataFrame, surrogates) -> pd.DataFrame:
    """Means over the seeds, per α, of the white-box accuracies and of every surrogate's
    transfer accuracy and ratio."""
    columns = WHITE_BOX + [f"transfer from {name}" for name in surrogates] + [f"ratio, {name}" for name in surrogates]
    return results.groupby("α", sort=False)[columns].mean().round(3)


def white_box_checks(runs, evaluations) -> tuple[int, int, list[str]]:
    """On how many of the networks white-box beats every surrogate's transfer
    (``transfer.white_box_beats_transfer``), of how many, and a description of every
    network where it does not ("seed/α: surrogates")."""
    beats = [transfer.white_box_beats_transfer(e) for e in evaluations]
    failing = [
        f"{r.seed}/{'linearised' if np.isnan(r.alpha) else f'α = {r.alpha:g}'}: "
        + ", ".join(name for name, ok in b.items() if not ok)
        for r, b in zip(runs, beats)
        if not all(b.values())
    ]
    return sum(all(b.values()) for b in beats), len(beats), failing


def white_box_text(passed: int, total: int, failing: list[str]) -> str:
    """``white_box_checks`` in two lines: on how many networks white-box beat every
    transfer, and the networks where it did not (an empty line if none)."""
    return f"white-box at least as strong as every transfer on {passed} of {total} networks\n" + "; ".join(failing)


def ratio_of(results: pd.DataFrame, seed: int, alpha: float | None, column: str = "ratio, f_∞") -> float:
    """One network's value from ``results``; ``alpha=None`` is the linearised network."""
    rows = results[(results.seed == seed) & (results.alpha.isna() if alpha is None else results.alpha == alpha)]
    return rows[column].iloc[0]


def control_table(results: pd.DataFrame, runs, evaluations, seeds, alphas) -> pd.DataFrame:
    """Per seed: the linearised net's transfer ratio of f_∞'s and of logistic regression's
    examples, the laziest and the best trained net's ratio, the linearised net's noise minus
    transfer accuracy with its interval, and whether it transfers at least as well as the
    best trained net."""
    scaled = results[results.alpha.notna()]
    table = pd.DataFrame(
        [
            {
                "seed": s,
                "linearised: ratio, f_∞": ratio_of(results, s, None),
                "linearised: ratio, logistic regression": ratio_of(results, s, None, "ratio, logistic regression"),
                "laziest net (largest α): ratio": ratio_of(results, s, max(alphas)),
                "best trained net: ratio": scaled.loc[scaled.seed == s, "ratio, f_∞"].max(),
                "linearised: noise − transfer accuracy [95%]": str(
                    stats.paired_difference(
                        *[
                            (e.noise, e.transfer["f_∞"])
                            for r, e in zip(runs, evaluations)
                            if r.seed == s and np.isnan(r.alpha)
                        ][0]
                    )
                ),
            }
            for s in seeds
        ]
    )
    table["linearised at least as good"] = table["linearised: ratio, f_∞"] >= table["best trained net: ratio"] - 1e-9
    return table


def matched_summary(matched: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """A line (how many nets never fell to the matched accuracy) and the mean and standard
    deviation over seeds of ε* and the matched ratio, per α."""
    line = f"{int(matched['matched ε'].isna().sum())} nets never fell to the matched accuracy"
    return line, matched.groupby("α", sort=False)[["matched ε", "matched ratio"]].agg(["mean", "std"]).round(3)


def deep_table(sweep) -> pd.DataFrame:
    """The deep sweep (a ``transfer_sweep.Sweep``): mean and standard deviation over seeds,
    per α, of laziness, accuracies, f_∞'s transfer ratio and the matched ratio."""
    results = pd.DataFrame(
        [
            {
                "seed": r.seed,
                "α": alpha_label(r.alpha),
                "cosine distance": r.laziness.cosine_distance,
                "norm ratio": r.laziness.norm_ratio,
                "reached target": r.reached,
                **e.row(),
            }
            for r, e in zip(sweep.runs, sweep.evaluations)
        ]
    )
    results["matched ratio"] = sweep.matched["matched ratio"].to_numpy()
    return results.groupby("α", sort=False)[DEEP_COLUMNS].agg(["mean", "std"]).round(3)


def width_frame(width_runs) -> pd.DataFrame:
    """One row per network of the width sweep ((width, run, evaluation) triples)."""
    return pd.DataFrame(
        [
            {
                "width": w,
                "seed": r.seed,
                "cosine distance": r.laziness.cosine_distance,
                "norm ratio": r.laziness.norm_ratio,
                **e.row(),
            }
            for w, r, e in width_runs
        ]
    )


def width_text(width_runs) -> str:
    """The within-seed Spearman ρ of cosine distance and f_∞'s transfer ratio over the
    width sweep (``claims.laziness_correlation``), with its interval and one-sided p-value;
    with fewer than 4 widths, a sentence saying so."""
    if len({w for w, _, _ in width_runs}) < 4:
        return "too few widths for a rank correlation"
    measured = [e.run(r.seed, r.laziness.cosine_distance, "f_∞") for _, r, e in width_runs]
    rho, low, high, p, _ = claims.laziness_correlation(measured)
    return (
        f"within-seed Spearman ρ of cosine distance and transfer ratio {rho:+.2f} [{low:+.2f}, {high:+.2f}], "
        f"one-sided p = {p:.3g} for ρ < 0"
    )


def width_summary(by_width: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, per width, of laziness and accuracies."""
    return by_width.groupby("width")[WIDTH_COLUMNS].agg(["mean", "std"]).round(3)


def claim_runs(sweep) -> tuple[list, list]:
    """The rule's inputs from a sweep: the α runs and the linearised controls as
    ``transfer.TransferRun``s, f_∞ as the surrogate, logistic regression as the baseline,
    each with its matched ratio."""
    measured = [
        e.run(r.seed, r.laziness.cosine_distance, "f_∞", "logistic regression", m)
        for r, e, m in zip(sweep.runs, sweep.evaluations, sweep.matched["matched ratio"])
    ]
    is_control = [np.isnan(r.alpha) for r in sweep.runs]
    return ([m for m, c in zip(measured, is_control) if not c], [m for m, c in zip(measured, is_control) if c])


def seed_spread(frame: pd.DataFrame, column: str, alphas) -> str:
    """Mean and sd over seeds of a column, at the largest and the smallest α."""
    text = []
    for a in (max(alphas), min(alphas)):
        values = frame.loc[frame.alpha == a, column]
        text.append(f"{values.mean():.3f} ± {values.std():.3f} at α = {a:g}")
    return " and ".join(text)


def rho_text(found: dict) -> str:
    """A Spearman ρ of the rule's details with its one-sided p-value."""
    return f"{found['rho']:+.2f} (one-sided p = {found['p_below']:.3g} for ρ < 0)"


def summary(
    results: pd.DataFrame, controls: pd.DataFrame, result, deep_result, width: str, cfg
) -> tuple[list[str], dict]:
    """The chapter's summary: Markdown list lines and the texts glued for the report
    (key -> text, keyed without the ``transfer_`` prefix). ``controls`` is the
    ``control_table``; ``result`` and ``deep_result`` the rule on the main and the deep
    sweep; ``width`` the ``width_text``; ``cfg`` the chapter's settings (alphas, seeds,
    deep, width_sweep)."""
    scaled = results[results.alpha.notna()]
    linear = results[results.alpha.isna()]

    def spread(column):
        return seed_spread(scaled, column, cfg.alphas)

    lazy = result.parts[4]
    lines = [
        f"- Kernel cosine distance: {spread('cosine distance')}; norm ratio {spread('norm ratio')} (mean ± sd over "
        f"{len(cfg.seeds)} seeds).",
        f"- Clean accuracy {spread('clean')}; white-box accuracy {spread('white-box')}; "
        f"{result.details['excluded']} nets left out for their clean accuracy.",
        f"- Accuracy on f_∞'s examples {spread('transfer from f_∞')}; under noise {spread('noise')}.",
        f"- Transfer ratio of f_∞'s examples {spread('ratio, f_∞')}; of logistic regression's "
        f"{spread('ratio, logistic regression')}.",
        f"- Linearised networks: ratio {linear['ratio, f_∞'].mean():.3f} ± {linear['ratio, f_∞'].std():.3f}; the "
        f"laziest trained nets' {controls['laziest net (largest α): ratio'].mean():.3f}; the largest excess of a "
        f"trained net over its lazy limit {lazy.estimate:+.3f} [{lazy.low:+.3f}, {lazy.high:+.3f}] ({lazy.weakest}).",
        f"- Within-seed Spearman ρ of cosine distance and f_∞'s transfer ratio {rho_text(result.details)}; of "
        f"cosine distance and the matched-robustness ratio {rho_text(result.details['matched'])}.",
        f"- Depth {cfg.deep['depth']}: ρ {rho_text(deep_result.details)}, matched "
        f"{rho_text(deep_result.details['matched'])}; the rule on the deep sweep alone: **{deep_result.verdict}**.",
        f"- Width sweep at α = {cfg.width_sweep['alpha']:g}: {width}.",
    ]
    glued = {
        "distance": spread("cosine distance"),
        "ratio": spread("ratio, f_∞"),
        "logistic_ratio": spread("ratio, logistic regression"),
        "rich_net_ratio": spread("ratio, rich net"),
        "matched_rho": rho_text(result.details["matched"]),
        "rho": rho_text(result.details),
        "deep_rho": rho_text(deep_result.details),
        "deep_outcome": deep_result.verdict,
        "width_rho": width,
    }
    return lines, glued


def pooled(measured, attribute: str) -> str:
    """The accuracy, with its Wilson interval, over all test outcomes ``attribute`` of
    several ``transfer.TransferRun``s."""
    return str(stats.accuracy(np.concatenate([getattr(m, attribute) for m in measured])))


def report_table(measured, controls, runs, alphas) -> pd.DataFrame:
    """The report's table: accuracies pooled over the seeds' nets at the two ends of the
    sweep and over the linearised nets, with Wilson intervals, and the mean ± sd of the
    transfer ratio. ``measured``: the rule's α runs (in the order of ``runs``, the sweep's
    α runs); ``controls``: the linearised ones."""
    ends = {
        f"α = {max(alphas):g} (lazy)": [m for m, r in zip(measured, runs) if r.alpha == max(alphas)],
        f"α = {min(alphas):g} (rich)": [m for m, r in zip(measured, runs) if r.alpha == min(alphas)],
        "linearised": controls,
    }
    return pd.DataFrame(
        [
            {
                "networks": name,
                "cosine distance": f"{np.mean([m.distance for m in ms]):.3g}",
                "clean": pooled(ms, "clean"),
                "white-box": pooled(ms, "white_box"),
                "on f_∞'s examples": pooled(ms, "transfer"),
                "noise": pooled(ms, "noise"),
                "transfer ratio (mean ± sd)": f"{np.mean([m.ratio for m in ms]):.2f} ± "
                f"{np.std([m.ratio for m in ms], ddof=1):.2f}",
            }
            for name, ms in ends.items()
        ]
    ).set_index("networks")


def rule_results(sweep: Sweep, checks_passed: int, checks_total: int, deep: Sweep) -> tuple:
    """Claim 2's rule on the main sweep and, beside it, on the deep sweep: (the rule's α runs,
    its linearised controls, the result, the deep sweep's result)."""
    runs, controls = claim_runs(sweep)
    result = claims.claim2(runs, controls, checks_passed, checks_total)
    deep_passed, deep_total, _ = white_box_checks(deep.runs, deep.evaluations)
    return runs, controls, result, claims.claim2(*claim_runs(deep), deep_passed, deep_total)


def glue_for_report(figure, checks: tuple, control: pd.DataFrame, glued: dict, table: pd.DataFrame) -> None:
    """Glue, hidden, what the reproduction report pastes: the ratio figure, the white-box
    checks (passed, total), the control table, the summary texts and the report's table."""
    from myst_nb import glue

    glue("transfer_figure", figure, display=False)
    glue("transfer_whitebox_checks_passed", checks[0], display=False)
    glue("transfer_whitebox_checks_total", checks[1], display=False)
    glue("transfer_control_table", control.round(3).set_index("seed"), display=False)
    for key, text in glued.items():
        glue(f"transfer_{key}", text, display=False)
    glue("transfer_table", table, display=False)


def conclude(sweep: Sweep, checks: tuple, deep: Sweep, results, control, width: str, figure, cfg) -> tuple:
    """The chapter's last step: claim 2's rule on the main and the deep sweep
    (``rule_results``), the summary (``summary``), and everything the reproduction report
    pastes glued (``glue_for_report``). ``checks``: the white-box checks (passed, total).
    Returns (the summary's Markdown lines, the claim's result)."""
    runs, controls, result, deep_result = rule_results(sweep, *checks, deep)
    lines, glued = summary(results, control, result, deep_result, width, cfg)
    glue_for_report(figure, checks, control, glued, report_table(runs, controls, sweep.runs, cfg.alphas))
    return lines, result


def shown(line_and_table: tuple):
    """Print a summary line and return its table, so that one cell shows both."""
    line, table = line_and_table
    print(line)
    return table


def surrogates_text(kernel, rich_surrogate, alpha: float) -> str:
    """The base rate, the matched time of f_t and the rich surrogate's training length."""
    return (
        f"η = N / λ₁ = {kernel.rate:.3g}; f_t at t = {kernel.t_matched:.3g}; the rich "
        f"surrogate (α = {alpha:g}) trained {rich_surrogate.net.steps} steps"
    )


def sanity_report(sanity: pd.DataFrame):
    """Print how many attack sanity checks passed; return the failed ones (None if none)."""
    print(f"{sanity.passed.sum()} of {len(sanity)} attack sanity checks passed")
    return sanity[~sanity.passed].set_index(["model", "check"]) if (~sanity.passed).any() else None
