"""What to run next: every point of a grid, or points Optuna asks for (ask/tell in the driver).

A point is one set of swept values; it becomes one task per data file and seed.
The driver asks a planner for up to ``n`` tasks whenever workers are free and
reports each finished task back, so an Optuna study learns from results as they
arrive while the workers stay busy.
"""
from __future__ import annotations

import json
import math
from collections import deque
from typing import Any, Callable, Iterable

from app.sweep.plan import SearchDim, SweepTask

TaskMaker = Callable[[dict[str, Any]], list[SweepTask]]  # point → its tasks (one per data file × seed)


class GridPlanner:
    def __init__(self, points: Iterable[dict[str, Any]], make_tasks: TaskMaker) -> None:
        self.queue: deque[SweepTask] = deque(t for p in points for t in make_tasks(p))
        self.total_tasks = len(self.queue)

    def next_tasks(self, n: int) -> list[SweepTask]:
        return [self.queue.popleft() for _ in range(min(n, len(self.queue)))]

    def on_result(self, task: SweepTask, value: float | None) -> None:
        pass

    def exhausted(self) -> bool:
        return not self.queue


class OptunaPlanner:
    """Asks an Optuna study for points (TPE, seeded) and tells it each point's mean metric.

    Points already stored (a resumed sweep) are added to the study first, so
    ``trials`` counts them; a point whose runs failed is told as failed.
    """

    def __init__(self, dims: list[SearchDim], trials: int, make_tasks: TaskMaker, tasks_per_point: int,
                 stored_points: list[tuple[dict[str, Any], float | None]], seed: int = 0) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.dims = dims
        self.make_tasks = make_tasks
        # A resumed study gets its sampler seed moved on by the stored trials: the same seed would draw
        # the same start-up points again, which are stored already.
        self.study = optuna.create_study(direction="maximize",
                                         sampler=optuna.samplers.TPESampler(seed=seed + len(stored_points)))
        self.distributions = {d.name: self._distribution(d) for d in dims}
        for point, value in stored_points:
            if all(d.name in point for d in dims):
                state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
                self.study.add_trial(optuna.trial.create_trial(
                    params={d.name: point[d.name] for d in dims}, distributions=self.distributions,
                    value=value if value is not None else None, state=state))
        self.remaining_points = max(0, trials - len(self.study.trials))
        self.total_tasks = trials * tasks_per_point
        self.queue: deque[SweepTask] = deque()
        self.open: dict[str, tuple[Any, list[float | None], int]] = {}  # point key → (trial, values, tasks left)
        self.task_point: dict[str, str] = {}  # config hash → point key

    def _distribution(self, d: SearchDim) -> Any:
        if d.integer:
            return self.optuna.distributions.IntDistribution(int(d.low), int(d.high), log=d.log)
        return self.optuna.distributions.FloatDistribution(float(d.low), float(d.high), log=d.log)

    def next_tasks(self, n: int) -> list[SweepTask]:
        while len(self.queue) < n and self.remaining_points > 0:
            trial = self.study.ask(self.distributions)
            self.remaining_points -= 1
            point = dict(trial.params)
            tasks = self.make_tasks(point)
            key = json.dumps(point, sort_keys=True)
            self.open[key] = (trial, [], len(tasks))
            for t in tasks:
                self.task_point[t.config_hash] = key
            self.queue.extend(tasks)
        return [self.queue.popleft() for _ in range(min(n, len(self.queue)))]

    def on_result(self, task: SweepTask, value: float | None) -> None:
        key = self.task_point.pop(task.config_hash, None)
        if key is None or key not in self.open:
            return
        trial, values, left = self.open[key]
        values.append(value)
        left -= 1
        self.open[key] = (trial, values, left)
        if left == 0:
            del self.open[key]
            ok = [v for v in values if v is not None and math.isfinite(v)]
            if ok:
                self.study.tell(trial, sum(ok) / len(ok))
            else:
                self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)

    def exhausted(self) -> bool:
        return not self.queue and self.remaining_points == 0
