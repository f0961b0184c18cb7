"""The secret model of the Python SDK: the Rust builder's names, the dataclass form, the seeds'
validation rules. No sandbox needed."""
import pytest

from airlock import (ConfigError, NetworkBuilder, Sandbox, Secret, SecretBuilder, SecretEntry, ViolationAction,
                     effective_violation_action)

VALUE = "sk-fake-python-unit-0123456789"


def test_violation_action_strings():
    assert [a.value for a in ViolationAction] == ["", "block", "block-and-log", "block-and-terminate"]
    assert ViolationAction("block-and-terminate") is ViolationAction.BLOCK_AND_TERMINATE
    with pytest.raises(ConfigError, match="is not one of"):
        SecretBuilder().env("K").on_violation("explode")


def test_the_builder_sets_every_field():
    e = (SecretBuilder().env("OPENAI_API_KEY").value(VALUE).allow_host("api.openai.com")
         .allow_host_pattern("*.openai.com").placeholder("$OAI").require_tls_identity(False)
         .inject_headers(False).inject_basic_auth(False).inject_query(True).inject_body(True)
         .on_violation(ViolationAction.BLOCK).build())
    assert (e.env_var, e.allow_hosts, e.allow_host_patterns, e.placeholder, e.require_tls) == \
        ("OPENAI_API_KEY", ["api.openai.com"], ["*.openai.com"], "$OAI", False)
    assert (e.inject_headers, e.inject_basic_auth, e.inject_query, e.inject_body) == (False, False, True, True)
    spec = e.to_spec()
    assert spec["scopes"] == {"headers": False, "basic_auth": False, "query": True, "body": True}
    assert spec["on_violation"] == "block" and spec["require_tls"] is False
    # Defaults: headers and basic auth on, query and body off, TLS identity required.
    d = SecretBuilder().env("K").value(VALUE).allow_host("a.test").build()
    assert (d.inject_headers, d.inject_basic_auth, d.inject_query, d.inject_body) == (True, True, False, False)
    assert d.effective_placeholder == "$MSB_K" and "require_tls" not in d.to_spec()


def test_the_value_is_not_in_repr():
    e = Secret.env("K", VALUE, allow_hosts=["a.test"])
    assert VALUE not in repr(e) and VALUE not in str(e)
    assert VALUE not in repr(SecretBuilder().env("K").value(VALUE).allow_host("a.test").build())


def test_allow_any_host_dangerous_needs_the_flag():
    with pytest.raises(ConfigError, match="at least one exact or wildcard host"):
        SecretBuilder().env("K").value(VALUE).allow_any_host_dangerous(False).build()
    e = SecretBuilder().env("K").value(VALUE).allow_any_host_dangerous(i_understand_the_risk=True).build()
    assert e.to_spec()["allow_any_host_dangerous"] is True


@pytest.mark.parametrize("make, rule", [
    (lambda: SecretBuilder().value(VALUE).allow_host("a.test"), "non-empty"),
    (lambda: SecretBuilder().env("A=B").value(VALUE).allow_host("a.test"), "'=' or NUL"),
    (lambda: SecretBuilder().env("A\0B").value(VALUE).allow_host("a.test"), "'=' or NUL"),
    (lambda: SecretBuilder().env("K").value(VALUE), "at least one exact or wildcard host"),
    (lambda: SecretBuilder().env("K").allow_host("a.test"), "value is required"),
    (lambda: SecretBuilder().env("K").value(VALUE).allow_host("a.test").placeholder("x" * 1025), "1024"),
    (lambda: SecretBuilder().env("K").value(VALUE).allow_host("a.test").placeholder("a\nb"), "NUL, CR or LF"),
    (lambda: SecretBuilder().env("K").value(VALUE).allow_host("a.test").placeholder("a\rb"), "NUL, CR or LF"),
])
def test_the_seeds_validation_rules(make, rule):
    with pytest.raises(ConfigError, match=rule) as info:
        make().build()
    assert VALUE not in str(info.value)


def test_dataclass_form_is_validated_by_create():
    bad = SecretEntry("K", VALUE)  # no host
    with pytest.raises(ConfigError, match="at least one"):
        Sandbox.create("w", secrets=[bad], airlock="/nonexistent")
    a = Secret.env("KEY", "v1", allow_hosts=["a.test"])
    b = Secret.env("KEY_2", "v2", allow_hosts=["b.test"])
    with pytest.raises(ConfigError, match="one placeholder contains the other"):
        Sandbox.create("w", secrets=[a, b], airlock="/nonexistent")
    with pytest.raises(ConfigError, match="bound twice"):
        Sandbox.builder("w").secret(a).secret(a).create()
    with pytest.raises(ConfigError, match="does not pull images"):
        Sandbox.create("w", image="python:3.12", airlock="/nonexistent")


def test_the_last_non_empty_action_wins():
    s = lambda a: SecretEntry("K", "v", ["a.test"], on_violation=a)
    assert effective_violation_action("", []) is ViolationAction.BLOCK_AND_LOG
    assert effective_violation_action(ViolationAction.BLOCK, [s(ViolationAction.BLOCK_AND_TERMINATE), s("")]) \
        is ViolationAction.BLOCK_AND_TERMINATE
    assert effective_violation_action("", [s(ViolationAction.BLOCK_AND_TERMINATE), s(ViolationAction.BLOCK)]) \
        is ViolationAction.BLOCK
    n = NetworkBuilder().on_secret_violation(ViolationAction.BLOCK_AND_TERMINATE)
    assert n.config.to_spec() == {"on_secret_violation": "block-and-terminate"}
