"""The C++ SDK (airlock::Sandbox): its Lab* tests against real sandboxes and the upstream lab of
sdk_lab.py, and a user's project built against the installed package (cmake --install
--component airlock_sdk, then find_package(airlock)) that starts a sandbox."""
import os
import re
import subprocess
import tempfile

import pytest

import sdk_lab

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("AIRLOCK_BUILD_DIR", os.path.join(ROOT, "build"))
AIRLOCK = os.environ.get("AIRLOCK_BIN", os.path.join(BUILD, "cli", "airlock"))


@pytest.fixture(scope="module")
def lab_env():
    lab, env = sdk_lab.start("airlock-sdkcpp-", "alsc")
    try:
        env["AIRLOCK_BIN"] = AIRLOCK
        yield env
    finally:
        lab.close()


def test_cpp_sdk_against_the_lab(lab_env):
    proc = subprocess.run([os.path.join(BUILD, "sdk", "cpp", "sandbox_sdk_test"), "--gtest_filter=Lab*"],
                          env=lab_env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "SKIPPED" not in out
    passed = re.findall(r"\[       OK \] (\S+)", out)
    assert set(passed) == {"LabCppSandbox.TheValueReachesOnlyItsHost", "LabCppSandbox.BlockAndTerminateStopsTheSandbox"}, out


def test_a_project_builds_against_the_installed_package():
    with tempfile.TemporaryDirectory(prefix="airlock-sdkcpp-") as d:
        prefix, build = os.path.join(d, "prefix"), os.path.join(d, "build")
        subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix, "--component", "airlock_sdk"],
                       check=True, capture_output=True, text=True, timeout=120)
        for f in ("include/airlock/sandbox.hpp", "lib/libairlock.a", "lib/cmake/airlock/airlockConfig.cmake"):
            assert os.path.exists(os.path.join(prefix, f)), f
        conf = subprocess.run(["cmake", "-S", os.path.join(ROOT, "examples", "sdk_consumer"), "-B", build, "-G", "Ninja",
                               f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True, timeout=120)
        assert conf.returncode == 0, conf.stdout + conf.stderr
        made = subprocess.run(["cmake", "--build", build], capture_output=True, text=True, timeout=300)
        assert made.returncode == 0, made.stdout + made.stderr
        run = subprocess.run([os.path.join(build, "sandbox_example")], capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, AIRLOCK_BIN=AIRLOCK))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "the sandbox sees: $MSB_OPENAI_API_KEY" in run.stdout
        assert "sk-FAKE-sandbox-example" not in run.stdout + run.stderr
        assert "all expectations hold" in run.stdout
