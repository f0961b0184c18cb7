"""Fixtures of the Python SDK's tests. Short tracebacks only: the tests' locals hold (fake)
secret values, which pytest's long tracebacks would print."""
import os

import pytest


def pytest_configure(config):
    if config.option.tbstyle in ("auto", "long"):
        config.option.tbstyle = "short"
    config.option.showlocals = False


@pytest.fixture
def airlock_bin():
    """Tests that start real sandboxes need the airlock binary and root (ctest runs them through
    tests/e2e/test_sdk_python.py, which fails if any is skipped)."""
    if not os.environ.get("AIRLOCK_BIN") or os.geteuid() != 0:
        pytest.skip("needs AIRLOCK_BIN and root (run through ctest: e2e.test_sdk_python)")
    return os.environ["AIRLOCK_BIN"]


@pytest.fixture
def lab(airlock_bin):
    """The upstream lab of tests/e2e/sdk_lab.py, described by AIRLOCK_LAB_* variables."""
    if not os.environ.get("AIRLOCK_LAB_DNS"):
        pytest.skip("needs the upstream lab (run through ctest: e2e.test_sdk_python)")
    return os.environ
