"""What the end-to-end tests share: running commands, waiting, a Lab that owns a temporary
directory and undoes everything made for it (namespaces, links, files under /etc/netns,
processes), test certificates, nginx with a JSON access log, dnsmasq, and assertions that never
print a secret value.

Each test file keeps its own topology and configs; this module only knows how to build them.
Not a test file itself (CMake runs test_*.py); pytest finds it beside the tests, from any cwd.
"""
import atexit
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time

# ---------------------------------------------------------------- secrets in test output


def fake_value():
    """A fresh, obviously fake secret value."""
    return "sk-airlock-e2e-FAKE-" + secrets.token_hex(8)


def assert_absent(secret, text, where):
    """Fails, naming `where`, if `secret` occurs in `text`; prints neither."""
    __tracebackhide__ = True
    if secret in text:
        raise AssertionError(f"{where} holds the secret value")


def _fingerprint(text):
    return f"{len(text)} chars, sha256 {hashlib.sha256(text.encode()).hexdigest()[:8]}"


def assert_equal_secret(actual, expected, where):
    """actual == expected where either may hold a secret value: a failure reports lengths, hash
    prefixes and the first differing offset, never the text."""
    __tracebackhide__ = True
    if actual != expected:
        at = next((i for i, (a, e) in enumerate(zip(actual, expected)) if a != e), min(len(actual), len(expected)))
        raise AssertionError(f"{where}: got {_fingerprint(actual)}, expected {_fingerprint(expected)}; "
                             f"they differ from offset {at}")


def run_clean(secret, args, where, timeout=60, **kw):
    """Runs args (text output captured) whose args or environment may hold `secret`: the output must
    not hold it, and neither a timeout nor the result's repr (which assertion explanations print)
    shows it. secret=None: nothing to hide."""
    __tracebackhide__ = True
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{where} timed out after {timeout} s") from None
    if secret is not None:
        assert_absent(secret, proc.stdout + proc.stderr, where)
        proc.args = [a.replace(secret, "<secret>") for a in proc.args]
    return proc


# ---------------------------------------------------------------- commands and waiting


def airlock_run(value, env_var, home, config, dns_port, cmd, timeout, args=(), prefix=()):
    """`airlock run` with the lab's config and DNS server, the secret's value in `env_var` (only in
    its environment, never in argv); its output must not hold the value."""
    env = dict(os.environ)
    env[env_var] = value
    env["AIRLOCK_HOME"] = home
    return run_clean(value, [*prefix, os.environ.get("AIRLOCK_BIN", "airlock"), "run", "--config", config,
                             "--dns-server", f"127.0.0.1:{dns_port}", *args, "--", *cmd],
                     "airlock run's output", timeout=timeout, env=env)


def sh(*args, check=True, timeout=60, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout, **kw)


