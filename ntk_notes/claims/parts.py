"""Parts of a claim and the verdict they add up to, and the conventions every rule shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ntk_notes import report, stats

ALPHA = 0.05  # the level of every test
NON_ROBUST = 0.1  # accuracy under attack below this: the feature is "non-robust" (γ ≈ 0)
DROP = 0.25  # claim 1: how much accuracy an attack must remove, and beat noise by


class Part(NamedTuple):
    """One tested part of a claim."""

    name: str  # what is tested, in words
    estimate: float
    low: float  # the 95% interval (equal to the estimate for a count)
    high: float
    threshold: float
    outcome: str  # "held", "failed" or "inconclusive"
    p_value: float | None = None
    above: bool = True  # the claim is that the estimate lies above the threshold (else below)
    voids: str = ""  # non-empty: a gate; if it fails the claim is not tested, for this reason
    weakest: str = ""  # for a conjunction: which of its members is shown (the nearest to failing)

    @property
    def is_count(self) -> bool:
        """A share of checks that passed, with no interval (the sanity-check gate)."""
        return bool(self.voids) and self.low == self.high == self.estimate

    @property
    def margin(self) -> float:
        """How far the interval's near end clears the threshold (negative: it does not)."""
        return self.low - self.threshold if self.above else self.threshold - self.high

    def describe(self) -> str:
        if self.is_count:
            return f"{self.name}: {self.estimate:.0%} of them passed: {self.outcome}"
        if not np.isfinite(self.estimate):
            return f"{self.name}{f' ({self.weakest})' if self.weakest else ''}: {self.outcome}"
        interval = "" if self.low == self.high == self.estimate else f" [{self.low:.3f}, {self.high:.3f}]"
        p = "" if self.p_value is None else f", p = {self.p_value:.2g}"
        side = ">" if self.above else "<"
        weakest = f" (weakest: {self.weakest})" if self.weakest else ""
        return (
            f"{self.name}{weakest}: {self.estimate:.3f}{interval}, needs {side} {self.threshold:.3g}{p}: {self.outcome}"
        )


class ClaimResult(NamedTuple):
    claim: str
    parts: tuple[Part, ...]
    verdict: str
    details: dict  # what a chapter shows beside the verdict (e.g. the feature identified)

    @property
    def deciding(self) -> Part:
        """The part that decides the verdict: a failed gate, else an inconclusive gate (it caps
        the verdict at inconclusive), else the first failed part, else the first inconclusive
        one, else the first part (all held). A rule that combines its parts otherwise (claim 7:
        at least two tests of three) names the deciding part in ``details["deciding"]``."""
        if "deciding" in self.details:
            return self.parts[self.details["deciding"]]
        for gate, wanted in ((True, "failed"), (True, "inconclusive"), (False, "failed"), (False, "inconclusive")):
            for part in self.parts:
                if bool(part.voids) == gate and part.outcome == wanted:
                    return part
        return next((p for p in self.parts if not p.voids), self.parts[0])

    def markdown(self) -> str:
        """The verdict and every part, as a Markdown list; for a rule run on several draws
        (``across_seeds``), each part's mean and spread over the draws too."""
        lines = [f"Claim {self.claim} is **{self.verdict}** in this build."]
        spread, draws = self.details.get("spread", {}), len(self.details.get("verdicts", []))
        for part in self.parts:
            mean, sd = spread.get(part.name, (np.nan, np.nan))
            over = (
                f" (over {draws} draws: mean {mean:.3f}, sd {sd:.3f})"
                if np.isfinite(mean) and not part.is_count
                else ""
            )
            lines.append(f"- {part.describe()}{over}")
        return "\n".join(lines)


def interval_part(
    name: str, estimate: stats.Estimate, threshold: float, above: bool = True, p_value: float | None = None
) -> Part:
    """A part that holds when the interval lies wholly above (or below) the threshold."""
    if above:
        outcome = "held" if estimate.low > threshold else "failed" if estimate.high < threshold else "inconclusive"
    else:
        outcome = "held" if estimate.high < threshold else "failed" if estimate.low > threshold else "inconclusive"
    return Part(name, estimate.value, estimate.low, estimate.high, threshold, outcome, p_value, above)


