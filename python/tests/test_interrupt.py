"""Ctrl-C during a build raises KeyboardInterrupt promptly and leaves nothing behind."""

import _thread
import signal
import threading
import time

import numpy as np
import pytest

import ptsel


@pytest.fixture(autouse=True)
def sigint_raises():
    """SIGINT with Python's usual handler: a job a shell starts in the background without job
    control inherits SIGINT ignored, Python then installs no handler, and interrupt_main() would
    do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("delay", [0.2, 1.5])  # while writing vectors, while building the graph
def test_ctrl_c_cancels_a_build(tmp_path, delay):
    x = np.random.default_rng(0).normal(size=(300000, 48)).astype(np.float32)
    seen = []
    timer = threading.Timer(delay, _thread.interrupt_main)
    start = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ptsel.build(x, tmp_path / "big.ptsel", progress=lambda s, d, t: seen.append(s))
    finally:
        timer.cancel()
    assert time.perf_counter() - start < delay + 2, "the build did not stop promptly"
    assert list(tmp_path.iterdir()) == []
    assert seen
