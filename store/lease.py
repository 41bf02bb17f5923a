"""One process drives a paper run at a time: a lease row with an owner token and a heartbeat.

Why a row and not a file lock: it works on any SQLAlchemy URL (SQLite file, PostgreSQL
server), across hosts. The rules:

* **Acquire** before anything of the run is read for replay or written: INSERT a lease
  row, or take over an existing one with a compare-and-swap UPDATE (``WHERE owner_token =
  <the token we saw> AND heartbeat_at_ms = <the heartbeat we saw>``), so of two processes
  racing for the same run exactly one wins.
* An existing lease may be taken over when its owner is gone: at once when the owner ran
  on THIS host and its pid no longer exists (killed with SIGKILL, crashed), otherwise once
  its heartbeat is older than ``stale_after_s`` (another host, or a reused pid). Otherwise
  :class:`LeaseHeld` names the owner (host, pid, since) and nothing is written.
* **Heartbeat**: :class:`LeaseKeeper` renews the lease from a background thread every
  ``stale_after_s / 4`` (so a run waiting an hour for its next candle, or for an exchange
  that is down, keeps its lease), and every bar commit renews it inside the bar's own
  transaction, checking the token (:func:`verify_and_renew`). A process whose token no
  longer matches has lost the run: :class:`LeaseLost`, and it writes nothing more.
* **Release** on a clean stop deletes the row, so the next start does not wait.

Heartbeat times are the owner's wall clock in ms UTC; hosts that share a database should
keep their clocks in sync (NTP) to within a small part of ``stale_after_s``.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from store.db import StoreError
from store.schema import RunLeaseRow

log = logging.getLogger("store.lease")
DEFAULT_STALE_AFTER_S = 60.0


class LeaseHeld(StoreError):
    """Another live process owns the run."""


class LeaseLost(StoreError):
    """This process's lease was taken over (it was considered dead); it must stop writing."""


def _this_host() -> str:
    """This machine's name as an owner row records it (the column holds 255 characters)."""
    return socket.gethostname()[:255]


@dataclass(frozen=True)
class LeaseOwner:
    """Who we are: a fresh token per process start, the host name and the pid."""

    token: str
    host: str
    pid: int

    @classmethod
    def me(cls) -> "LeaseOwner":
        return cls(uuid.uuid4().hex, _this_host(), os.getpid())

    def new_row(self, run_id: str | None = None) -> RunLeaseRow:
        now = _now_ms()
        return RunLeaseRow(run_id=run_id, owner_token=self.token, host=self.host, pid=self.pid,
                           acquired_at_ms=now, heartbeat_at_ms=now)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _owner_gone(row: RunLeaseRow, me: LeaseOwner, stale_after_s: float, now_ms: int) -> str | None:
    """Why the recorded owner may be replaced, or None while it must be presumed alive."""
    if row.owner_token == me.token:
        return "ours"
    return why_owner_gone(row.host, row.pid, row.heartbeat_at_ms, now_ms, stale_after_s, this_host=me.host)


def why_owner_gone(host: str, pid: int, heartbeat_at_ms: int, now_ms: int | None = None,
                   stale_after_s: float = DEFAULT_STALE_AFTER_S, *, this_host: str | None = None) -> str | None:
    """Why a recorded owner is presumed dead (its pid is gone on this host, or it has not beaten for
    ``stale_after_s``), or None while it must be presumed alive. Also what the inspector tells an
    interrupted run by, among those still 'running'."""
    if host == (this_host or _this_host()) and not pid_alive(pid):
        return f"pid {pid} on this host is gone"
    age_s = ((_now_ms() if now_ms is None else now_ms) - heartbeat_at_ms) / 1000
    if age_s > stale_after_s:
        return f"its last heartbeat is {age_s:.0f}s old (> {stale_after_s:g}s)"
    return None


def held_message(run_label: str, row: RunLeaseRow, now_ms: int) -> str:
    age_s = max(0.0, (now_ms - row.heartbeat_at_ms) / 1000)
    return (f"run {run_label} is being driven by another process: pid {row.pid} on host {row.host!r}, "
            f"since {_iso(row.acquired_at_ms)} (last heartbeat {age_s:.0f}s ago); stop that one first, "
            "or use another --run-name")


