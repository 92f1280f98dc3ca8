"""forkwork.run_split: both halves run, progress and typed errors cross the channel, and a failing
parent never leaves its child running."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openclaw_backup import forkwork
from openclaw_backup.errors import IntegrityError


def test_both_halves_run_and_progress_adds_up(tmp_path: Path) -> None:
    seen: list[int] = []

    def half(name: str, n: int) -> Callable[[forkwork.Progress], None]:
        def work(progress: forkwork.Progress) -> None:
            for _ in range(n):
                progress(1000)
                time.sleep(0.002)
            (tmp_path / name).write_text(str(os.getpid()))

        return work

    forkwork.run_split(half("mine", 50), half("theirs", 300), seen.append)
    assert sum(seen) == 350_000
    assert (tmp_path / "mine").read_text() == str(os.getpid())
    assert (tmp_path / "theirs").read_text() != str(os.getpid())  # really another process


def test_the_childs_typed_error_is_raised_after_our_half() -> None:
    done: list[str] = []

    def theirs(progress: forkwork.Progress) -> None:
        raise IntegrityError("blob 1234: authentication failed", hint="run check")

    with pytest.raises(IntegrityError, match="authentication failed") as err:
        forkwork.run_split(lambda p: done.append("mine"), theirs, lambda n: None)
    assert err.value.hint == "run check" and done == ["mine"]


def test_a_failing_parent_kills_its_child_first(tmp_path: Path) -> None:
    marker = tmp_path / "late"

    def theirs(progress: forkwork.Progress) -> None:
        (tmp_path / "pid.tmp").write_text(str(os.getpid()))
        os.replace(tmp_path / "pid.tmp", tmp_path / "pid")  # whole when it appears: the parent reads it at once
        time.sleep(3)
        marker.write_text("the child went on after the parent failed")

    def mine(progress: forkwork.Progress) -> None:
        deadline = time.monotonic() + 10
        while not (tmp_path / "pid").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        raise OSError("disk full")

    started = time.monotonic()
    with pytest.raises(OSError, match="disk full"):
        forkwork.run_split(mine, theirs, lambda n: None)
    assert time.monotonic() - started < 2.5
    child = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # killed and reaped: not even a zombie
    time.sleep(3.5)
    assert not marker.exists()


def test_a_child_killed_by_a_signal_is_an_error() -> None:
    def theirs(progress: forkwork.Progress) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(forkwork.WorkerDied, match="signal 9"):
        forkwork.run_split(lambda p: None, theirs, lambda n: None)


def test_the_deck_deals_each_card_once_and_survives_a_child_killed_holding_it() -> None:
    import fcntl

    deck = forkwork.TwoEnds(100)
    try:
        mine: list[int] = []

        def theirs(progress: forkwork.Progress) -> list[int]:
            got = []
            while (i := deck.take_high()) is not None:
                got.append(i)
            return got

        def take_all(progress: forkwork.Progress) -> None:
            while (i := deck.take_low()) is not None:
                mine.append(i)

        their = forkwork.run_split(take_all, theirs, lambda n: None)
        assert sorted(mine + their) == list(range(100))
        assert mine == sorted(mine) and their == sorted(their, reverse=True)
    finally:
        deck.close()

    deck = forkwork.TwoEnds(3)
    try:

        def dies_holding_the_lock(progress: forkwork.Progress) -> None:
            fcntl.lockf(deck._fd, fcntl.LOCK_EX)
            os.kill(os.getpid(), signal.SIGKILL)

        def waits_for_it(progress: forkwork.Progress) -> None:
            time.sleep(0.3)  # the child holds the lock by now
            assert [deck.take_low(), deck.take_low(), deck.take_low(), deck.take_low()] == [0, 1, 2, None]

        with pytest.raises(forkwork.WorkerDied):
            forkwork.run_split(waits_for_it, dies_holding_the_lock, lambda n: None)
    finally:
        deck.close()
