"""Sandbox: a started airlock sandbox that runs commands, over `airlock serve`'s control socket."""
import base64
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import threading
from typing import Dict, List, Optional, Sequence, Union

from ._secrets import ConfigError, NetworkBuilder, NetworkConfig, SecretBuilder, SecretEntry, validate_secrets


class AirlockError(RuntimeError):
    """airlock refused a request or could not start the sandbox."""


class SandboxStopped(AirlockError):
    """The sandbox stopped (stop(), its timeout, or block-and-terminate) before the command ended."""


@dataclasses.dataclass
class Mount:
    host: str
    guest: str
    read_only: bool = False


@dataclasses.dataclass
class RunResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    timed_out: bool = False
    truncated: bool = False  # more than 8 MiB on a stream was dropped

    @property
    def ok(self):
        return self.exit_code == 0


# How many violation records a Sandbox keeps (the first ones; the audit log has every one).
MAX_VIOLATIONS_KEPT = 1000

# The variables airlock uses; nothing else of the caller's environment (which often holds
# credentials) is passed on, so /proc/<airlock>/environ cannot show one.
_KEPT_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "TERM")


def _child_env(secrets):
    out = {}
    for k, v in os.environ.items():
        if not (k in _KEPT_ENV or k.startswith("LC_") or k.startswith("AIRLOCK_")):
            continue
        if any(s.value and (s.value in v or s.value in k) for s in secrets):
            continue
        out[k] = v
    return out


def _root_fs(image):
    if not image:
        raise ConfigError("image: empty")
    if image.startswith(("/", "./", "../")):
        path = os.path.abspath(image)
        if os.path.isdir(path):
            return path
        raise ConfigError(f"image {image!r}: not a directory (airlock needs an unpacked root file system)")
    raise ConfigError(f"image {image!r}: airlock does not pull images; give a local directory holding an unpacked "
                      "root file system (e.g. from `docker export`), or no image to use the host's system read-only")


