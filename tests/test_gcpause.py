"""The collector pause around bulk steps (scistack/gcpause.py) always gives the collector back."""

from __future__ import annotations

import gc
import threading

import pytest

from scistack.gcpause import paused


def test_pauses_nest_across_threads_and_the_last_one_out_resumes():
    assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
        inside, leave = threading.Event(), threading.Event()

        def other():
            with paused():
                inside.set()
                leave.wait(5)

        thread = threading.Thread(target=other)
        thread.start()
        inside.wait(5)
        with paused():
            pass
        assert not gc.isenabled()
        leave.set()
        thread.join(5)
        assert not gc.isenabled()  # this block is still running
    assert gc.isenabled()


def test_an_error_inside_still_resumes_and_a_collector_off_before_stays_off():
    with pytest.raises(ValueError):
        with paused():
            raise ValueError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_ctrl_c_as_a_pause_starts_still_resumes():
    """A KeyboardInterrupt just after the collector was turned off and before the try that
    turns it back on left it off for the session (and every later pause nested in that one,
    so never resumed)."""
    from .helpers import interrupt_when

    with pytest.raises(KeyboardInterrupt), interrupt_when(lambda: not gc.isenabled(), "scistack/gcpause.py"):
        with paused():
            pass
    assert gc.isenabled()
    with paused():
        assert not gc.isenabled()
    assert gc.isenabled()
