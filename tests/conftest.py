"""Fixtures of the dccnn test-suite; the references themselves live in tests/_refs.py.

Every reference is computed independently of the library: explicit Python loops on tiny
inputs, numpy and scipy. The library is compared with itself only in the back-end parity
tests (tests/test_backends.py).
"""

import os
import sys

# The suite makes thousands of tiny calls; with libgomp's default active spin-waiting each
# parallel region can cost milliseconds when the 2 cores are shared with other processes
# (measured: 36 s instead of 5 s for test_backends.py under load). Passive waiting only
# changes speed, never results; an explicit setting by the user is kept. It must be set
# before dccnn._core (and libgomp) is loaded.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))

from _refs import BACKENDS  # noqa: E402


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every available back-end: each reference test runs on the Numba twin and the core."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20240531)