class Sandbox:
    """A started sandbox. Commands run one after another in it and share its state (/tmp, the
    workspace, background processes). Use it as a context manager, or call stop()."""

    @staticmethod
    def builder(name="sandbox") -> "SandboxBuilder":
        return SandboxBuilder(name)

    @classmethod
    def create(cls, name="sandbox", *, secrets: Sequence[SecretEntry] = (), network: Optional[NetworkConfig] = None,
               image: Optional[str] = None, env: Optional[Dict[str, str]] = None, mounts: Sequence[Mount] = (),
               workspace: Optional[str] = None, workspace_mode: str = "read-write",
               workdir: Optional[str] = None, timeout: Optional[float] = None, memory_bytes: Optional[int] = None,
               cpus: Optional[float] = None, pids: Optional[int] = None, airlock: Optional[str] = None,
               log_output=None, home: Optional[str] = None, audit_log: Optional[str] = None,
               start_timeout: float = 60) -> "Sandbox":
        """Starts a sandbox and returns once it can run commands. Raises ConfigError for a
        broken rule (the SDK's or airlock's), AirlockError when it cannot start."""
        secrets = list(secrets)
        validate_secrets(secrets)
        network = network or NetworkConfig()
        spec = {"version": 1, "name": name, "secrets": [s.to_spec() for s in secrets], "network": network.to_spec()}
        if image is not None:
            spec["rootfs"] = _root_fs(image)
        if env:
            spec["env"] = {str(k): str(v) for k, v in env.items()}
        if mounts:
            spec["mounts"] = [{"host": m.host, "guest": m.guest, "read_only": m.read_only} for m in mounts]
        if workspace or workspace_mode != "read-write":
            spec["workspace"] = {"mode": workspace_mode}  # read-write, overlay or none
            if workspace:
                spec["workspace"]["dir"] = os.path.abspath(workspace)
        if workdir:
            spec["workdir"] = workdir
        limits = {}
        if timeout:
            limits["timeout_ms"] = max(1, int(timeout * 1000))
        if memory_bytes:
            limits["memory_bytes"] = int(memory_bytes)
        if cpus:
            limits["cpus"] = float(cpus)
        if pids:
            limits["pids"] = int(pids)
        spec["limits"] = limits
        gateway = {}
        if home:
            gateway["home"] = home
        if audit_log:
            gateway["audit_log"] = os.path.abspath(audit_log)
        spec["gateway"] = gateway
        binary = airlock or os.environ.get("AIRLOCK_BIN") or shutil.which("airlock") or "airlock"
        return cls(name, binary, json.dumps(spec), secrets, log_output, start_timeout)

    def __init__(self, name, binary, spec_text, secrets, log_output, start_timeout):
        self.name = name
        self.id = ""
        self.placeholders: Dict[str, str] = {}
        self.violations: List[dict] = []
        self.stop_code: Optional[int] = None
        self.stop_reason: Optional[str] = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: Dict[int, dict] = {}
        self._next_id = 0
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._first: Optional[dict] = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen([binary, "serve", "--control-fd", str(theirs.fileno())],
                                          pass_fds=[theirs.fileno()], env=_child_env(secrets),
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=log_output if log_output is not None else None)
        except OSError as e:
            ours.close()
            raise AirlockError(f"cannot start {binary}: {e.strerror}") from None
        finally:
            theirs.close()
        self._sock = ours
        self._reader = threading.Thread(target=self._read_events, name=f"airlock-{name}", daemon=True)
        self._reader.start()
        try:
            self._sock.sendall(spec_text.encode() + b"\n")
        except OSError:
            pass  # airlock ended: the reader reports why
        del spec_text
        if not self._started.wait(start_timeout):
            self._kill()
            raise AirlockError(f"the sandbox did not start within {start_timeout} s")
        first = self._first
        if first.get("type") != "started":
            self._kill()
            message = first.get("message") or first.get("reason") or "airlock serve ended before the sandbox started"
            raise (ConfigError if first.get("code") == 2 else AirlockError)(message)
        self.id = first.get("sandbox", "")
        self.placeholders = dict(first.get("placeholders", {}))

    # ---------------------------------------------------------------- events

    def _read_events(self):
        f = self._sock.makefile("rb")
        first_error = None
        try:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                t = e.get("type")
                if not self._started.is_set():
                    if t == "error" and "id" not in e:
                        first_error = e.get("message")
                        continue
                    if t == "stopped" and first_error:
                        e["message"] = first_error
                    if t in ("started", "stopped"):
                        self._first = e
                        self._started.set()
                        if t == "started":
                            continue
                self._dispatch(e)
        except OSError:
            pass
        finally:
            if not self._started.is_set():
                self._first = {"type": "stopped", "message": first_error or "airlock serve ended before the sandbox started"}
                self._started.set()
            self._finish(None, "airlock serve ended")

    def _dispatch(self, e):
        t = e.get("type")
        if t in ("exited", "error") and "id" in e:
            with self._lock:
                slot = self._pending.pop(e["id"], None)
            if slot is not None:
                slot["event"] = e
                slot["done"].set()
        elif t == "violation":
            with self._lock:
                if len(self.violations) < MAX_VIOLATIONS_KEPT:  # a guest can loop on violations: bounded
                    self.violations.append(e.get("record", {}))
        elif t == "stopped":
            self._finish(e.get("code"), e.get("reason", ""))

    def _finish(self, code, reason):
        with self._lock:
            if self._stopped.is_set():
                return
            self.stop_code, self.stop_reason = code, reason
            pending, self._pending = self._pending, {}
            self._stopped.set()
        for slot in pending.values():
            slot["event"] = {"type": "error", "message": f"the sandbox stopped: {reason}"}
            slot["done"].set()

    # ---------------------------------------------------------------- commands

    @property
    def stopped(self):
        return self._stopped.is_set()

    def wait_stopped(self, timeout=None):
        return self._stopped.wait(timeout)

    def placeholder(self, env_var):
        return self.placeholders.get(env_var)

    def run(self, cmd: Union[str, Sequence[str]], *, env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None,
            input: Optional[bytes] = None, timeout: Optional[float] = None) -> RunResult:
        """Runs a command (a list of arguments, or a string for /bin/sh -c) and waits for it. A
        non-zero exit status is a result; an exception means the command did not run to its end."""
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else [str(a) for a in cmd]
        if not argv or not argv[0]:
            raise ConfigError("run: no command")
        with self._lock:
            if self._stopped.is_set():
                raise SandboxStopped(f"the sandbox has stopped: {self.stop_reason}")
            self._next_id += 1
            rid = self._next_id
            slot = {"done": threading.Event(), "event": None}
            self._pending[rid] = slot
        req = {"type": "run", "id": rid, "argv": argv}
        if env:
            req["env"] = {str(k): str(v) for k, v in env.items()}
        if cwd:
            req["workdir"] = cwd
        if input:
            req["stdin"] = base64.b64encode(input if isinstance(input, bytes) else input.encode()).decode()
        if timeout:
            req["timeout_ms"] = max(1, int(timeout * 1000))
        self._send(req)
        slot["done"].wait()
        e = slot["event"]
        if e["type"] == "error":
            message = e.get("message", "")
            raise (SandboxStopped if "stopped" in message or "did not finish" in message else
                   ConfigError if message.startswith("run:") else AirlockError)(message)
        return RunResult(base64.b64decode(e.get("stdout", "")), base64.b64decode(e.get("stderr", "")), e["code"],
                         bool(e.get("timed_out")), bool(e.get("stdout_truncated") or e.get("stderr_truncated")))

    def _send(self, obj):
        data = (json.dumps(obj) + "\n").encode()
        with self._write_lock:
            try:
                self._sock.sendall(data)
            except OSError as err:
                raise SandboxStopped(f"the sandbox is gone: {err.strerror}") from None

    def stop(self, timeout=15):
        """Stops the sandbox (whatever still runs in it is killed). Idempotent."""
        try:
            self._send({"type": "stop"})
        except SandboxStopped:
            pass
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        self._sock.close()
        self._reader.join(5)

    def _kill(self):
        """Closing the channel makes airlock stop the sandbox and clean up; SIGKILL only if it
        does not exit in time (what it leaves then, `airlock gc` removes)."""
        self._sock.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        return f"<airlock Sandbox {self.name!r} {self.id}>"


