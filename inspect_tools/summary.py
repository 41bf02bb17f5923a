"""Derived, display-ready facts about runs: periods, headline numbers, baselines side by side."""
from __future__ import annotations

from typing import Any

from inspect_tools.formatting import flatten, run_label, short_id
from domain.times import ms_to_date, ms_to_iso
from store.lease import why_owner_gone

Row = dict[str, Any]

# report.baselines keys → column labels; other keys keep their own name.
BASELINE_LABELS = {"buyhold": "buy-and-hold", "buy_and_hold": "buy-and-hold", "zscore": "z-score"}


def period_text(start_ts: int | None, end_ts: int | None) -> str:
    if start_ts is None and end_ts is None:
        return ""
    return f"{ms_to_date(start_ts)} → {ms_to_date(end_ts)}"


def interruption(run: Row) -> str | None:
    """Why a run stored as 'running' is no longer running (its process is gone: killed, crashed, or its
    database went away before it could say so), or None. Needs the run's owner (owner_host, owner_pid,
    owner_heartbeat_ms: the lease a backtest or paper run holds while it runs); without one, None."""
    if run.get("status") != "running" or run.get("owner_host") is None:
        return None
    return why_owner_gone(run["owner_host"], run["owner_pid"], run["owner_heartbeat_ms"])


def orders_stored(run: Row) -> bool:
    """False for a sweep trial stored without its orders and fills (run_sweep.py without --store-orders)."""
    return (run.get("params") or {}).get("orders_stored") is not False


def run_list_row(run: Row) -> Row:
    """One line of ``runs``: headline metrics, or the live return of a run without metrics yet.

    A paper run gets final metrics only when it stops; until then its return is
    the last marked equity over initial cash (``return_source`` = 'equity').
    """
    metrics = run.get("metrics") or {}
    total_return, source = metrics.get("total_return"), "metrics"
    if total_return is None and run.get("last_equity") is not None and run.get("initial_cash"):
        total_return, source = run["last_equity"] / run["initial_cash"] - 1.0, "equity"
    interrupted = interruption(run)
    return {**run, "short_id": short_id(run["id"]), "period": period_text(run["start_ts"], run["end_ts"]),
            "state": "interrupted" if interrupted else run["status"], "interrupted": interrupted,
            "start_time": ms_to_iso(run["start_ts"]), "end_time": ms_to_iso(run["end_ts"]),
            "trades": run.get("trade_rows"), "total_return": total_return,
            "return_source": source if total_return is not None else None,
            "sharpe": metrics.get("sharpe"), "max_drawdown": metrics.get("max_drawdown")}


# report keys every run stores about its buy-and-hold baseline (engine.backtest.BacktestResult.baseline_report)
BASELINE_KEYS = ("buy_and_hold", "buy_and_hold_inputs")


def baselines(run: Row) -> dict[str, dict[str, Any]]:
    """report.baselines as {label: metrics}, buy-and-hold first, then the z-score, then the rest.

    A run without report.baselines still shows its buy-and-hold (report.buy_and_hold).
    """
    report = run.get("report") or {}
    stored = report.get("baselines") or {}
    if not isinstance(stored, dict):
        return {}
    if isinstance(report.get("buy_and_hold"), dict) and not {"buyhold", "buy_and_hold"} & set(stored):
        stored = {"buy_and_hold": report["buy_and_hold"], **stored}
    order = sorted(stored, key=lambda k: (k not in ("buyhold", "buy_and_hold"), k != "zscore", k))
    return {BASELINE_LABELS.get(k, k): stored[k] for k in order if isinstance(stored[k], dict)}


def report_extras(run: Row) -> dict[str, Any]:
    """Everything in report besides the baselines (IC, folds, without-fees, ...)."""
    return {k: v for k, v in (run.get("report") or {}).items() if k != "baselines" and k not in BASELINE_KEYS}


def parameter_pairs(params: dict[str, Any] | None) -> list[tuple[str, Any]]:
    return flatten(params or {})


def find_param(params: dict[str, Any] | None, name: str) -> Any:
    """A parameter by its last dotted component (``fee_bps`` or ``broker.fee_bps``), else None."""
    for key, value in flatten(params or {}):
        if key == name or key.endswith("." + name):
            return value
    return None


def comparison_columns(runs: list[Row], with_baselines: bool) -> list[tuple[str, dict[str, Any]]]:
    """(label, metrics) per column; baselines identical across runs appear once."""
    columns: list[tuple[str, dict[str, Any]]] = []
    seen: list[dict[str, Any]] = []
    for run in runs:
        columns.append((run_label(run), run.get("metrics") or {}))
    if with_baselines:
        for run in runs:
            for label, metrics in baselines(run).items():
                if metrics not in seen:
                    seen.append(metrics)
                    suffix = f" ({run_label(run)})" if len(runs) > 1 else ""
                    columns.append((label + suffix, metrics))
    return columns