def in_ns(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def wait_for(predicate, what, timeout=30):
    """Polls predicate until it holds. The bound only decides how long a failure takes to be
    reported: a loaded machine (CI runs the fuzz smoke tests beside these) stalls a process for
    seconds, so it is never the property under test; a test that needs a deadline asserts it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def listening(ns, proto="tcp"):
    """Local addresses with a listener ("203.0.113.10:443", "[2001:db8::1]:443") in ns (None: ours)."""
    cmd = ("ss", "-H", "-ltn" if proto == "tcp" else "-lun")
    out = (in_ns(ns, *cmd, check=False) if ns else sh(*cmd, check=False)).stdout
    return {fields[3] for fields in map(str.split, out.splitlines()) if len(fields) > 3}


def wait_listening(ns, addresses, what, proto="tcp", timeout=30, proc=None):
    """Until every address has a listener in ns, or `proc` (the server, if given) has exited:
    a server that failed is reported at once. Returns whether `proc` still runs."""
    wait_for(lambda: set(addresses) <= listening(ns, proto) or (proc is not None and proc.poll() is not None),
             what, timeout)
    return proc is None or proc.poll() is None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- per-run names and addresses

# Namespace and link names carry TAG, unique among the processes running now (a PID), so two
# runs at once (two checkouts testing) never share one. Names stay within IFNAMSIZ (15).
TAG = str(os.getpid())

_RESERVATIONS = "/run/airlock-e2e/links"
_POOLS = ("203.0.113", "198.51.100")  # the upper half of each: 64 /30s, used for nothing else


def _holder_alive(path):
    try:
        with open(path) as f:
            pid, start = f.read().split()
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19] == start
    except (OSError, ValueError, IndexError):
        return False


def _start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def link_addresses():
    """(host_ip, up_ip, host_ip6, up_ip6) for a host - upstream veth in the host's own namespace,
    where every run shares one routing table: a /30 and a /64 no other live run holds. A fixed
    pair put two runs' upstreams behind one prefix (the first route wins: one run talked to the
    other's nginx). Reserved by a file naming this process (PID and start time) until it exits;
    a dead holder's file is taken over, a prefix still on a host link (a killed run's) skipped."""
    os.makedirs(_RESERVATIONS, exist_ok=True)
    me = f"{os.getpid()} {_start_time(os.getpid())}\n"
    with open(os.path.join(_RESERVATIONS, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one chooser at a time; released when closed
        first = os.getpid() % 64
        for i in range(64):
            index = (first + i) % 64
            path = os.path.join(_RESERVATIONS, str(index))
            pool, slot = _POOLS[index // 32], 128 + 4 * (index % 32)
            v6 = f"2001:db8:a1e2:{index:x}"
            if _holder_alive(path) or sh("ip", "-o", "addr", "show", "to", f"{pool}.{slot}/30").stdout \
                    or sh("ip", "-o", "addr", "show", "to", f"{v6}::/64").stdout:
                continue
            with open(path, "w") as f:
                f.write(me)
            atexit.register(_release, path, me)
            return f"{pool}.{slot + 1}", f"{pool}.{slot + 2}", f"{v6}::1", f"{v6}::2"
    raise AssertionError("no free test link addresses: 64 runs at once?")


def _release(path, me):
    try:
        with open(path) as f:
            if f.read() == me:
                os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------- the lab


class Lab:
    """A temporary directory and everything made for one test module. close() (or leaving a `with`
    block) undoes it all, newest first, also after a failure half-way through a setup."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self._undo = [lambda: shutil.rmtree(self.dir, ignore_errors=True)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        errors = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as e:  # undo the rest first
                errors.append(e)
        if errors:
            raise errors[0]

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    # ---- network

    def netns(self, name):
        sh("ip", "netns", "add", name)
        self._undo.append(lambda: sh("ip", "netns", "del", name, check=False))
        in_ns(name, "ip", "link", "set", "lo", "up")

    def veth(self, a, b, ns_a=None, ns_b=None):
        """A veth pair a - b, each end moved into its namespace (None: ours)."""
        sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
        self._undo.append(lambda: sh("ip", *(("-n", ns_a) if ns_a else ()), "link", "del", a, check=False))
        for dev, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                sh("ip", "link", "set", dev, "netns", ns)

    def upstream_link(self, ns, host_if, up_if, host_ip, up_ip):
        """A namespace `ns` for upstream servers, reached from ours over a /30 veth host_if - up_if."""
        self.netns(ns)
        self.veth(host_if, up_if, None, ns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{up_ip}/30", "dev", up_if)
        sh("ip", "-n", ns, "link", "set", up_if, "up")

    def netns_file(self, ns, name, text):
        """/etc/netns/<ns>/<name>, which `ip netns exec` bind-mounts over /etc/<name>."""
        d = f"/etc/netns/{ns}"
        os.makedirs(d, exist_ok=True)
        self._undo.append(lambda: shutil.rmtree(d, ignore_errors=True))
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    # ---- processes

    def start(self, args, stderr, stdout=subprocess.DEVNULL, **kw):
        """Starts args with stderr to the file `stderr` in the lab; close() stops it."""
        with open(self.path(stderr), "w") as err:
            p = subprocess.Popen(args, stdout=stdout, stderr=err, **kw)
        self._undo.append(lambda: stop(p))
        return p

    # ---- certificates

    def ca(self, name):
        """A self-signed P-256 test CA: <name>.pem, <name>.key."""
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.pem"), "-days", "2",
           "-subj", f"/CN=airlock e2e {name}", "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,keyCertSign")

    def leaf(self, name, issuer, sans):
        """A server certificate <name>.pem, <name>.key for sans ("DNS:a,IP:b"), signed by the CA issuer."""
        sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", self.path(f"{name}.key"), "-out", self.path(f"{name}.csr"), "-subj", f"/CN={name}")
        ext = self.write(f"{name}.ext", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
        sh("openssl", "x509", "-req", "-in", self.path(f"{name}.csr"), "-CA", self.path(f"{issuer}.pem"),
           "-CAkey", self.path(f"{issuer}.key"), "-CAcreateserial", "-out", self.path(f"{name}.pem"),
           "-days", "2", "-extfile", ext)

    # ---- servers

    def nginx(self, ns, log_fields, http, workers=1, connections=256):
        """Starts nginx (with the echo module) in ns. `http` is the rest of its http block (settings
        and servers); each request is logged as one JSON object of log_fields (name: nginx variable).
        Waits for every `listen` address in `http`; returns the access log."""
        d = self.dir
        log_format = "{" + ",".join(f'"{name}":"{var}"' for name, var in log_fields.items()) + "}"
        conf = self.write("nginx.conf", f"""\
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections {connections}; }}
http {{
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  log_format rx escape=json '{log_format}';
  access_log {d}/access.log rx;
{textwrap.indent(textwrap.dedent(http), "  ")}}}
""")
        proc = self.start(["ip", "netns", "exec", ns, "nginx", "-c", conf, "-p", d], "nginx.stderr")
        addresses = re.findall(r"\blisten\s+([^\s;]+)", http)
        assert wait_listening(ns, addresses, "nginx listening", timeout=60, proc=proc), \
            f"nginx exited: {open(self.path('nginx.stderr')).read()}"
        return AccessLog(self.path("access.log"))

    def dnsmasq(self, records):
        """Starts dnsmasq on 127.0.0.1 answering only from records (dnsmasq options such as
        --host-record=NAME,IP); returns its port."""
        # The port was free when chosen, not necessarily when dnsmasq binds it (UDP and TCP) a
        # moment later on a machine other runs share: a dnsmasq that exits for it gets another.
        for _ in range(3):
            port = free_port()
            p = self.start(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces",
                            "--listen-address=127.0.0.1", f"--port={port}", "--user=root",
                            f"--pid-file={self.path('dnsmasq.pid')}", f"--log-facility={self.path('dnsmasq.log')}",
                            *records], "dnsmasq.stderr")
            if wait_listening(None, [f"127.0.0.1:{port}"], "dnsmasq listening", proto="udp", proc=p):
                return port
        with open(self.path("dnsmasq.stderr")) as f:
            raise AssertionError(f"dnsmasq did not start: {f.read()[-500:]}")


def json_lines(text):
    """The records of a JSON-lines file that a live process (nginx, the gateway, a test server)
    appends to: a last line without its newline is still being written (a write that crosses a
    page can be read half done) and is left for the next read, not parsed as a torn record."""
    return [json.loads(line) for line in text.split("\n")[:-1]]


class AccessLog:
    """What the upstream really received. Records hold secret values: never print one."""

    def __init__(self, path):
        self.path = path

    def received(self, marker):
        """The records whose URI contains marker."""
        try:
            with open(self.path) as f:
                return [rec for rec in json_lines(f.read()) if marker in rec["uri"]]
        except FileNotFoundError:
            return []

    def count(self, marker):
        return len(self.received(marker))

    def wait_received(self, marker, count=1, timeout=30):
        wait_for(lambda: self.count(marker) >= count, f"upstream received {marker}", timeout)
        return self.received(marker)

    def assert_not_received(self, marker):
        __tracebackhide__ = True
        n = self.count(marker)
        if n:
            raise AssertionError(f"the upstream received {n} request(s) for {marker}")