class SandboxBuilder:
    """The Rust SandboxBuilder: Sandbox.builder("worker").secret(lambda s: ...).secret_env(...)
    .network(lambda n: n.on_secret_violation(...)).create()."""

    def __init__(self, name="sandbox"):
        self._name = name
        self._secrets: List[SecretEntry] = []
        self._network = NetworkBuilder()
        self._kw = {}
        self._env: Dict[str, str] = {}
        self._mounts: List[Mount] = []

    def secret(self, fn_or_entry):
        """A secret from a function that configures a SecretBuilder, or a SecretEntry."""
        if isinstance(fn_or_entry, SecretEntry):
            fn_or_entry.validate()
            self._secrets.append(fn_or_entry)
        else:
            builder = fn_or_entry(SecretBuilder())
            if not isinstance(builder, SecretBuilder):
                raise ConfigError("secret(fn): fn must return the SecretBuilder it was given")
            self._secrets.append(builder.build())
        return self

    def secret_env(self, env_var, value, allowed_host):
        """Shorthand for .secret(lambda s: s.env(env_var).value(value).allow_host(allowed_host))."""
        return self.secret(lambda s: s.env(env_var).value(value).allow_host(allowed_host))

    def network(self, fn):
        result = fn(self._network)
        if not isinstance(result, NetworkBuilder):
            raise ConfigError("network(fn): fn must return the NetworkBuilder it was given")
        return self

    def image(self, path):
        self._kw["image"] = path
        return self

    def env(self, key, value):
        self._env[key] = value
        return self

    def volume(self, host, guest, read_only=False):
        self._mounts.append(Mount(host, guest, read_only))
        return self

    def workspace(self, path=None, mode="read-write"):
        """The host directory the sandbox sees at the same path (None: the current directory),
        read-write, "overlay" (writes discarded) or "none"."""
        self._kw["workspace"], self._kw["workspace_mode"] = path, mode
        return self

    def workdir(self, path):
        self._kw["workdir"] = path
        return self

    def timeout(self, seconds):
        self._kw["timeout"] = seconds
        return self

    def airlock(self, binary):
        self._kw["airlock"] = binary
        return self

    def log_output(self, f):
        self._kw["log_output"] = f
        return self

    def home(self, path):
        self._kw["home"] = path
        return self

    def audit_log(self, path):
        self._kw["audit_log"] = path
        return self

    def create(self) -> Sandbox:
        return Sandbox.create(self._name, secrets=self._secrets, network=self._network.config, env=self._env or None,
                              mounts=self._mounts, **self._kw)
