"""The secret model (secrets-spec §1): the Rust builder's names, a dataclass form, validation."""
import dataclasses
import enum
from typing import Callable, List, Optional, Sequence

MAX_PLACEHOLDER_BYTES = 1024


class ConfigError(ValueError):
    """A secret or sandbox setting breaks a rule. The message names the secret, never its value."""


class ViolationAction(str, enum.Enum):
    """What happens when a placeholder goes to a host its secret may not reach. The runtime
    applies one action network-wide: the last non-empty per-secret action, else the network's."""

    DEFAULT = ""
    BLOCK = "block"
    BLOCK_AND_LOG = "block-and-log"
    BLOCK_AND_TERMINATE = "block-and-terminate"

    def __str__(self):
        return self.value


def _action(value, where):
    try:
        return ViolationAction(value if value is not None else "")
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not one of '', 'block', 'block-and-log', 'block-and-terminate'") from None


@dataclasses.dataclass
class SecretEntry:
    """One secret, as plain data. `value` never appears in repr()."""

    env_var: str
    value: str = dataclasses.field(repr=False)
    allow_hosts: List[str] = dataclasses.field(default_factory=list)
    allow_host_patterns: List[str] = dataclasses.field(default_factory=list)
    placeholder: str = ""                 # "": $MSB_<env_var>
    require_tls: Optional[bool] = None    # None: True
    on_violation: ViolationAction = ViolationAction.DEFAULT
    allow_any_host_dangerous: bool = False
    inject_headers: bool = True
    inject_basic_auth: bool = True
    inject_query: bool = False
    inject_body: bool = False

    @property
    def effective_placeholder(self):
        return self.placeholder or "$MSB_" + self.env_var

    def validate(self):
        """Raises ConfigError for a broken rule of secrets-spec §1 (host patterns themselves are
        checked by airlock when the sandbox is created)."""
        if not isinstance(self.env_var, str) or not self.env_var:
            raise ConfigError("secret: env var must be non-empty")
        name = f"secret {self.env_var!r}"
        if "=" in self.env_var or "\0" in self.env_var:
            raise ConfigError(f"{name}: env var cannot contain '=' or NUL")
        if not isinstance(self.value, str) or not self.value:
            raise ConfigError(f"{name}: value is required (is the host variable set?)")
        if not (self.allow_hosts or self.allow_host_patterns or self.allow_any_host_dangerous):
            raise ConfigError(f"{name}: at least one exact or wildcard host is required "
                              "(allow_host, allow_host_pattern, or allow_any_host_dangerous(i_understand_the_risk=True))")
        for h in list(self.allow_hosts) + list(self.allow_host_patterns):
            if not isinstance(h, str) or not h:
                raise ConfigError(f"{name}: an allowed host is empty")
        if self.placeholder:
            if len(self.placeholder.encode()) > MAX_PLACEHOLDER_BYTES:
                raise ConfigError(f"{name}: placeholder is longer than {MAX_PLACEHOLDER_BYTES} bytes")
            if any(c in self.placeholder for c in "\0\r\n"):
                raise ConfigError(f"{name}: placeholder cannot contain NUL, CR or LF")
        self.on_violation = _action(self.on_violation, f"{name}: on_violation")

    def to_spec(self):
        out = {"env": self.env_var, "value": self.value, "allow_hosts": list(self.allow_hosts),
               "allow_host_patterns": list(self.allow_host_patterns),
               "scopes": {"headers": self.inject_headers, "basic_auth": self.inject_basic_auth,
                          "query": self.inject_query, "body": self.inject_body}}
        if self.allow_any_host_dangerous:
            out["allow_any_host_dangerous"] = True
        if self.placeholder:
            out["placeholder"] = self.placeholder
        if self.require_tls is not None:
            out["require_tls"] = bool(self.require_tls)
        if self.on_violation:
            out["on_violation"] = str(self.on_violation)
        return out


class Secret:
    """The Go-style factory: Secret.env(name, value, allow_hosts=[...], ...)."""

    @staticmethod
    def env(env_var, value, *, allow_hosts=(), allow_host_patterns=(), placeholder="", require_tls=None,
            on_violation=ViolationAction.DEFAULT):
        return SecretEntry(env_var, value, list(allow_hosts), list(allow_host_patterns), placeholder, require_tls,
                           _action(on_violation, f"secret {env_var!r}: on_violation"))


