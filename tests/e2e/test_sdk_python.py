"""The Python SDK (sdk/python) against real sandboxes: pip-installs it from the repository
(Debian's setuptools, no index) into a temporary directory, then runs its tests with the
upstream lab of sdk_lab.py; every one of them must run and pass (none skipped)."""
import os
import re
import subprocess
import sys
import tempfile

import pytest

import sdk_lab

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("AIRLOCK_BUILD_DIR", os.path.join(ROOT, "build"))


@pytest.fixture(scope="module")
def lab_env():
    lab, env = sdk_lab.start("airlock-sdkpy-", "alsy")
    try:
        env["AIRLOCK_BIN"] = os.environ.get("AIRLOCK_BIN", os.path.join(BUILD, "cli", "airlock"))
        yield env
    finally:
        lab.close()


def test_python_sdk(lab_env):
    with tempfile.TemporaryDirectory(prefix="airlock-sdkpy-install-") as target:
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
                              "--no-deps", "--target", target, os.path.join(ROOT, "sdk", "python")],
                             capture_output=True, text=True, timeout=300, cwd=target)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        assert os.path.exists(os.path.join(target, "airlock", "_sandbox.py"))
        env = dict(lab_env, PYTHONPATH=target)
        proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-rs",
                               os.path.join(ROOT, "sdk", "python", "tests")],
                              capture_output=True, text=True, timeout=600, env=env, cwd=target)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert " SKIPPED" not in out and "skipped" not in out, out[-4000:]
    passed = set(re.findall(r"::(\w+)(?:\[[^\]]*\])? PASSED", out))
    for name in ("test_the_rust_builder_examples", "test_scopes_patterns_and_any_host", "test_require_tls_identity",
                 "test_dataclass_form_and_block_and_terminate", "test_an_exported_value_is_not_inherited_by_airlock",
                 "test_runs_share_the_sandbox", "test_workspace_modes", "test_the_seeds_validation_rules", "test_image_is_a_local_root_file_system"):
        assert name in passed, out[-4000:]
    assert len(re.findall(r" PASSED", out)) >= 25, out[-4000:]


def test_the_tests_use_the_installed_package():
    with tempfile.TemporaryDirectory(prefix="airlock-sdkpy-install-") as target:
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation",
                              "--no-deps", "--target", target, os.path.join(ROOT, "sdk", "python")],
                             capture_output=True, text=True, timeout=300, cwd=target)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        check = subprocess.run([sys.executable, "-c", "import airlock; print(airlock.__file__, airlock.Sandbox)"],
                               capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=target), cwd=target)
        assert check.stdout.startswith(os.path.join(target, "airlock", "__init__.py")), check.stdout + check.stderr
