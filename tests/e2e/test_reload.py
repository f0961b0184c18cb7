"""Secrets that change (issue 17 item 5): `airlock gateway` reloads its config on SIGHUP and on
POST /reload (admin listener, --admin-reload) without dropping connections; `value_from = "cmd:..."`.

Topology (made and removed here; documentation addresses only):
  gateway netns: the client loop and `airlock gateway --proxy 127.0.0.1:3128` ──veth── upstream
  netns: nginx on 203.0.113.10:443 (api.example.com, HTTP/1.1) and 203.0.113.11:443
  (h2.example.com, HTTP/2 by ALPN) with a JSON access log.
Assertions are on what nginx received. Values are fake, fresh per test, and checked absent from
every gateway and client output; no assertion prints one.
"""
import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time

import pytest

from netlab import Lab, TAG, assert_absent, assert_equal_secret, fake_value, in_ns, sh, wait_for

AIRLOCK = os.environ.get("AIRLOCK_BIN", "")
assert os.geteuid() == 0 and AIRLOCK, "these tests need root and AIRLOCK_BIN"
GW, UP = f"arg{TAG}", f"aru{TAG}"
PH = "$MSB_API_KEY"
PH2 = "$MSB_SECOND_KEY"
PY = "/usr/bin/python3"


class Env:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        for ns in (GW, UP):
            lab.netns(ns)
        lab.veth(f"vr{TAG}", f"vs{TAG}", GW, UP)
        in_ns(GW, "ip", "addr", "add", "198.51.100.1/24", "dev", f"vr{TAG}")
        in_ns(GW, "ip", "link", "set", f"vr{TAG}", "up")
        in_ns(GW, "ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
        in_ns(UP, "ip", "addr", "add", "198.51.100.2/24", "dev", f"vs{TAG}")
        in_ns(UP, "ip", "link", "set", f"vs{TAG}", "up")
        in_ns(UP, "ip", "addr", "add", "203.0.113.10/32", "dev", "lo")
        in_ns(UP, "ip", "addr", "add", "203.0.113.11/32", "dev", "lo")
        in_ns(UP, "ip", "route", "add", "default", "via", "198.51.100.1")
        lab.netns_file(GW, "hosts", "127.0.0.1 localhost\n203.0.113.10 api.example.com\n203.0.113.11 h2.example.com\n")
        lab.ca("test-ca")
        lab.leaf("server", "test-ca", "DNS:api.example.com")
        lab.leaf("h2server", "test-ca", "DNS:h2.example.com")
        d = lab.dir
        self.upstream = lab.nginx(UP, {"uri": "$request_uri", "x_api_key": "$http_x_api_key",
                                       "x_second": "$http_x_second", "conn": "$connection",
                                       "status": "$status", "proto": "$server_protocol"}, f"""\
            keepalive_requests 100000; keepalive_timeout 60s;
            server {{
              listen 203.0.113.10:443 ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "ok"; }}
              location /echo/ {{ echo "key=$http_x_api_key"; }}
              location /slow/ {{ echo_sleep 3; echo "key=$http_x_api_key"; }}
            }}
            server {{
              listen 203.0.113.11:443 ssl http2;
              ssl_certificate {d}/h2server.pem; ssl_certificate_key {d}/h2server.key;
              location / {{ echo "ok"; }}
              location /echo/ {{ echo "key=$http_x_api_key"; }}
              location /slow/ {{ echo_sleep 3; echo "key=$http_x_api_key"; }}
            }}
            """, workers=1, connections=1024)
        os.mkdir(self.path("home"))
        self.runs = 0

    def config(self, secrets):
        """A gateway config with these [[secret]] tables (TOML text)."""
        return textwrap.dedent(f"""\
            [network]
            egress = ["allow@203.0.113.0/24:tcp"]
            [[network.upstream_ca]]
            file = "{self.path('test-ca.pem')}"
            [gateway]
            home = "{self.path('home')}"
            """) + textwrap.dedent(secrets)

    def start(self, config_text):
        """Starts a gateway on this config; returns (process, proxy port, admin socket path)."""
        self.runs += 1
        n = self.runs
        self.config_path = self.lab.write(f"gw{n}.toml", config_text)
        self.stderr = f"gw{n}.stderr"
        self.admin = self.path(f"admin{n}.sock")
        p = self.lab.start(["ip", "netns", "exec", GW, AIRLOCK, "gateway", "--config", self.config_path,
                            "--proxy", "127.0.0.1:0", "--admin", f"unix:{self.admin}", "--admin-reload"],
                           self.stderr, stdout=subprocess.PIPE, text=True,
                           env=dict(os.environ, AIRLOCK_HOME=self.path("home")))
        line = p.stdout.readline()
        assert "ready" in line, self.errors()
        self.port = int(re.search(r"proxy=127\.0\.0\.1:(\d+)", line).group(1))
        sh(AIRLOCK, "ca", "export", self.path("gateway-ca.pem"), env=dict(os.environ, AIRLOCK_HOME=self.path("home")))
        self.proc = p
        return p

    def errors(self):
        return open(self.path(self.stderr)).read()

    def reload_signal(self):
        before = self.errors().count("airlock gateway: reload")
        self.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.errors().count("airlock gateway: reload") > before, "the reload's report")
        return self.errors().splitlines()[-1]

    def admin_get(self, path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.admin)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.partition(b"\r\n\r\n")[2].decode()

    def metrics(self):
        """The /metrics samples, parsed with python3-prometheus-client: {'name{labels}': value}."""
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for family in text_string_to_metric_families(self.admin_get("/metrics")):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
        return out

    def reload_admin(self):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.admin)
            s.sendall(b"POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body.decode()

    def request(self, marker, headers=(f"X-Api-Key: {PH}",)):
        args = ["ip", "netns", "exec", GW, "curl", "-sS", "--max-time", "15", "--cacert", self.path("gateway-ca.pem"),
                "-x", f"http://127.0.0.1:{self.port}"]
        for h in headers:
            args += ["-H", h]
        return subprocess.run(args + [f"https://api.example.com/{marker}"], capture_output=True, text=True, timeout=30)

    def one(self, marker):
        r = self.request(marker)
        assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
        [rec] = self.upstream.wait_received(f"/{marker}")
        return rec

    def check_outputs(self, *values):
        for v in values:
            assert_absent(v, self.errors(), "the gateway's stderr")


@pytest.fixture(scope="module")
def env():
    with Lab("airlock-reload-") as lab:
        yield Env(lab)


def secret_table(env_name, source, host="api.example.com"):
    """One [[secret]] table whose value comes from `source` ("file:PATH" or "cmd:...")."""
    return f"""\
[[secret]]
env = "{env_name}"
value_from = "{source}"
allow_hosts = ["{host}"]
"""


def secret_file(env, name, value):
    """Writes a value file the way a rotation does: a new file renamed over the old."""
    tmp = env.lab.write(name + ".tmp", value + "\n")
    os.rename(tmp, env.path(name))
    return env.path(name)


# The client loop: fresh connections (requests without a Session) and one keep-alive Session,
# bounded by a request count and a time limit; a request is tagged /after/ once the test says the
# reload is done. Every failure is counted, with its kind (never a value: the responses are "ok").
CLIENT = r"""
import os, sys, time, requests
proxy, ca, flag, done, limit = sys.argv[1:6]
proxies = {"https": "http://127.0.0.1:" + proxy}
session = requests.Session()
ok = failures = 0
kinds = set()
deadline = time.monotonic() + 60
for i in range(int(limit)):
    if os.path.exists(done) or time.monotonic() > deadline:
        break
    phase = "after" if os.path.exists(flag) else "before"
    for kind, get in (("fresh", requests.get), ("kept", session.get)):
        try:
            r = get(f"https://api.example.com/load/{phase}/{kind}/{i}", headers={"X-Api-Key": "$MSB_API_KEY"},
                    proxies=proxies, verify=ca, timeout=15)
            if r.status_code == 200 and r.text == "ok\n":
                ok += 1
            else:
                failures += 1; kinds.add(f"status {r.status_code}")
        except Exception as e:
            failures += 1; kinds.add(type(e).__name__)
print(ok, failures, sorted(kinds))
"""


def test_reload_under_load_rotates_the_value_without_a_failure(env):
    old, new = fake_value(), fake_value()
    value = secret_file(env, "load.value", old)
    env.start(env.config(secret_table("API_KEY", f"file:{value}")))
    client = env.lab.write("client.py", CLIENT)
    flag, done = env.path("load.after"), env.path("load.done")
    loop = subprocess.Popen(["ip", "netns", "exec", GW, PY, client, str(env.port), env.path("gateway-ca.pem"), flag,
                             done, "3000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: env.upstream.count("/load/before/fresh/") >= 20, "requests before the reload", timeout=30)
        secret_file(env, "load.value", new)  # the rotation: new file, then SIGHUP
        report = env.reload_signal()
        assert "reloaded" in report and "1 secret" in report, report
        open(flag, "w").close()
        wait_for(lambda: env.upstream.count("/load/after/fresh/") >= 20, "requests after the reload", timeout=30)
        open(done, "w").close()
        out, err = loop.communicate(timeout=60)
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()
    for v in (old, new):
        assert_absent(v, out + err, "the client's output")
    ok, failures, _ = out.split(" ", 2)
    assert int(failures) == 0 and loop.returncode == 0, out + err
    # nginx logs a request after answering it: the client may print its count first.
    wait_for(lambda: len(env.upstream.received("/load/")) >= int(ok), "the client's requests in the access log")
    records = env.upstream.received("/load/")
    assert int(ok) == len(records) >= 80
    assert all(r["status"] == "200" for r in records)
    # Fresh connections: the old value before the reload, only the new one after it.
    fresh_before = [r for r in records if "/before/fresh/" in r["uri"]]
    fresh_after = [r for r in records if "/after/fresh/" in r["uri"]]
    assert sum(r["x_api_key"] == old for r in fresh_before) >= 20
    for r in fresh_before:
        assert r["x_api_key"] in (old, new), "a fresh request carried neither value"
    for r in fresh_after:
        assert_equal_secret(r["x_api_key"], new, "a fresh connection after the reload")
    # The keep-alive connection was not dropped (one nginx connection throughout) and takes the new
    # snapshot at its next request: after the reload it carries only the new value.
    kept = [r for r in records if "/kept/" in r["uri"]]
    assert len({r["conn"] for r in kept}) == 1, "the keep-alive connection was dropped by the reload"
    assert sum("/after/" in r["uri"] for r in kept) >= 10
    assert sum(r["x_api_key"] == old for r in kept if "/before/" in r["uri"]) >= 10
    for r in kept:
        if "/after/" in r["uri"]:
            assert_equal_secret(r["x_api_key"], new, "the kept connection's requests after the reload")
        else:
            assert r["x_api_key"] in (old, new), "a kept request carried neither value"
    env.check_outputs(old, new)


def test_a_failed_reload_keeps_the_running_secrets(env):
    value = fake_value()
    path = secret_file(env, "keep.value", value)
    env.start(env.config(secret_table("API_KEY", f"file:{path}")))
    assert_equal_secret(env.one("keep/1")["x_api_key"], value, "before")
    # Each way a reload can fail: an empty value file, a missing one, a config that does not parse,
    # a value inline (the config error must not echo it).
    inline = fake_value()
    broken = [
        (lambda: open(path, "w").close(), "is empty"),
        (lambda: os.unlink(path), "cannot read"),
        (lambda: env.lab.write(os.path.basename(env.config_path), "[[secret]\n"), "not valid TOML"),
        (lambda: env.lab.write(os.path.basename(env.config_path), env.config(f"""\
            [[secret]]
            env = "API_KEY"
            value = "{inline}"
            """)), "inline values are not allowed"),
    ]
    for n, (breakit, why) in enumerate(broken):
        breakit()
        if n % 2:
            report = env.reload_signal()
        else:
            status, report = env.reload_admin()
            assert status == 422, report
        assert "reload failed, the running secrets stay" in report and why in report, report
        assert_absent(inline, report, "the reload's report")
        assert env.proc.poll() is None
        assert_equal_secret(env.one(f"keep/after-failure-{n}")["x_api_key"], value, "after a failed reload")
    env.check_outputs(value, inline)


def test_cmd_source_secrets_added_and_removed(env):
    first, second, other = fake_value(), fake_value(), fake_value()
    token = env.lab.write("token.txt", first)
    script = env.lab.write("get-token", f"#!/bin/sh\nexec cat {token}\n")
    os.chmod(script, 0o755)
    one = secret_table("API_KEY", f"cmd:{script}")
    env.start(env.config(one))
    assert_equal_secret(env.one("cmd/1")["x_api_key"], first, "the command's output")
    # The command's output changes: a reload over the admin listener picks it up.
    env.lab.write("token.txt", second)
    status, report = env.reload_admin()
    assert status == 200 and "reloaded" in report and "generation 2" in report, report
    assert_equal_secret(env.one("cmd/2")["x_api_key"], second, "after the command's output changed")
    # A secret added by a reload is substituted; the command fails: the reload is refused.
    other_file = secret_file(env, "other.value", other)
    env.lab.write(os.path.basename(env.config_path), env.config(one + secret_table("SECOND_KEY", f"file:{other_file}")))
    assert "2 secrets" in env.reload_signal()
    r = env.request("cmd/3", headers=(f"X-Api-Key: {PH}", f"X-Second: {PH2}"))
    assert r.returncode == 0, r.stderr
    [rec] = env.upstream.wait_received("/cmd/3")
    assert_equal_secret(rec["x_api_key"], second, "the first secret")
    assert_equal_secret(rec["x_second"], other, "the added secret")
    env.lab.write("get-token", f"#!/bin/sh\ncat {token}\nexit 1\n")
    status, report = env.reload_admin()
    assert status == 422 and "exited with status 1" in report and "API_KEY" in report, report
    assert_absent(second, report, "the reload's report")
    metrics = env.metrics()
    assert metrics['airlock_config_reloads_total{result="ok"}'] == 2
    assert metrics['airlock_config_reloads_total{result="failed"}'] == 1
    assert metrics["airlock_secrets_generation"] == 3
    # Removed: its placeholder is a violation from now on (the guest still holds it, and nothing
    # may carry it anywhere); a placeholder of no secret ever known passes as the text it is.
    env.lab.write(os.path.basename(env.config_path), env.config(one.replace('"API_KEY"', '"THIRD_KEY"')))
    env.lab.write("get-token", f"#!/bin/sh\nexec cat {token}\n")
    assert "reloaded" in env.reload_signal()
    for n, header in enumerate((f"X-Api-Key: {PH}", f"X-Second: {PH2}")):
        r = env.request(f"cmd/4/{n}", headers=(header,))
        assert r.returncode != 0
        env.upstream.assert_not_received(f"/cmd/4/{n}")
    wait_for(lambda: "secret violation, secret SECOND_KEY" in env.errors(), "the violation's warning")
    assert "removed by a reload" in env.errors()
    r = env.request("cmd/5", headers=("X-Api-Key: $MSB_NEVER_KNOWN",))
    assert r.returncode == 0, r.stderr
    [rec] = env.upstream.wait_received("/cmd/5")
    assert rec["x_api_key"] == "$MSB_NEVER_KNOWN"
    env.check_outputs(first, second, other)


# One keep-alive connection through the proxy (http.client with a CONNECT tunnel), driven line by
# line: {"op": "get"|"send"|"read", "path": ..., "headers": {...}} in, one JSON result out. The
# response bodies may hold what the upstream echoed: they stay in the test, never printed.
KEPT = r"""
import http.client, json, ssl, sys
port, ca = sys.argv[1:3]
conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca), timeout=20)
conn.set_tunnel("api.example.com", 443)
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["op"] in ("get", "send"):
            conn.putrequest("GET", cmd["path"])
            for k, v in cmd.get("headers", {}).items():
                conn.putheader(k, v)
            conn.endheaders()
        out = {"sent": True}
        if cmd["op"] in ("get", "read"):
            r = conn.getresponse()
            out = {"status": r.status, "body": r.read().decode()}
    except Exception as e:
        out = {"error": type(e).__name__}
    print(json.dumps(out), flush=True)
"""


class Kept:
    def __init__(self, env):
        script = env.lab.write("kept.py", KEPT)
        self.proc = subprocess.Popen(["ip", "netns", "exec", GW, PY, script, str(env.port), env.path("gateway-ca.pem")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def do(self, op, path=None, headers=None):
        self.proc.stdin.write(json.dumps({"op": op, "path": path, "headers": headers or {}}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the kept client ended"
        return json.loads(line)

    def get(self, path, headers=None):
        return self.do("get", path, headers)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def kept(env):
    clients = []

    def make():
        clients.append(Kept(env))
        return clients[-1]
    yield make
    for c in clients:
        c.close()


def substitutions(env):
    """Placeholders swapped so far: a request counted here left with the value of that moment
    (a fixed sleep assumed the gateway had sent the slow request before the reload)."""
    return env.metrics().get("airlock_substitutions_total", 0)


def masked_echo(r, *values):
    """The upstream's echo of the X-Api-Key it received, as the guest got it: masked, never a value."""
    __tracebackhide__ = True
    assert r.get("status") == 200, {k: v for k, v in r.items() if k != "body"}
    for v in values:
        assert_absent(v, r["body"], "the guest's response")
    assert r["body"].startswith("key=") and "*" * 16 in r["body"], "the echo was not masked"


def test_a_kept_alive_connection_takes_the_new_value_at_its_next_request(env, kept):
    old, new = fake_value(), fake_value()
    value = secret_file(env, "kept.value", old)
    env.start(env.config(secret_table("API_KEY", f"file:{value}")))
    client = kept()
    assert client.get("/ka/1/", {"X-Api-Key": PH}) == {"status": 200, "body": "ok\n"}
    [first] = env.upstream.wait_received("/ka/1/")
    assert_equal_secret(first["x_api_key"], old, "before the reload")
    secret_file(env, "kept.value", new)
    assert "reloaded" in env.reload_signal()
    # The same connection (nginx sees one), the new value from its next request on.
    assert client.get("/ka/2/", {"X-Api-Key": PH}) == {"status": 200, "body": "ok\n"}
    [second] = env.upstream.wait_received("/ka/2/")
    assert second["conn"] == first["conn"], "the keep-alive connection was dropped"
    assert_equal_secret(second["x_api_key"], new, "a kept connection's request after the reload")
    # Its echo is masked for the new value too.
    masked_echo(client.get("/echo/ka/3/", {"X-Api-Key": PH}), old, new)
    [third] = env.upstream.wait_received("/echo/ka/3/")
    assert third["conn"] == first["conn"]
    assert_equal_secret(third["x_api_key"], new, "the echoed request")
    env.check_outputs(old, new)


def test_an_echo_of_the_old_value_after_the_swap_is_still_masked(env, kept):
    old, new = fake_value(), fake_value()
    value = secret_file(env, "echo.value", old)
    env.start(env.config(secret_table("API_KEY", f"file:{value}")))
    client = kept()
    assert client.get("/kept/echo-1", {"X-Api-Key": PH})["status"] == 200
    # A request leaves with the old value; the upstream takes 3 s to echo it. The swap happens in
    # between, and the request after it (same connection) carries the new one.
    swapped = substitutions(env)
    assert client.do("send", "/slow/echo-2", {"X-Api-Key": PH}) == {"sent": True}
    wait_for(lambda: substitutions(env) > swapped, "the slow request's substitution (before the reload)")
    secret_file(env, "echo.value", new)
    assert "reloaded" in env.reload_signal()
    masked_echo(client.do("read"), old, new)
    [slow] = env.upstream.wait_received("/slow/echo-2")
    assert_equal_secret(slow["x_api_key"], old, "the request sent before the reload")
    masked_echo(client.get("/echo/echo-3", {"X-Api-Key": PH}), old, new)
    [after] = env.upstream.wait_received("/echo/echo-3")
    assert after["conn"] == slow["conn"], "the keep-alive connection was dropped"
    assert_equal_secret(after["x_api_key"], new, "the request after the reload")
    env.check_outputs(old, new)


def test_a_secret_removed_by_reload_is_a_violation_on_the_kept_connection(env, kept):
    first, second = fake_value(), fake_value()
    a, b = secret_file(env, "rm-a.value", first), secret_file(env, "rm-b.value", second)
    both = secret_table("API_KEY", f"file:{a}")
    env.start(env.config(both + secret_table("SECOND_KEY", f"file:{b}")))
    client = kept()
    assert client.get("/rm/1", {"X-Api-Key": PH, "X-Second": PH2})["status"] == 200
    [rec] = env.upstream.wait_received("/rm/1")
    assert_equal_secret(rec["x_second"], second, "before the removal")
    env.lab.write(os.path.basename(env.config_path), env.config(both))
    assert "1 secret" in env.reload_signal()
    # The kept connection still works for the secret that stays...
    assert client.get("/rm/2", {"X-Api-Key": PH})["status"] == 200
    [rec] = env.upstream.wait_received("/rm/2")
    assert_equal_secret(rec["x_api_key"], first, "the secret that stays")
    # ...and the removed one's placeholder is a violation there: reset, never sent.
    r = client.get("/rm/3", {"X-Second": PH2})
    assert "error" in r, r
    wait_for(lambda: "secret violation, secret SECOND_KEY" in env.errors(), "the violation's warning")
    env.upstream.assert_not_received("/rm/3")
    env.check_outputs(first, second)


# One HTTP/2 connection through the proxy (python3-h2 over a CONNECT tunnel, ALPN h2), its
# streams driven line by line: {"op": "open", "path": ..., "headers": {...}} sends a GET on a new
# stream and answers {"stream": id, "alpn": ...}; {"op": "read", "stream": id} waits for that
# stream's end and answers {"status": ..., "body": ...} or {"error": ...}. Bodies stay in the test.
H2KEPT = r"""
import json, socket, ssl, sys
import h2.config, h2.connection, h2.events
port, ca = sys.argv[1:3]
sock = socket.create_connection(("127.0.0.1", int(port)), timeout=20)
sock.sendall(b"CONNECT h2.example.com:443 HTTP/1.1\r\nHost: h2.example.com:443\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    chunk = sock.recv(1)
    if not chunk:
        sys.exit("the proxy closed the tunnel")
    head += chunk
assert head.split(b" ")[1] == b"200", "CONNECT refused"
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["h2"])
tls = ctx.wrap_socket(sock, server_hostname="h2.example.com")
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
tls.sendall(conn.data_to_send())
streams = {}

def read_until(sid):
    while not streams[sid]["done"]:
        data = tls.recv(65536)
        if not data:
            for s in streams.values():
                s["done"] = True; s.setdefault("error", "closed")
            break
        for ev in conn.receive_data(data):
            s = streams.get(getattr(ev, "stream_id", 0))
            if isinstance(ev, h2.events.ResponseReceived) and s is not None:
                s["status"] = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived) and s is not None:
                s["body"] += ev.data.decode()
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and s is not None:
                s["done"] = True
            elif isinstance(ev, h2.events.StreamReset) and s is not None:
                s["done"] = True; s["error"] = "reset"
            elif isinstance(ev, h2.events.ConnectionTerminated):
                for x in streams.values():
                    x["done"] = True; x.setdefault("error", "goaway")
        tls.sendall(conn.data_to_send())

for line in sys.stdin:
    cmd = json.loads(line)
    try:
        if cmd["op"] == "open":
            sid = conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":scheme", "https"), (":authority", "h2.example.com"), (":path", cmd["path"])]
            headers += [(k.lower(), v) for k, v in cmd.get("headers", {}).items()]
            conn.send_headers(sid, headers, end_stream=True)
            tls.sendall(conn.data_to_send())
            streams[sid] = {"done": False, "body": ""}
            out = {"stream": sid, "alpn": tls.selected_alpn_protocol()}
        else:
            sid = cmd["stream"]
            read_until(sid)
            s = streams.pop(sid)
            out = {"error": s["error"]} if "error" in s else {"status": s.get("status"), "body": s["body"]}
    except Exception as e:
        out = {"error": type(e).__name__}
    print(json.dumps(out), flush=True)
"""


class H2Kept(Kept):
    def __init__(self, env):
        script = env.lab.write("h2kept.py", H2KEPT)
        self.proc = subprocess.Popen(["ip", "netns", "exec", GW, PY, script, str(env.port), env.path("gateway-ca.pem")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def open(self, path, headers):
        self.proc.stdin.write(json.dumps({"op": "open", "path": path, "headers": headers}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the h2 client ended"
        out = json.loads(line)
        assert out.get("alpn") == "h2", out
        return out["stream"]

    def read(self, stream):
        self.proc.stdin.write(json.dumps({"op": "read", "stream": stream}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the h2 client ended"
        return json.loads(line)


def test_an_http2_connection_takes_the_new_value_on_its_next_stream(env):
    # gRPC channels and HTTP/2 clients keep one connection for hours: a reload must reach the
    # streams they open after it, while a stream opened before it keeps its value (and its echo
    # of that value is still masked).
    old, new, second = fake_value(), fake_value(), fake_value()
    value, other = secret_file(env, "h2.value", old), secret_file(env, "h2-second.value", second)
    kept_secret = secret_table("API_KEY", f"file:{value}", "h2.example.com")
    env.start(env.config(kept_secret + secret_table("SECOND_KEY", f"file:{other}", "h2.example.com")))
    client = H2Kept(env)
    try:
        assert client.read(client.open("/h2/1/", {"X-Api-Key": PH})) == {"status": 200, "body": "ok\n"}
        [first] = env.upstream.wait_received("/h2/1/")
        assert first["proto"] == "HTTP/2.0", first["proto"]
        assert_equal_secret(first["x_api_key"], old, "before the reload")
        # A stream leaves with the old value; the upstream takes 3 s to echo it; the swap happens
        # in between (API_KEY rotated, SECOND_KEY removed); the stream opened after it (same
        # connection) carries the new value.
        swapped = substitutions(env)
        slow = client.open("/slow/h2-2", {"X-Api-Key": PH})
        wait_for(lambda: substitutions(env) > swapped, "the slow stream's substitution (before the reload)")
        secret_file(env, "h2.value", new)
        env.lab.write(os.path.basename(env.config_path), env.config(kept_secret))
        assert "1 secret" in env.reload_signal()
        masked_echo(client.read(client.open("/echo/h2-3", {"X-Api-Key": PH})), old, new)
        [after] = env.upstream.wait_received("/echo/h2-3")
        assert after["conn"] == first["conn"] and after["proto"] == "HTTP/2.0", "the HTTP/2 connection was not kept"
        assert_equal_secret(after["x_api_key"], new, "a stream opened after the reload")
        masked_echo(client.read(slow), old, new)
        [before] = env.upstream.wait_received("/slow/h2-2")
        assert before["conn"] == first["conn"]
        assert_equal_secret(before["x_api_key"], old, "the stream opened before the reload")
        # The removed secret's placeholder on a new stream: a violation, reset, never sent.
        assert client.read(client.open("/h2-4", {"X-Second": PH2})) == {"error": "reset"}
        wait_for(lambda: "secret violation, secret SECOND_KEY" in env.errors(), "the violation's warning")
        env.upstream.assert_not_received("/h2-4")
    finally:
        client.close()
    env.check_outputs(old, new, second)