class SecretBuilder:
    """The Rust builder: s.env("K").value(v).allow_host("api.example.com")..."""

    def __init__(self):
        self._e = SecretEntry("", "")

    def env(self, var):
        self._e.env_var = var
        return self

    def value(self, value):
        self._e.value = value
        return self

    def allow_host(self, host):
        self._e.allow_hosts.append(host)
        return self

    def allow_host_pattern(self, pattern):
        self._e.allow_host_patterns.append(pattern)
        return self

    def allow_any_host_dangerous(self, i_understand_the_risk):
        """Substitution on any host: only when i_understand_the_risk is True."""
        if i_understand_the_risk is True:
            self._e.allow_any_host_dangerous = True
        return self

    def placeholder(self, placeholder):
        if not placeholder:
            raise ConfigError(f"secret {self._e.env_var!r}: a custom placeholder must be non-empty")
        self._e.placeholder = placeholder
        return self

    def require_tls_identity(self, enabled):
        self._e.require_tls = bool(enabled)
        return self

    def inject_headers(self, enabled):
        self._e.inject_headers = bool(enabled)
        return self

    def inject_basic_auth(self, enabled):
        self._e.inject_basic_auth = bool(enabled)
        return self

    def inject_query(self, enabled):
        self._e.inject_query = bool(enabled)
        return self

    def inject_body(self, enabled):
        self._e.inject_body = bool(enabled)
        return self

    def on_violation(self, action):
        self._e.on_violation = _action(action, f"secret {self._e.env_var!r}: on_violation")
        return self

    def build(self) -> SecretEntry:
        self._e.validate()
        return dataclasses.replace(self._e)


@dataclasses.dataclass
class NetworkConfig:
    """The sandbox's network policy."""

    on_secret_violation: ViolationAction = ViolationAction.DEFAULT
    egress: List[str] = dataclasses.field(default_factory=list)          # e.g. "allow@api.example.com:tcp:443"
    dns_servers: List[str] = dataclasses.field(default_factory=list)     # "IP[:PORT]"; empty: the host's
    upstream_ca_files: List[str] = dataclasses.field(default_factory=list)
    tls_bypass: List[str] = dataclasses.field(default_factory=list)
    intercept_ports: List[int] = dataclasses.field(default_factory=list)  # empty: [443]

    def to_spec(self):
        import os
        out = {}
        action = _action(self.on_secret_violation, "network: on_secret_violation")
        if action:
            out["on_secret_violation"] = str(action)
        if self.egress:
            out["egress"] = list(self.egress)
        if self.dns_servers:
            out["dns_servers"] = list(self.dns_servers)
        if self.upstream_ca_files:
            out["upstream_cas"] = [{"file": os.path.abspath(f)} for f in self.upstream_ca_files]
        if self.tls_bypass:
            out["tls_bypass"] = list(self.tls_bypass)
        if self.intercept_ports:
            out["intercept_ports"] = [int(p) for p in self.intercept_ports]
        return out


class NetworkBuilder:
    """The Rust NetworkBuilder: n.on_secret_violation(ViolationAction.BLOCK)..."""

    def __init__(self, config: Optional[NetworkConfig] = None):
        self.config = config or NetworkConfig()

    def on_secret_violation(self, action):
        self.config.on_secret_violation = _action(action, "network: on_secret_violation")
        return self

    def egress(self, rule):
        self.config.egress.append(rule)
        return self

    def dns_server(self, server):
        self.config.dns_servers.append(server)
        return self

    def upstream_ca_file(self, path):
        self.config.upstream_ca_files.append(path)
        return self

    def bypass_tls(self, host_pattern):
        self.config.tls_bypass.append(host_pattern)
        return self

    def intercept_port(self, port):
        if not self.config.intercept_ports:
            self.config.intercept_ports.append(443)
        self.config.intercept_ports.append(int(port))
        return self


def effective_violation_action(network_action, secrets: Sequence[SecretEntry]) -> ViolationAction:
    """The action the runtime applies network-wide: the last non-empty per-secret action, else
    the network's, else block-and-log."""
    for s in reversed(list(secrets)):
        if s.on_violation:
            return ViolationAction(s.on_violation)
    return ViolationAction(network_action) if network_action else ViolationAction.BLOCK_AND_LOG


def validate_secrets(secrets: Sequence[SecretEntry]):
    seen = set()
    for i, s in enumerate(secrets):
        s.validate()
        if s.env_var in seen:
            raise ConfigError(f"secret {s.env_var!r} is bound twice")
        seen.add(s.env_var)
        for o in secrets[:i]:
            a, b = s.effective_placeholder, o.effective_placeholder
            if a in b or b in a:
                raise ConfigError(f"secrets {o.env_var!r} and {s.env_var!r}: one placeholder contains the other")


SecretFn = Callable[[SecretBuilder], SecretBuilder]
