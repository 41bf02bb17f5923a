"""What a sweep runs: grid and search-space syntax, the task list, and the hash that identifies a run.

Grid values: ``--grid entry_z=1.5,2,2.5`` (a list) or ``--grid entry_z=1.5:3:0.5``
(a range START:STOP:STEP; STOP is included when it lands on the grid, so this is
1.5, 2, 2.5, 3 and ``1:2:0.3`` is 1, 1.3, 1.6, 1.9). Names are the strategy's
parameters (as ``run_backtest.py --param``) plus the broker's ``fee_bps`` and
``slippage_bps``. Search space: ``--space entry_z=1:3`` or ``--space lr=1e-4:1e-2:log``.

A run is identified by a SHA-256 of its full resolved configuration (strategy,
every parameter with defaults filled in, broker costs, seed, the held-out split)
and the data file's content hash, so a restarted sweep skips exactly what is stored.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from strategies.params import ParamError, ParamSpec

BROKER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("fee_bps", ("broker", "fee_bps"), "float", 10.0, False, "fee per fill in bps of notional"),
    ParamSpec("slippage_bps", ("broker", "slippage_bps"), "float", 0.0, False,
              "adverse slippage per market/stop fill in bps"),
)
BROKER_NAMES = tuple(p.name for p in BROKER_PARAMS)


@dataclass(frozen=True)
class SearchDim:
    """One dimension of an Optuna search space."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool


@dataclass(frozen=True)
class SweepTask:
    """One run, as sent to a worker: small and picklable (the data goes as a path, never as bars)."""

    config_hash: str
    strategy: str
    params: dict[str, Any]  # strategy parameters set by the sweep (the rest take their defaults)
    broker: dict[str, Any]  # cash_quote, fee_bps, slippage_bps, long_only
    data_path: str
    data_hash: str
    seed: int | None
    role: str = "trial"  # trial: measured before select_until (or on all bars) | holdout: after it
    select_until_ms: int | None = None
    threads: int = 1  # torch / BLAS threads in the worker
    pack_rows: bool = False  # ship orders/fills/trades packed for a SQLite store (PreparedRun.packed_rows)
    store_orders: bool = True  # False: the run's orders and fills are left out (a sweep trial's default)
    swept: dict[str, Any] = field(default_factory=dict)  # the values this sweep varies (for tables and reports)


def all_params(strategy_params: Iterable[ParamSpec]) -> dict[str, ParamSpec]:
    """Names a sweep may set: the strategy's and the broker's. A strategy field of the same name (the
    score strategy's cost rule assumes ``fee_bps``) mirrors the broker and is filled from it
    (``StrategySpec.with_broker``), so the broker's spec is the one a sweep sets."""
    out = {p.name: p for p in strategy_params}
    for p in BROKER_PARAMS:
        out[p.name] = p
    return out


def parse_grid(items: Iterable[str], specs: Mapping[str, ParamSpec],
               aliases: Mapping[str, str] | None = None) -> dict[str, list[Any]]:
    """``['entry_z=1.5:3:0.5', 'window=20,50']`` → {'entry_z': [1.5, 2.0, 2.5, 3.0], 'window': [20, 50]}."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, values = _split(item, "--grid", specs, aliases)
        if name in grid:
            raise ParamError(f"--grid {name} given twice")
        spec = specs[name]
        if ":" in values and spec.kind in ("int", "float"):
            grid[name] = _range(spec, values)
        else:
            parsed = [spec.parse(v) for v in values.split(",") if v.strip() != ""]
            if not parsed:
                raise ParamError(f"--grid {item!r}: no values")
            grid[name] = list(dict.fromkeys(parsed))
    return grid


def parse_space(items: Iterable[str], specs: Mapping[str, ParamSpec],
                aliases: Mapping[str, str] | None = None) -> list[SearchDim]:
    dims = []
    for item in items:
        name, text = _split(item, "--space", specs, aliases)
        spec = specs[name]
        if spec.kind not in ("int", "float"):
            raise ParamError(f"--space {name}: only int and float parameters can be searched (it is {spec.kind})")
        parts = text.split(":")
        log = len(parts) == 3 and parts[2].strip().lower() == "log"
        if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
            raise ParamError(f"--space {item!r}: expected NAME=LOW:HIGH or NAME=LOW:HIGH:log")
        low, high = spec.parse(parts[0]), spec.parse(parts[1])
        if low is None or high is None or not low < high:
            raise ParamError(f"--space {item!r}: need LOW < HIGH")
        if log and low <= 0:
            raise ParamError(f"--space {item!r}: a log scale needs LOW > 0")
        dims.append(SearchDim(name, low, high, log, spec.kind == "int"))
    if len({d.name for d in dims}) != len(dims):
        raise ParamError("--space names a parameter twice")
    return dims


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination, in the order the grid was given (the first name varies slowest)."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def config_hash(strategy: str, resolved_params: Mapping[str, Any], broker: Mapping[str, Any], data_hash: str,
                seed: int | None, select_until_ms: int | None, role: str) -> str:
    """SHA-256 of the full resolved configuration and the data's content hash."""
    text = json.dumps({"strategy": strategy, "params": dict(resolved_params), "broker": dict(broker),
                       "data_sha256": data_hash, "seed": seed, "select_until_ms": select_until_ms, "role": role},
                      sort_keys=True, default=list, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _split(item: str, option: str, specs: Mapping[str, ParamSpec],
           aliases: Mapping[str, str] | None) -> tuple[str, str]:
    name, sep, values = item.partition("=")
    name = (aliases or {}).get(name.strip(), name.strip())
    if not sep or not name:
        raise ParamError(f"{option} {item!r}: expected NAME=VALUES")
    if name not in specs:
        raise ParamError(f"{option}: unknown parameter {name!r}; valid: {', '.join(sorted(specs))}")
    return name, values


def _range(spec: ParamSpec, text: str) -> list[Any]:
    parts = text.split(":")
    if len(parts) != 3:
        raise ParamError(f"--grid {spec.name}={text!r}: a range is START:STOP:STEP")
    start, stop, step = (spec.parse(p) for p in parts)
    if start is None or stop is None or step is None or not step > 0 or stop < start:
        raise ParamError(f"--grid {spec.name}={text!r}: need STEP > 0 and STOP >= START")
    count = math.floor((stop - start) / step + 1e-9) + 1
    if count > 100_000:
        raise ParamError(f"--grid {spec.name}={text!r}: {count:,} values is too many")
    if spec.kind == "int":
        return [start + k * step for k in range(count)]
    return [round(start + k * step, 12) for k in range(count)]  # 1.5 + 3 × 0.5 is 3.0, not 3.0000000000000004
