"""Fixtures of the dccnn test-suite; the references themselves live in tests/_refs.py.

Every reference is computed independently of the library: explicit Python loops on tiny
inputs, numpy and scipy. The library is compared with itself only in the back-end parity
tests (tests/test_backends.py).
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from _refs import BACKENDS  # noqa: E402


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Every available back-end: each reference test runs on the Numba twin and the core."""
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20240531)
