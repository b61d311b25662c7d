"""The promotion gate (pure): does a challenger release earn the pointer, on evidence rather than luck?

One gate decides for the daily train job, online learning and the RL parameter suggestions. A challenger is
scored on a window that neither its fitting nor its tuning saw, at the configured costs, beside the rival it
would replace (the current release, the static params, or not trading). :func:`judge` promotes it only if
every criterion holds, checked in this order:

1. ``trades``: at least ``min_trades`` closed trades on the window;
2. ``days``: the window spans at least ``min_days`` days;
3. ``deflated_sharpe``: the deflated Sharpe ratio of the selected trial, deflated by the number of
   independent trials among those run (``n_trials``; ``trials_run`` counts every policy trial times model
   trial, :meth:`scalpbot.ml.evidence.TrialSelection.from_folds`) and the variance of their Sharpe ratios, is
   above ``min_deflated_sharpe`` (Bailey & López de Prado 2014; see :mod:`scalpbot.core.overfitting`);
4. ``bootstrap``: the stationary-bootstrap p-value of the challenger's period returns in excess of the
   rival's (H0: mean excess <= 0) is below ``max_p_value``;
5. ``timing``: the random-entry p-value of the challenger's trades (the same trades entered at random bars of
   the window, :mod:`scalpbot.ml.timing`) is below ``max_timing_p``, so that a release which only holds a
   rising market is not taken for one that knows when to enter (not applicable where it was not computed);
6. ``pbo``: the probability of backtest overfitting of the selection, where validation folds exist, is below
   ``max_pbo``, **or** the selection's probability of loss on the same splits (its in-sample winner earning
   <= 0 out of sample) is below ``max_pbo_loss`` (not applicable without folds). PBO ranks the winner among
   the candidates: when several trials share one real edge, which of them wins in sample is a coin toss out
   of sample (PBO near 0.5) although every one of them earns; overfitting that matters to a trader is a winner
   that then loses, which noise does in about half the splits.

``min_deflated_sharpe = 0``, ``max_timing_p = 1`` and ``max_pbo = 1`` switch those criteria off (shown as "not
required"); ``max_pbo_loss = 0`` judges the PBO alone.

A refusal is one line naming the first failing criterion with its numbers; a promotion lists every criterion.
The statistics themselves are computed elsewhere (:mod:`scalpbot.ml.evidence`); this module only weighs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from scalpbot.errors import ConfigError

__all__ = ["Criterion", "GateRules", "GateStatistics", "GateVerdict", "judge", "summarize"]


@dataclass(frozen=True, slots=True)
class GateRules:
    """Thresholds of the gate: trades and days of evidence, p-value, deflated Sharpe and PBO bounds."""

    min_trades: int = 20
    min_days: float = 7.0
    max_p_value: float = 0.05
    min_deflated_sharpe: float = 0.95
    max_pbo: float = 0.2
    max_timing_p: float = 0.05
    max_pbo_loss: float = 0.1

    def __post_init__(self) -> None:
        if not (isinstance(self.min_trades, int) and self.min_trades >= 1):
            raise ConfigError(f"min_trades must be a whole number >= 1, e.g. 20; got {self.min_trades!r}")
        if not (math.isfinite(self.min_days) and self.min_days > 0.0):
            raise ConfigError(f"min_days must be > 0 days, e.g. 7; got {self.min_days}")
        for name, value in (
            ("max_p_value", self.max_p_value),
            ("max_pbo", self.max_pbo),
            ("max_timing_p", self.max_timing_p),
        ):
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise ConfigError(f"{name} must be a probability in (0, 1]; got {value}")
        if not (math.isfinite(self.min_deflated_sharpe) and 0.0 <= self.min_deflated_sharpe <= 1.0):
            raise ConfigError(
                f"min_deflated_sharpe must be a probability in [0, 1] (0: off); got {self.min_deflated_sharpe}"
            )
        if not (math.isfinite(self.max_pbo_loss) and 0.0 <= self.max_pbo_loss <= 1.0):
            raise ConfigError(
                f"max_pbo_loss must be a probability in [0, 1] (0: PBO alone); got {self.max_pbo_loss}"
            )


@dataclass(frozen=True, slots=True)
class GateStatistics:
    """What the gate weighs: the challenger on the scored window, at ``fee``/``slippage``, beside its rival.

    Returns are fractions of equity. ``days``: the window's length in days (bar open of the first bar to the
    close of the last). ``p_value``: one-sided stationary-bootstrap p-value of the mean of ``bootstrap_obs``
    excess returns per ``bootstrap_period`` (``None`` when too few to test); ``mean_block``: the bootstrap's
    expected block length in periods. ``deflated_sharpe``: DSR of ``selected_sharpe`` (per ``selection_period``,
    not annualized) over ``n_trials`` independent trials whose per-period Sharpes have variance
    ``sharpe_variance`` (``None`` when the Sharpe is undefined); ``trials_run``: the trials run, when more
    than ``n_trials`` (``None``: ``n_trials`` ran). ``pbo``: ``None`` when no validation folds exist;
    ``pbo_loss``: the selection's probability of loss over the same CSCV splits (``None``: not computed).
    ``timing_p``: the random-entry p-value of the challenger's ``timing_trades`` closed trades, whose net
    return per unit notional summed to ``timing_observed`` where the same trades at random bars averaged
    ``timing_random`` (``None``: not computed).
    """

    window: str
    rival: str
    total_return: float
    rival_return: float
    trades: int
    days: float
    p_value: float | None
    bootstrap_obs: int
    bootstrap_period: str
    mean_block: float
    resamples: int
    deflated_sharpe: float | None
    n_trials: int
    sharpe_variance: float
    selected_sharpe: float | None
    selection_period: str
    pbo: float | None
    fee: float
    slippage: float
    timing_p: float | None = None
    timing_trades: int = 0
    timing_observed: float | None = None
    timing_random: float | None = None
    pbo_loss: float | None = None
    trials_run: int | None = None


@dataclass(frozen=True, slots=True)
class Criterion:
    """One criterion's outcome: ``passed`` is ``None`` when it does not apply (no validation folds)."""

    name: str
    passed: bool | None
    value: float | None
    threshold: float
    text: str


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """Whether to promote, the one-line ``reason``, every criterion in order and the statistics behind them."""

    promote: bool
    reason: str
    criteria: tuple[Criterion, ...]
    statistics: GateStatistics

    def to_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-ready data (the manifest's ``gate`` entry)."""
        return {
            "promote": self.promote,
            "reason": self.reason,
            "criteria": [asdict(c) for c in self.criteria],
            "statistics": asdict(self.statistics),
        }

    def summary(self) -> dict[str, Any]:
        """Return the headline statistics in a flat mapping (a report's table row)."""
        return summarize(asdict(self.statistics))


_SUMMARY = (
    "trades",
    "days",
    "deflated_sharpe",
    "n_trials",
    "trials_run",
    "p_value",
    "timing_p",
    "pbo",
    "pbo_loss",
    "fee",
    "slippage",
)


def summarize(statistics: Mapping[str, Any]) -> dict[str, Any]:
    """Return the headline numbers of stored :class:`GateStatistics` data (missing ones as ``None``)."""
    summary = {name: statistics.get(name) for name in _SUMMARY}
    summary["bootstrap_p"] = summary.pop("p_value")
    if summary["trials_run"] is None or summary["trials_run"] == summary["n_trials"]:
        del summary["trials_run"]  # a challenger chosen among n trials, or a verdict stored before the count
    if summary["pbo_loss"] is None:
        del summary["pbo_loss"]
    return summary


def _pct(value: float) -> str:
    return f"{value:+.2%}".replace("%", " %")


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if value >= 0.01 else f"{value:.1e}"


def _below(value: float, threshold: float) -> str:
    return "<" if value < threshold else "="


def _label(s: GateStatistics) -> str:
    return s.window.removesuffix(" window")


def _dsr(s: GateStatistics) -> str:
    value = "n/a" if s.deflated_sharpe is None else f"{s.deflated_sharpe:.2f}"
    return f"deflated Sharpe {value}"


def _trials(s: GateStatistics) -> str:
    """Return ``over 600 trials (2 independent)`` when the deflation counted fewer trials than ran, else
    ``over 100 trials``."""
    if s.trials_run is not None and s.trials_run > s.n_trials:
        return f"over {s.trials_run} trials ({s.n_trials} independent)"
    return f"over {s.n_trials} trial{'s' if s.n_trials != 1 else ''}"


def _criteria(s: GateStatistics, rules: GateRules) -> tuple[Criterion, ...]:
    trades_ok = s.trades >= rules.min_trades
    days_ok = s.days >= rules.min_days
    dsr_required = rules.min_deflated_sharpe > 0.0
    dsr_ok = s.deflated_sharpe is not None and s.deflated_sharpe > rules.min_deflated_sharpe
    p_ok = s.p_value is not None and s.p_value < rules.max_p_value
    pbo_ok = None if s.pbo is None or rules.max_pbo >= 1.0 else s.pbo < rules.max_pbo or _loss_ok(s, rules)
    timing_ok = None if s.timing_p is None or rules.max_timing_p >= 1.0 else s.timing_p < rules.max_timing_p
    rival = f"against {s.rival}"
    return (
        Criterion(
            "trades",
            trades_ok,
            float(s.trades),
            float(rules.min_trades),
            f"{s.trades} trades {'>=' if trades_ok else '<'} {rules.min_trades} on the {s.window}",
        ),
        Criterion(
            "days",
            days_ok,
            s.days,
            rules.min_days,
            f"{s.days:.1f} days {'>=' if days_ok else '<'} {rules.min_days:g} on the {s.window}",
        ),
        Criterion(
            "deflated_sharpe",
            dsr_ok if dsr_required else None,
            s.deflated_sharpe,
            rules.min_deflated_sharpe,
            f"{_dsr(s)} {'>' if dsr_ok else _below(s.deflated_sharpe or 0.0, rules.min_deflated_sharpe)} "
            f"{rules.min_deflated_sharpe:g} {_trials(s)}"
            if dsr_required
            else f"{_dsr(s)} {_trials(s)} (not required)",
        ),
        Criterion(
            "bootstrap",
            p_ok,
            s.p_value,
            rules.max_p_value,
            f"bootstrap p = {_p(s.p_value)} {'<' if p_ok else '>='} {rules.max_p_value:g} {rival}"
            if s.p_value is not None
            else f"bootstrap p = n/a ({s.bootstrap_obs} {s.bootstrap_period} returns) {rival}",
        ),
        Criterion(
            "timing",
            timing_ok,
            s.timing_p,
            rules.max_timing_p,
            _timing_text(s, rules, timing_ok),
        ),
        Criterion("pbo", pbo_ok, s.pbo, rules.max_pbo, _pbo_text(s, rules, pbo_ok)),
    )


def _loss_ok(s: GateStatistics, rules: GateRules) -> bool:
    return s.pbo_loss is not None and s.pbo_loss < rules.max_pbo_loss


def _pbo_text(s: GateStatistics, rules: GateRules, passed: bool | None) -> str:
    if s.pbo is None:
        return "PBO n/a (no validation folds)"
    if passed is None:
        return f"PBO {s.pbo:.2f} (not required)"
    if s.pbo < rules.max_pbo:
        return f"PBO {s.pbo:.2f} < {rules.max_pbo:g}"
    if s.pbo_loss is None or (rules.max_pbo_loss <= 0.0 and not passed):
        return f"PBO {s.pbo:.2f} >= {rules.max_pbo:g}"
    loss = f"its winner's probability of loss {s.pbo_loss:.2f}"
    if passed:
        return f"PBO {s.pbo:.2f} >= {rules.max_pbo:g} but {loss} < {rules.max_pbo_loss:g}"
    return f"PBO {s.pbo:.2f} >= {rules.max_pbo:g} and {loss} >= {rules.max_pbo_loss:g}"


def _timing_text(s: GateStatistics, rules: GateRules, passed: bool | None) -> str:
    if s.timing_p is None:
        return "random-entry p n/a (not computed)"
    random = (
        ""
        if s.timing_observed is None or s.timing_random is None
        else f" (its trades earned {_pct(s.timing_observed)} of notional, at random bars {_pct(s.timing_random)})"
    )
    if passed is None:
        return f"random-entry p = {_p(s.timing_p)} (not required){random}"
    return f"random-entry p = {_p(s.timing_p)} {'<' if passed else '>='} {rules.max_timing_p:g}{random}"


def _context(s: GateStatistics, failed: str) -> str:
    parts = [f"{_label(s)} {_pct(s.total_return)}"]
    if failed != "trades":
        parts.append(f"{s.trades} trades")
    if failed != "bootstrap":
        parts.append(f"bootstrap p = {_p(s.p_value)}")
    if failed != "deflated_sharpe":
        parts.append(f"{_dsr(s)} {_trials(s)}")
    return ", ".join(parts)


def judge(statistics: GateStatistics, rules: GateRules) -> GateVerdict:
    """Return the verdict on ``statistics`` under ``rules``: promote only if every applicable criterion holds."""
    criteria = _criteria(statistics, rules)
    failed = next((c for c in criteria if c.passed is False), None)
    if failed is not None:
        reason = f"refused: {failed.text} ({_context(statistics, failed.name)})"
        return GateVerdict(False, reason, criteria, statistics)
    listed = ", ".join(c.text for c in criteria)
    rival = f"{statistics.rival} {_pct(statistics.rival_return)}"
    reason = f"promoted: {listed} ({_label(statistics)} {_pct(statistics.total_return)} vs {rival})"
    return GateVerdict(True, reason, criteria, statistics)