def all_of(name: str, parts: Sequence[Part], labels: Sequence[str] | None = None) -> Part:
    """The conjunction of parts (e.g. one per predictor): held if every one held, failed if
    any failed; reported through the part nearest to failing, named by its label (default:
    its name) in ``weakest``."""
    if not parts:
        raise ValueError("all_of needs at least one part")
    labels = [p.name for p in parts] if labels is None else list(labels)
    outcomes = {p.outcome for p in parts}
    outcome = "failed" if "failed" in outcomes else "inconclusive" if "inconclusive" in outcomes else "held"
    index = min(
        range(len(parts)),
        key=lambda i: (parts[i].outcome != "failed", parts[i].outcome != "inconclusive", parts[i].margin),
    )
    worst = parts[index]
    label = labels[index] + (f", {worst.weakest}" if worst.weakest else "")
    return worst._replace(name=name, outcome=outcome, weakest=label)


def assemble(claim: str, parts: Sequence[Part], details: dict | None = None) -> ClaimResult:
    """The verdict: a failed gate means the claim was not tested, an inconclusive one caps the
    verdict at inconclusive; otherwise ``report.verdict`` of the parts' outcomes."""
    gates = [p for p in parts if p.voids and p.outcome != "held"]
    failed_gates = [p for p in gates if p.outcome == "failed"]
    if failed_gates:
        verdict = f"not tested: {failed_gates[0].voids}"
    elif gates:
        verdict = report.VERDICTS[3]
    else:
        # Keyed by position: parts may share a name (``merge`` of two runs of one rule), and a
        # dict keyed by name would keep only the last of them.
        verdict = report.verdict({i: p.outcome for i, p in enumerate(parts)})
    return ClaimResult(claim, tuple(parts), verdict, details or {})


def across_seeds(results: Sequence[ClaimResult]) -> ClaimResult:
    """One rule run on several random draws (subsets, splits) of the same setting, as one
    result: each part holds only if it held on every draw (shown through its weakest draw),
    so a verdict cannot come from a lucky draw. ``details``: "per_seed", every draw's parts;
    "spread", the mean and standard deviation of each part's estimate over the draws (for
    the parts that show the same quantity on every draw);
    "verdicts" and "details", every draw's own."""
    if not results:
        raise ValueError("across_seeds needs at least one result")
    names = [[p.name for p in r.parts] for r in results]
    if any(n != names[0] for n in names):
        raise ValueError("every draw must have the same parts, in the same order")
    parts, spread = [], {}
    for i, name in enumerate(names[0]):
        draws = [r.parts[i] for r in results]
        combined = all_of(name, draws, [f"draw {j + 1}" for j in range(len(draws))])
        parts.append(combined._replace(voids=draws[0].voids))
        # A conjunction shows its weakest member; averaging is meaningful only if that is the
        # same quantity on every draw.
        if len({d.weakest for d in draws}) == 1:
            estimates = np.array([d.estimate for d in draws], np.float64)
            spread[name] = (float(np.mean(estimates)), float(np.std(estimates)))
    combined = assemble(results[0].claim, parts)
    return combined._replace(
        details={
            "per_seed": [r.parts for r in results],
            "spread": spread,
            "verdicts": [r.verdict for r in results],
            "details": [r.details for r in results],
        }
    )


def merge(claim: str, results: Sequence[ClaimResult]) -> ClaimResult:
    """Several results that test parts of one claim (e.g. on two data sets), as one."""
    if not results:
        raise ValueError("merge needs at least one result")
    return assemble(claim, [part for r in results for part in r.parts], {"details": [r.details for r in results]})


def check_rate(name: str, rate: float) -> float:
    """``rate`` as a float, if it lies strictly between 0 and 1 (a majority rate, a
    threshold of accuracy); else a ValueError naming it."""
    if not 0 < rate < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {rate!r}")
    return float(rate)
