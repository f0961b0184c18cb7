"""`airlock check CONFIG`: validates a config and prints a summary with placeholders, never values."""
import os
import subprocess

import pytest

from netlab import assert_absent, run_clean

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
FAKE = "sk-FAKE-e2e-check-6b1d9c0e"  # distinctive, obviously fake


def run_check(tmp_path, text, env=None, name="airlock.toml"):
    path = tmp_path / name
    path.write_text(text)
    full_env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    full_env.update(env or {})
    return run_clean(FAKE, [AIRLOCK, "check", str(path)], "check's output", timeout=30, env=full_env), str(path)


VALID = """
[network]
on_secret_violation = "block"
intercept_ports = [443, 8443]
tls_bypass = ["*.pinned.example"]

[[secret]]
env = "OPENAI_API_KEY"
value_from = "env:OPENAI_API_KEY"
allow_hosts = ["api.openai.com"]
allow_host_patterns = ["*.openai.com"]
inject = { query = true }

[[secret]]
env = "GITHUB_TOKEN"
value_from = "file:token.txt"
allow_hosts = ["api.github.com"]
placeholder = "__GH_TOKEN__"
require_tls_identity = false
on_violation = "block-and-terminate"
"""


def test_valid_summary_shows_placeholders_not_values(tmp_path):
    (tmp_path / "token.txt").write_text(FAKE + "-file\n")
    proc, path = run_check(tmp_path, VALID, {"OPENAI_API_KEY": FAKE})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    # No fragment of either value, not even the file's.
    assert_absent("FAKE", out, "check's summary")
    assert out.startswith(path + ": OK\n")
    assert "secrets: 2\n" in out
    assert "placeholder:          $MSB_OPENAI_API_KEY\n" in out
    assert "placeholder:          __GH_TOKEN__\n" in out
    assert "hosts:                api.openai.com, *.openai.com\n" in out
    assert "inject:               headers, basic_auth, query\n" in out
    assert "require_tls_identity: no (plain HTTP may also receive the value)\n" in out
    assert "violation action:     block-and-terminate (resolved network-wide)\n" in out
    assert "intercept_ports:      443, 8443\n" in out
    assert "tls_bypass:           *.pinned.example\n" in out


def test_example_config_checks(tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "airlock.toml")
    env = dict(os.environ, OPENAI_API_KEY=FAKE)
    proc = run_clean(FAKE, [AIRLOCK, "check", example], "check's output", timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "$MSB_OPENAI_API_KEY" in proc.stdout


def test_inline_value_is_rejected(tmp_path):
    proc, path = run_check(tmp_path, f"""
[[secret]]
env = "OPENAI_API_KEY"
value = "{FAKE}"
allow_hosts = ["api.openai.com"]
""")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"airlock: error: {path}:4: secret \"OPENAI_API_KEY\": inline values are not allowed: shell history "
        "and process listings leak them; use value_from = \"env:NAME\", \"file:PATH\" or \"cmd:PROGRAM ARG...\"\n")


def secret(extra="", value_from="env:OPENAI_API_KEY", hosts='allow_hosts = ["api.openai.com"]'):
    return f"""
[[secret]]
env = "OPENAI_API_KEY"
value_from = "{value_from}"
{hosts}
{extra}
"""


ERRORS = [
    ("unknown_key", secret('alow_hosts = ["x.example"]'), 'unknown key "alow_hosts" in [[secret]]'),
    ("unknown_section", "[netwrk]\n", 'unknown key "netwrk" in the top level'),
    ("missing_env_var", secret(value_from="env:AIRLOCK_E2E_UNSET"),
     'secret "OPENAI_API_KEY": value_from "env:AIRLOCK_E2E_UNSET": environment variable "AIRLOCK_E2E_UNSET" '
     'is not set'),
    ("unreadable_file", secret(value_from="file:/nonexistent/key"),
     'secret "OPENAI_API_KEY": value_from "file:/nonexistent/key": cannot read "/nonexistent/key"'),
    ("value_in_value_from", secret(value_from=FAKE), 'value_from must be "env:NAME", "file:PATH" or "cmd:PROGRAM ARG..."'),
    ("no_hosts", secret(hosts=""), 'secret "OPENAI_API_KEY": at least one allowed host'),
    ("bare_star", secret(hosts='allow_host_patterns = ["*"]'), "allow_any_host_dangerous"),
    ("single_label_wildcard", secret(hosts='allow_host_patterns = ["*.com"]'), "single label"),
    ("star_inside", secret(hosts='allow_host_patterns = ["a.*.example.com"]'), "whole leading label"),
    ("ip_wildcard", secret(hosts='allow_host_patterns = ["*.1.2.3"]'), "IP literals cannot be wildcards"),
    ("non_ascii", secret(hosts='allow_hosts = ["bücher.example"]'), "give the A-label (xn--...)"),
    ("placeholder_newline", secret('placeholder = "a\\nb"'), "placeholder must not contain CR, LF or NUL"),
    ("placeholder_too_long", secret(f'placeholder = "{"P" * 1025}"'), "placeholder must be at most 1024 bytes"),
    ("bad_action", secret('on_violation = "kill"'), 'unknown violation action "kill"'),
    ("env_with_equals", secret().replace('env = "OPENAI_API_KEY"', 'env = "A=B"'),
     "env var must not contain '=' or NUL"),
    ("bound_twice", secret() + secret(), 'secret "OPENAI_API_KEY": env var is bound twice'),
    ("placeholder_contains_other", secret('placeholder = "KEY"') +
     secret('placeholder = "KEY_2"').replace('env = "OPENAI_API_KEY"', 'env = "OTHER"'),
     "no placeholder may contain another"),
    ("bad_port", "[network]\nintercept_ports = [70000]\n", "intercept port 70000 is not in 1..65535"),
    ("bad_type", secret("require_tls_identity = \"no\""), "must be true or false"),
    ("not_toml", "[network\n", "not valid TOML"),
]


@pytest.mark.parametrize("name,text,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_config_errors_exit_2_with_a_clear_message(tmp_path, name, text, message):
    proc, path = run_check(tmp_path, text, {"OPENAI_API_KEY": FAKE})
    assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"airlock: error: {path}"), proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, "one line"


def test_missing_config_file(tmp_path):
    proc = subprocess.run([AIRLOCK, "check", str(tmp_path / "nope.toml")], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    assert proc.stderr == f"airlock: error: {tmp_path / 'nope.toml'}: cannot open: No such file or directory\n"


def test_version_and_usage_error():
    proc = subprocess.run([AIRLOCK, "version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.startswith("airlock ")
    proc = subprocess.run([AIRLOCK], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
