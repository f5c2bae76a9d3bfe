"""Where a stop signal lands: at once outside ``deferred()``; inside it, only where the code waits or checks,
unless a second one comes."""

from __future__ import annotations

import os
import signal

import pytest

from hpo.core import interrupts

pytestmark = pytest.mark.usefixtures("sigint_stops")


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def test_outside_a_deferred_block_a_signal_stops_at_once() -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        _ctrl_c()
        steps.append("after")
    assert steps == []
    assert interrupts.received()


def test_a_deferred_signal_lets_the_step_finish_and_stops_at_the_next_check() -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        _ctrl_c()
        steps.append("step finished")
        interrupts.check()
        steps.append("next step")
    assert steps == ["step finished"]


def test_a_signal_while_waiting_stops_the_wait_at_once() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.deferred(), interrupts.interruptible():
        _ctrl_c()
        pytest.fail("the wait went on")


def test_a_held_signal_stops_before_the_next_wait() -> None:
    waited = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        _ctrl_c()
        with interrupts.interruptible():
            waited.append(True)
    assert waited == []


def test_a_second_signal_stops_at_once() -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        _ctrl_c()
        steps.append("first held")
        _ctrl_c()
        steps.append("second held too")
    assert steps == ["first held"]


def test_a_signal_held_to_the_end_of_the_block_is_not_lost() -> None:
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        _ctrl_c()
    with interrupts.deferred():
        interrupts.check()  # a new block starts with nothing held


def test_after_a_stop_a_further_signal_in_the_same_block_stops_at_once() -> None:
    cleanup = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        try:
            with interrupts.interruptible():
                _ctrl_c()
        except KeyboardInterrupt:
            _ctrl_c()
            cleanup.append("the user's second Ctrl-C did not stop the cleanup")
    assert cleanup == []


def test_a_program_that_left_ctrl_c_to_python_keeps_it_inside_the_block() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    steps = []
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        _ctrl_c()
        steps.append("step finished")
    assert steps == [], (
        "Python's own handler raises at once: hpo installs nothing in a program it does not own"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_handler_of_the_program_s_own_is_left_alone() -> None:
    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    with interrupts.deferred():
        _ctrl_c()
        interrupts.check()
    assert seen == [signal.SIGINT]
