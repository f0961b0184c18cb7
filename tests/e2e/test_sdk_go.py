"""The Go SDK (sdk/go) against real sandboxes: `go test -tags airlock_lab` with the upstream lab of
sdk_lab.py. The Go tests make their own fake values and check what the upstream received, /proc
and files themselves; this file checks that every one of them ran and passed (none skipped)."""
import os
import re
import subprocess

import pytest

import sdk_lab

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("AIRLOCK_BUILD_DIR", os.path.join(ROOT, "build"))

EXPECTED = [
    "TestViolationActionStrings", "TestSecretEnvCopiesEveryOption", "TestTheSeedsValidationRules",
    "TestAPlaceholderInsideAnotherIsRefused", "TestTheLastNonEmptyOnViolationWinsNetworkWide",
    "TestWithImageNeedsALocalDirectory", "TestRunsShareTheSandbox", "TestExitCodesOutputStdinDirAndEnv",
    "TestStopEndsTheSandbox", "TestWithWorkspace", "TestCancellingTheContextKillsTheCommand", "TestAirlocksOwnValidationReachesTheCaller", "TestARunCarryingTheValueIsRefused",
    "TestWithImageALocalRootFileSystem", "TestTheValueIsInNoProcessAndNoFile", "TestExportedValueChild",
    "TestViolationActionIsAppliedNetworkWide", "TestOCILayersAreAppliedInOrderWithWhiteouts",
    "TestOCILayersCannotEscapeTheRoot", "TestOCIDigestsAreChecked", "TestWithImageAnOCILayout",
    "ExampleWithImage", "ExampleCreateSandbox", "ExampleWithSecrets", "ExampleSecret_Env",
]


@pytest.fixture(scope="module")
def lab_env():
    lab, env = sdk_lab.start("airlock-sdkgo-", "alsg")
    try:
        env.update({"GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "", "GO111MODULE": "on",
                    "GOCACHE": os.path.join(BUILD, "go-cache"), "CGO_ENABLED": "0",
                    "AIRLOCK_BIN": os.environ.get("AIRLOCK_BIN", os.path.join(BUILD, "cli", "airlock"))})
        yield env
    finally:
        lab.close()


def test_go_sdk(lab_env):
    proc = subprocess.run(["go", "test", "-count=1", "-tags", "airlock_lab", "-v", "./..."],
                          cwd=os.path.join(ROOT, "sdk", "go"), env=lab_env, capture_output=True, text=True,
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert "--- SKIP" not in out, out[-8000:]
    passed = set(re.findall(r"--- PASS: (\S+)", out))
    missing = [t for t in EXPECTED if t not in passed]
    assert not missing, f"did not pass: {missing}\n" + out[-4000:]