def acquire_lease(engine: Engine, run_id: str, me: LeaseOwner, *, run_label: str,
                  stale_after_s: float = DEFAULT_STALE_AFTER_S, attempts: int = 5) -> None:
    """Take the run's lease or raise :class:`LeaseHeld` naming the owner. Writes nothing else."""
    for attempt in range(attempts):
        try:
            if _try_acquire(engine, run_id, me, run_label, stale_after_s):
                return
        except OperationalError:  # e.g. SQLite busy under a racing writer: look again
            if attempt == attempts - 1:
                raise
        time.sleep(0.05 * (attempt + 1))
    raise LeaseHeld(f"run {run_label}: could not take its lease (other processes keep changing it)")


def _try_acquire(engine: Engine, run_id: str, me: LeaseOwner, run_label: str, stale_after_s: float) -> bool:
    """One compare-and-swap round: True = ours now, False = the row changed under us (look again)."""
    now = _now_ms()
    try:
        with Session(engine) as session, session.begin():
            row = session.get(RunLeaseRow, run_id)
            if row is None:
                session.add(me.new_row(run_id))
                session.flush()
                return True
            why = _owner_gone(row, me, stale_after_s, now)
            if why is None:
                raise LeaseHeld(held_message(run_label, row, now))
            seen_token, seen_beat, old_host, old_pid = row.owner_token, row.heartbeat_at_ms, row.host, row.pid
            session.expunge(row)
            result = session.execute(
                update(RunLeaseRow)
                .where(RunLeaseRow.run_id == run_id, RunLeaseRow.owner_token == seen_token,
                       RunLeaseRow.heartbeat_at_ms == seen_beat)
                .values(owner_token=me.token, host=me.host, pid=me.pid, acquired_at_ms=now, heartbeat_at_ms=now)
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return False
    except IntegrityError:  # another process inserted the row first
        return False
    if why != "ours":
        log.warning("took over run %s from pid %d on host %s: %s", run_label, old_pid, old_host, why)
    return True


def verify_and_renew(session: Session, run_id: str, token: str) -> None:
    """Inside a write transaction: renew the heartbeat if the lease is still ours, else raise LeaseLost."""
    result = session.execute(update(RunLeaseRow)
                             .where(RunLeaseRow.run_id == run_id, RunLeaseRow.owner_token == token)
                             .values(heartbeat_at_ms=_now_ms())
                             .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        owner = session.scalar(select(RunLeaseRow).where(RunLeaseRow.run_id == run_id))
        who = f"pid {owner.pid} on host {owner.host!r} since {_iso(owner.acquired_at_ms)}" if owner else "nobody"
        raise LeaseLost(f"this process lost run {run_id[:12]} to another process ({who}); stopping without "
                        "writing more")


def renew_lease(engine: Engine, run_id: str, token: str) -> None:
    with Session(engine) as session, session.begin():
        verify_and_renew(session, run_id, token)


def release_lease(engine: Engine, run_id: str, token: str) -> None:
    """Give the run up (only if it is still ours)."""
    with Session(engine) as session, session.begin():
        session.execute(delete(RunLeaseRow).where(RunLeaseRow.run_id == run_id, RunLeaseRow.owner_token == token))


class LeaseKeeper:
    """Renews a held lease every ``interval_s`` on a daemon thread until stopped.

    On :class:`LeaseLost` it records the error and calls ``on_lost`` (e.g. set the stop
    event); transient database errors are logged and retried at the next beat.
    """

    def __init__(self, engine: Engine, run_id: str, token: str, interval_s: float,
                 on_lost: Callable[[LeaseLost], None] | None = None) -> None:
        self.engine, self.run_id, self.token, self.interval_s = engine, run_id, token, interval_s
        self.on_lost = on_lost
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def start(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(10)

    def stop_and_release(self) -> None:
        """Stop beating and give the run up, unless it was lost (it is someone else's now). A database
        that is gone keeps the row: it goes stale by itself, and says who owned the run."""
        self.stop()
        if self.lost is None:
            with suppress(Exception):
                release_lease(self.engine, self.run_id, self.token)

    def __enter__(self) -> "LeaseKeeper":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop_and_release()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                renew_lease(self.engine, self.run_id, self.token)
            except LeaseLost as exc:
                self.lost = exc
                if self.on_lost is not None:
                    self.on_lost(exc)
                return
            except Exception as exc:  # the DB may be briefly busy or unreachable; try at the next beat
                log.warning("lease heartbeat for run %s failed: %s", self.run_id[:12], exc)
