"""The ordered background writer (store/writer.py): order, the first error, and a failing caller."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine

from store.writer import OrderedWriter, can_write_from_thread


def test_writes_run_in_submission_order_on_one_other_thread() -> None:
    done: list[tuple[int, str]] = []
    with OrderedWriter() as writer:
        for i in range(50):
            writer.submit(lambda k: done.append((k, threading.current_thread().name)), i)
    assert [k for k, _ in done] == list(range(50))
    names = {name for _, name in done}
    assert len(names) == 1 and names != {threading.current_thread().name}


def test_the_first_error_is_raised_and_later_writes_are_skipped() -> None:
    done: list[int] = []
    gate = threading.Event()

    def write(k: int) -> None:
        gate.wait(5)
        if k == 2:
            raise ValueError(f"write {k} failed")
        if k == 4:
            raise KeyError("a later error is not the one raised")
        done.append(k)

    with pytest.raises(ValueError, match="write 2 failed"):
        with OrderedWriter() as writer:
            for k in range(6):
                writer.submit(write, k)
            gate.set()
    assert done == [0, 1]


def test_a_failing_caller_waits_for_the_running_write_and_drops_the_queued_ones() -> None:
    done: list[int] = []
    started, release = threading.Event(), threading.Event()

    def slow(k: int) -> None:
        started.set()
        release.wait(5)
        done.append(k)

    with pytest.raises(RuntimeError, match="building rows failed"):
        with OrderedWriter() as writer:
            writer.submit(slow, 0)
            writer.submit(done.append, 1)
            started.wait(5)
            release.set()
            raise RuntimeError("building rows failed")
    assert done == [0]  # the running write finished before the block ended; the queued one never ran


def test_submit_after_a_failed_write_raises_that_error_at_once() -> None:
    with pytest.raises(ValueError, match="first"):
        with OrderedWriter() as writer:
            writer.submit(_raise, ValueError("first"))
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the caller notices on a later submit, before the block ends
                writer.submit(lambda: None)
                time.sleep(0.001)
            pytest.fail("submit kept accepting work after a write had failed")  # pragma: no cover


def _raise(exc: BaseException) -> None:
    raise exc


def test_in_memory_sqlite_is_written_on_the_callers_thread(tmp_path) -> None:
    memory, file_ = create_engine("sqlite://"), create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with memory.connect() as a, file_.connect() as b:
            assert (can_write_from_thread(a), can_write_from_thread(b)) == (False, True)
    finally:
        memory.dispose()
        file_.dispose()


def test_an_interrupt_while_waiting_drops_the_queue_but_still_waits_for_the_running_write(monkeypatch) -> None:
    done: list[str] = []
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(5)
        done.append("running")

    writer = OrderedWriter()
    real_shutdown = writer._pool.shutdown
    calls: list[bool] = []

    def interrupted_once(*args, **kwargs) -> None:
        if not calls:  # the first wait is interrupted (Ctrl-C) while the write still runs
            calls.append(True)
            threading.Timer(0.05, release.set).start()
            raise KeyboardInterrupt
        real_shutdown(*args, **kwargs)

    monkeypatch.setattr(writer._pool, "shutdown", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        with writer:
            writer.submit(slow)
            writer.submit(done.append, "queued")
            started.wait(5)
    assert done == ["running"]  # the connection was handed back only after the running write ended



def test_unthreaded_writes_run_at_once_on_the_callers_thread() -> None:
    done: list[str] = []
    with pytest.raises(ValueError, match="second"):
        with OrderedWriter(threaded=False) as writer:
            writer.submit(lambda: done.append(threading.current_thread().name))
            assert done == [threading.current_thread().name]  # already written when submit returns
            writer.submit(_raise, ValueError("second"))
            done.append("not reached")  # pragma: no cover
    assert done == [threading.current_thread().name]
