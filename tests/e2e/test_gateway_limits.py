"""`airlock gateway` under hostile load and faults (issue 12 §6 and §8), written as attacks.

  client netns 192.0.2.2 (+ .3) ──veth── 192.0.2.1  gateway netns  198.51.100.1 ──veth── 198.51.100.2  upstream netns
                                        transparent :15001 (nftables redirect of TCP 443)     python servers:
                                                                                               .20 api.limits.test (TLS, HTTP)
                                                                                               .21 fin.limits.test (TLS, bare FIN)
                                                                                               .22 sink (plain TCP, records bytes)

Each class was seen to succeed against the gateway before its fix: an unparseable ClientHello
was spliced (the guest reached the upstream uninspected); a TLS response ended by a bare FIN
reached the guest as a clean close_notify; a half-sent request head held its connection for the
300 s idle timeout; one client's connections took every descriptor so other clients were
refused; with the audit log's disk full, substitutions went on unrecorded and a short write left
a torn record.
"""
import json
import os
import socket
import struct
import subprocess
import textwrap
import time

import pytest

from netlab import Lab, TAG, assert_absent, assert_equal_secret, in_ns, json_lines, run_clean, sh, wait_for, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "")
FAKE = "fake-limits-value-5c2e8"
PH = "$MSB_API_KEY"
CL, GW, UP = f"allc{TAG}", f"allg{TAG}", f"allu{TAG}"
PY = "/usr/bin/python3"
API, FIN, SINK = "203.0.113.20", "203.0.113.21", "203.0.113.22"
HOSTS = {"api.limits.test": API, "fin.limits.test": FIN, "sink.limits.test": SINK}

assert os.geteuid() == 0 and AIRLOCK, "these tests need root and AIRLOCK_BIN"

SERVERS = r'''
import json, socket, ssl, sys, threading
d = sys.argv[1]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/server.pem", d + "/server.key")
lock = threading.Lock()
def log(name, record):
    with lock, open(d + "/" + name, "a") as f:
        f.write(json.dumps(record) + "\n")
def listen(address, port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, port)); s.listen(1024)
    return s
def read_head(t, buf):
    while b"\r\n\r\n" not in buf:
        part = t.recv(65536)
        if not part: return None, buf
        buf += part
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest
def api_conn(c):  # HTTP/1.1 over TLS, keep-alive; logs each request (uri, x-api-key, body)
    try:
        t = ctx.wrap_socket(c, server_side=True)
        buf = b""
        while True:
            head, buf = read_head(t, buf)
            if head is None: break
            lines = head.decode("latin-1").split("\r\n")
            fields = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
            n = int(fields.get("content-length", "0"))
            while len(buf) < n:
                part = t.recv(65536)
                if not part: break
                buf += part
            body, buf = buf[:n], buf[n:]
            log("api.jsonl", {"uri": lines[0].split(" ")[1], "x_api_key": fields.get("x-api-key", ""),
                              "body": body.decode("latin-1")})
            t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    except Exception:
        pass
    finally:
        c.close()
def fin_conn(c):  # answers without Content-Length, then ends TCP without close_notify
    try:
        t = ctx.wrap_socket(c, server_side=True)
        read_head(t, b"")
        t.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial")
        t.shutdown(socket.SHUT_RDWR)  # SSLSocket.shutdown: a TCP FIN, no close_notify
    except Exception:
        pass
    finally:
        c.close()
def sink_conn(c):  # plain TCP: records what reached the upstream
    n = 0
    try:
        c.settimeout(30)
        while True:
            part = c.recv(65536)
            if not part: break
            n += len(part)
    except Exception:
        pass
    log("sink.jsonl", {"bytes": n})
    c.close()
def serve(s, handler):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
for address, handler in ((sys.argv[2], api_conn), (sys.argv[3], fin_conn), (sys.argv[4], sink_conn)):
    threading.Thread(target=serve, args=(listen(address, 443), handler), daemon=True).start()
threading.Event().wait()
'''


class Env:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path

    def setup(self):
        for ns in (CL, GW, UP):
            self.lab.netns(ns)
        self.lab.veth(f"vlc{TAG}", f"vlg{TAG}", CL, GW)
        self.lab.veth(f"vlh{TAG}", f"vlu{TAG}", GW, UP)
        for ns, cmds in (
            (CL, [("addr", "add", "192.0.2.2/24", "dev", f"vlc{TAG}"), ("addr", "add", "192.0.2.3/24", "dev", f"vlc{TAG}"),
                  # Used by the budget test alone (below).
                  ("addr", "add", "192.0.2.4/24", "dev", f"vlc{TAG}"), ("addr", "add", "192.0.2.5/24", "dev", f"vlc{TAG}"),
                  ("link", "set", f"vlc{TAG}", "up"), ("route", "add", "default", "via", "192.0.2.1")]),
            (GW, [("addr", "add", "192.0.2.1/24", "dev", f"vlg{TAG}"), ("link", "set", f"vlg{TAG}", "up"),
                  ("addr", "add", "198.51.100.1/24", "dev", f"vlh{TAG}"), ("link", "set", f"vlh{TAG}", "up"),
                  ("route", "add", "203.0.113.0/24", "via", "198.51.100.2")]),
            (UP, [("addr", "add", "198.51.100.2/24", "dev", f"vlu{TAG}"), ("link", "set", f"vlu{TAG}", "up"),
                  ("route", "add", "default", "via", "198.51.100.1")] +
                 [("addr", "add", f"{ip}/32", "dev", "lo") for ip in HOSTS.values()]),
        ):
            for cmd in cmds:
                in_ns(ns, "ip", *cmd)
        in_ns(GW, "nft", "-f", self.lab.write("nft.conf", textwrap.dedent(f"""\
            table ip airlock_limits {{
              chain prerouting {{
                type nat hook prerouting priority dstnat; policy accept;
                iifname "vlg{TAG}" ip daddr != 192.0.2.1 tcp dport 443 redirect to :15001
              }}
            }}
            """)))
        hosts = "127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in HOSTS.items())
        self.lab.netns_file(CL, "hosts", hosts)
        self.lab.netns_file(GW, "hosts", hosts)
        self.lab.ca("test-ca")
        self.lab.leaf("server", "test-ca", ",".join(f"DNS:{n}" for n in HOSTS))
        self.lab.start(["ip", "netns", "exec", UP, PY, "-c", SERVERS, self.lab.dir, API, FIN, SINK], "servers.stderr")
        wait_listening(UP, [f"{ip}:443" for ip in HOSTS.values()], "upstream servers listening")
        self.gateway = self.start_gateway("main")
        sh(AIRLOCK, "ca", "export", self.path("gateway-ca.pem"), env=self.gateway_env())

    def write_config(self, name, extra=""):
        return self.lab.write(f"{name}.toml", textwrap.dedent(f"""\
            [network]
            egress = ["allow@203.0.113.0/24:tcp"]
            [[network.upstream_ca]]
            file = "{self.path('test-ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_LIMITS_KEY"
            allow_hosts = ["api.limits.test"]
            inject = {{ headers = true, body = true }}

            [gateway]
            resolve_pins_with_host_dns = true
            home = "{self.path('home')}"
            """) + textwrap.dedent(extra))

    def gateway_env(self):
        return dict(os.environ, AIRLOCK_E2E_LIMITS_KEY=FAKE, AIRLOCK_HOME=self.path("home"))

    def start_gateway(self, name, extra="", audit=None, port=15001, prefix=()):
        audit = audit or self.path(f"{name}-audit.jsonl")
        args = [*prefix, "ip", "netns", "exec", GW, AIRLOCK, "gateway", "--config", self.write_config(name, extra),
                "--transparent", f"0.0.0.0:{port}", "--audit-log", audit, "--log-level", "info"]
        p = self.lab.start(args, f"{name}.stderr", stdout=subprocess.PIPE, env=self.gateway_env(), text=True)
        line = p.stdout.readline()
        assert line.startswith("airlock gateway ready "), line
        return p

    def stderr(self, name):
        with open(self.path(f"{name}.stderr")) as f:
            text = f.read()
        assert_absent(FAKE, text, f"{name}.stderr")
        return text

    def records(self, name):
        try:
            with open(self.path(name)) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        assert_absent(FAKE, text, name)
        return json_lines(text)

    def upstream(self, marker):
        """What the api upstream received (it holds the value: never print it)."""
        try:
            with open(self.path("api.jsonl")) as f:
                return [rec for rec in json_lines(f.read()) if rec["uri"].startswith(marker)]
        except FileNotFoundError:
            return []

    def audit(self, name="main"):
        return self.records(f"{name}-audit.jsonl")

    def python(self, code, timeout=60, source=None):
        return run_clean(FAKE, ["ip", "netns", "exec", CL, PY, "-c", textwrap.dedent(code), self.path("gateway-ca.pem"),
                                source or "192.0.2.2"], "a client's output", timeout=timeout)


@pytest.fixture(scope="module")
def env():
    with Lab("airlock-limits-") as lab:
        e = Env(lab)
        e.setup()
        yield e
        for name in os.listdir(lab.dir):
            if name.endswith((".stderr", ".jsonl")) and name != "api.jsonl":
                with open(lab.path(name), errors="replace") as f:
                    assert_absent(FAKE, f.read(), name)


# ---------------------------------------------------------------- ClientHello shapes (§6)


def record(body, version=b"\x03\x01"):
    return b"\x16" + version + struct.pack(">H", len(body)) + body


def hello(extensions, *, ext_len_delta=0):
    """A ClientHello handshake message with `extensions` (already encoded)."""
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" +
            struct.pack(">H", len(extensions) + ext_len_delta) + extensions)
    return b"\x01" + struct.pack(">I", len(body))[1:] + body


def ext(kind, data):
    return struct.pack(">HH", kind, len(data)) + data


def sni(name):
    entry = b"\x00" + struct.pack(">H", len(name)) + name
    return ext(0, struct.pack(">H", len(entry)) + entry)


OVERSIZE = hello(sni(b"api.limits.test") + ext(21, b"\x00" * 17000))  # padding past the 16 KiB peek bound
SHAPES = {
    "bad-sni-bytes": record(hello(sni(b"api.limits.test\x00evil"))),
    "sni-with-a-space": record(hello(sni(b"api limits.test"))),
    "truncated-extensions": record(hello(sni(b"api.limits.test"), ext_len_delta=7)),
    "duplicate-extension": record(hello(sni(b"api.limits.test") + sni(b"api.limits.test"))),
    "oversize": record(OVERSIZE[:16000]) + record(OVERSIZE[16000:]),
    "not-a-client-hello": record(b"\x02\x00\x00\x04\x03\x03\x00\x00"),
    "ssh-banner": b"SSH-2.0-OpenSSH_9.2p1\r\n",
    "sslv2-hello": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x00" * 37,
    "application-data-record": b"\x17\x03\x03\x00\x05hello",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_an_uninspectable_first_flight_on_an_intercepted_port_is_refused(env, shape):
    # Sent to the sink's address: before the fix the gateway spliced these bytes to it.
    r = env.python(f"""
        import errno, socket, sys, time
        s = socket.create_connection(("{SINK}", 443), timeout=10)
        try:
            s.sendall({SHAPES[shape]!r})
            s.shutdown(socket.SHUT_WR)
            print("closed" if s.recv(100) == b"" else "answered")
        except ConnectionResetError:
            print("reset")
        except OSError as e:  # ENOTCONN: the reset arrived before our shutdown
            print("reset" if e.errno == errno.ENOTCONN else repr(e))
    """)
    assert r.stdout.strip() == "reset", (shape, r.stdout, r.stderr)
    time.sleep(0.3)
    assert env.records("sink.jsonl") == [], f"{shape}: bytes reached the upstream"
    wait_for(lambda: any(c["event"] == "connection" and c["destination"] == f"{SINK}:443"
                         and c["decision"].startswith("refused_") for c in env.audit()), "the refusal's record")
    refusals = [c for c in env.audit() if c["event"] == "connection" and c["decision"].startswith("refused_")]
    expected = "refused_not_tls" if shape in ("ssh-banner", "sslv2-hello", "application-data-record") else "refused_unparsed_tls"
    assert refusals[-1]["decision"] == expected, refusals[-1]
    assert "refused" in env.stderr("main")


def test_a_real_tls_client_with_an_sni_the_parser_rejects_gets_no_tunnel(env):
    # openssl s_client sends any -servername: before the fix the hello was spliced and the client
    # completed its handshake with the upstream itself (its real certificate), uninspected.
    r = run_clean(FAKE, ["ip", "netns", "exec", CL, "timeout", "20", "openssl", "s_client", "-quiet", "-connect",
                         f"{API}:443", "-servername", "api!limits.test", "-CAfile", env.path("test-ca.pem"),
                         "-verify_return_error"], "s_client", input="GET /tunnel HTTP/1.1\r\nHost: api.limits.test\r\n"
                                                                     "Connection: close\r\n\r\n", timeout=30)
    assert "HTTP/1.1 200" not in r.stdout, r.stdout
    time.sleep(0.3)
    assert not env.upstream("/tunnel")


def test_a_parsed_hello_is_still_intercepted(env):
    r = env.python(f"""
        import socket, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[1])
        t = ctx.wrap_socket(socket.create_connection(("{API}", 443), timeout=10), server_hostname="api.limits.test")
        t.sendall(b"GET /parsed HTTP/1.1\\r\\nHost: api.limits.test\\r\\nX-Api-Key: {PH}\\r\\nConnection: close\\r\\n\\r\\n")
        print(t.recv(100).split(b"\\r\\n")[0].decode())
    """)
    assert r.stdout.strip() == "HTTP/1.1 200 OK", r.stderr
    (rec,) = env.upstream("/parsed")
    assert_equal_secret(rec["x_api_key"], FAKE, "X-Api-Key")


# ---------------------------------------------------------------- §8 (e) truncation


def test_a_response_ended_by_a_bare_fin_is_not_a_clean_close(env):
    r = env.python(f"""
        import socket, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[1])
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # Python sets it: a bare FIN would read as a clean end
        raw = socket.create_connection(("{FIN}", 443), timeout=10)
        t = ctx.wrap_socket(raw, server_hostname="fin.limits.test", suppress_ragged_eofs=False)
        t.sendall(b"GET /fin HTTP/1.1\\r\\nHost: fin.limits.test\\r\\n\\r\\n")
        data = b""
        try:
            while True:
                part = t.recv(4096)
                if not part:
                    print("clean close_notify", data.decode()); break
                data += part
        except ssl.SSLError as e:  # UNEXPECTED_EOF_WHILE_READING: no close_notify came
            print("truncated" if "EOF" in str(e) else repr(e), data.decode().split("\\r\\n\\r\\n")[1])
        except ConnectionResetError:
            print("reset")
    """)
    assert r.stdout.strip() in ("truncated partial", "reset"), (r.stdout, r.stderr,
                                                                [(c.get("decision"), c.get("detail")) for c in env.audit() if c.get("sni") == "fin.limits.test"])
    wait_for(lambda: any(c["event"] == "connection" and "without close_notify" in c.get("detail", "")
                         for c in env.audit()), "the truncation in the connection record")


# ---------------------------------------------------------------- §8 (b) head deadline


def test_a_stalled_request_head_is_cut_at_its_deadline(env):
    # Half a head, then silence: before the fix the connection was held for the 300 s idle timeout.
    r = env.python(f"""
        import socket, ssl, sys, time
        ctx = ssl.create_default_context(cafile=sys.argv[1])
        conns = []
        for i in range(50):
            t = ctx.wrap_socket(socket.create_connection(("{API}", 443), timeout=30), server_hostname="api.limits.test")
            t.sendall(b"GET /slow HTTP/1.1\\r\\nHost: api.limits.test\\r\\nX-Slow: ")
            conns.append(t)
        start = time.monotonic()
        ends = []
        for t in conns:
            try:
                t.recv(100)
            except OSError:
                pass
            ends.append(time.monotonic() - start)
        print(round(max(ends), 1))
    """, timeout=150)
    waited = float(r.stdout.strip())
    # The head deadline is 10 s, the idle timeout it replaced 300 s: the bound tells them apart
    # with room for a loaded machine's stalls (it was 15 s).
    assert waited < 60, f"stalled heads were held {waited} s"
    # A connection's record is written as it ends, which the client may see first.
    head_records = lambda: [c for c in env.audit() if c["event"] == "connection" and "request head" in c.get("detail", "")]
    wait_for(lambda: len(head_records()) >= 50, "the 50 connection records")
    assert all(c["decision"] == "timeout" for c in head_records())


# ---------------------------------------------------------------- §8 (a) connection caps


def test_one_client_cannot_take_every_descriptor(env):
    # The gateway may hold 300 descriptors. One client opens 400 connections that stall in their
    # first flight; before the fix they took every descriptor and the other client was refused.
    env.start_gateway("fds", port=15002, prefix=("prlimit", "--nofile=300:300"))
    in_ns(GW, "nft", "add", "table", "ip", "airlock_limits_fds")
    in_ns(GW, "nft", "add", "chain", "ip", "airlock_limits_fds", "pre",
          "{ type nat hook prerouting priority dstnat - 1; policy accept; }")
    in_ns(GW, "nft", "add", "rule", "ip", "airlock_limits_fds", "pre", f'iifname "vlg{TAG}"', "ip", "daddr", API,
          "tcp", "dport", "443", "redirect", "to", ":15002")
    try:
        hog = subprocess.Popen(["ip", "netns", "exec", CL, PY, "-c", textwrap.dedent(f"""
            import socket, sys, time
            held = []
            first = time.monotonic()  # before the first connection: none of their deadlines starts earlier
            for i in range(400):
                try:
                    s = socket.create_connection(("{API}", 443), timeout=5, source_address=("192.0.2.2", 0))
                    s.sendall(b"\\x16\\x03\\x01\\x02\\x00\\x01")  # a ClientHello that never finishes
                    held.append(s)
                except OSError:
                    pass
            print("open", first, flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
        try:
            word, first = hog.stdout.readline().split()
            assert word == "open"
            r = env.python(f"""
                import socket, ssl, sys, time
                start = time.monotonic()
                ctx = ssl.create_default_context(cafile=sys.argv[1])
                s = socket.create_connection(("{API}", 443), timeout=20, source_address=(sys.argv[2], 0))
                t = ctx.wrap_socket(s, server_hostname="api.limits.test")
                t.sendall(b"GET /light HTTP/1.1\\r\\nHost: api.limits.test\\r\\nConnection: close\\r\\n\\r\\n")
                print(t.recv(100).split(b"\\r\\n")[0].decode())
                print(round(time.monotonic() - start, 1), time.monotonic())
            """, source="192.0.2.3")
            status, times = r.stdout.split("\n")[:2]
            seconds, answered = times.split()
            assert status == "HTTP/1.1 200 OK", r.stdout + r.stderr
            # Before the fix it waited in the accept queue until the hog's first flights timed out
            # (10 s after each began): answered before the first of them could have, it was served
            # while the hog held every connection it got. (A fixed 3 s bound from its own start
            # also counted a loaded machine's stalls.) Both clocks are the same CLOCK_MONOTONIC.
            assert float(answered) < float(first) + 10, f"the other client waited {seconds} s"
        finally:
            hog.kill()
            hog.wait()
    finally:
        in_ns(GW, "nft", "delete", "table", "ip", "airlock_limits_fds", check=False)
    refused = [c for c in env.audit("fds") if c["event"] == "refused"]
    assert refused and all(c["client"].startswith("192.0.2.2:") for c in refused)
    assert "Too many open files" not in env.stderr("fds")


# ---------------------------------------------------------------- §8 (d) audit log full


def test_a_full_audit_log_blocks_substitutions_and_recovers(env):
    fs = env.path("auditfs")
    os.mkdir(fs)
    sh("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", fs)
    env.lab._undo.append(lambda: sh("umount", "-l", fs, check=False))
    audit = os.path.join(fs, "audit.jsonl")
    env.start_gateway("full", port=15003, audit=audit)
    in_ns(GW, "nft", "add", "table", "ip", "airlock_limits_full")
    in_ns(GW, "nft", "add", "chain", "ip", "airlock_limits_full", "pre",
          "{ type nat hook prerouting priority dstnat - 1; policy accept; }")
    in_ns(GW, "nft", "add", "rule", "ip", "airlock_limits_full", "pre", f'iifname "vlg{TAG}"', "ip", "daddr", API,
          "tcp", "dport", "443", "redirect", "to", ":15003")
    client = f"""
        import socket, ssl, sys
        ctx = ssl.create_default_context(cafile=sys.argv[1])
        ok = 0
        for i in range(int(sys.argv[3])):
            try:
                t = ctx.wrap_socket(socket.create_connection(("{API}", 443), timeout=10), server_hostname="api.limits.test")
                t.sendall(b"GET /full-%s-%d HTTP/1.1\\r\\nHost: api.limits.test\\r\\nX-Api-Key: {PH}\\r\\n"
                          b"Connection: close\\r\\n\\r\\n" % (sys.argv[4].encode(), i))
                ok += t.recv(100).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
        print(ok)
    """

    def run(count, phase):
        return run_clean(FAKE, ["ip", "netns", "exec", CL, PY, "-c", textwrap.dedent(client), env.path("gateway-ca.pem"),
                                "192.0.2.2", str(count), phase], "a client", timeout=120)

    try:
        assert run(3, "before").stdout.strip() == "3"  # the log's last page is partly used
        filler = os.path.join(fs, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1k"], capture_output=True)  # until ENOSPC
        r = run(40, "full")
        received = env.upstream("/full-full-")
        # Some records still fit the log's last page; past it, no substitution leaves unrecorded.
        with open(audit) as f:
            lines = f.read().splitlines()
        written = [json.loads(line) for line in lines]  # every line whole: no torn record
        subs = [x for x in written if x["event"] == "substitution"]
        assert len(received) == len(subs) - 3 < 40, (len(received), len(subs), r.stdout)
        assert int(r.stdout) == len(received)
        err = env.stderr("full")
        assert "cannot write the audit log" in err and "substitutions are blocked" in err
        os.remove(filler)  # space returns
        r = run(5, "after")
        assert r.stdout.strip() == "5", r.stdout + r.stderr
        with open(audit) as f:
            written = [json.loads(line) for line in f.read().splitlines()]
        lost = [x for x in written if x["event"] == "audit_lost"]
        assert len(lost) == 1 and lost[0]["lost"] >= 40 - len(subs), lost
        assert len([x for x in written if x["event"] == "substitution"]) == len(subs) + 5
        assert "the audit log is written again" in env.stderr("full")
    finally:
        in_ns(GW, "nft", "delete", "table", "ip", "airlock_limits_full", check=False)


# ---------------------------------------------------------------- §8 (c) standalone budget


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_stalled_uploads_are_bounded_per_client_and_in_total(env):
    # 20 uploads of declared 16,000,000-byte bodies to the body-injected host, 15 MB sent each,
    # then stalled. Before the budget the gateway held all of them (~290 MiB); now one client
    # may make it hold 48 MiB, the gateway 64 MiB, and another client still gets its request in.
    mib = 1 << 20
    gw = env.start_gateway("budget", port=15004, extra=f"""\
        memory_budget = {64 * mib}
        client_memory_budget = {48 * mib}
        """)
    in_ns(GW, "nft", "add", "table", "ip", "airlock_limits_budget")
    in_ns(GW, "nft", "add", "chain", "ip", "airlock_limits_budget", "pre",
          "{ type nat hook prerouting priority dstnat - 1; policy accept; }")
    in_ns(GW, "nft", "add", "rule", "ip", "airlock_limits_budget", "pre", f'iifname "vlg{TAG}"', "ip", "daddr", API,
          "tcp", "dport", "443", "redirect", "to", ":15004")
    # `ip netns exec` execs the gateway: the same pid.
    baseline = rss(gw.pid)
    # What the kernel buffers is outside the gateway's budget. With this namespace's default
    # (autotuned up to 32 MB per socket) a gateway that reads fast grows its receive windows
    # enough for a 4th client to push its whole 15 MB into kernel buffers before the gateway, still
    # reading, blocks it; the client then counts it as held. Bounded here, the counts below measure
    # the gateway's budget alone.
    # The clients come from addresses no other test uses (192.0.2.4 and .5). A flow of an earlier
    # test from 192.0.2.2 to the api is remembered by conntrack (TIME_WAIT: 120 s) with its NAT to
    # the main gateway; a new connection that reuses its source port follows that entry, not this
    # test's redirect. Seen under load as (4, 16) with this gateway accepting only 19 of the 20
    # uploads (3 held, 16 blocked): the 20th went elsewhere and was counted as held.
    rmem = in_ns(GW, "sysctl", "-n", "net.ipv4.tcp_rmem").stdout.split()
    in_ns(GW, "sysctl", "-qw", f"net.ipv4.tcp_rmem={rmem[0]} {rmem[1]} {1 << 20}")
    uploader = textwrap.dedent(f"""
        import socket, ssl, sys, time
        ctx = ssl.create_default_context(cafile=sys.argv[1])
        held, refused = [], 0
        chunk = b"a" * 65536
        for i in range(int(sys.argv[3])):
            try:
                s = socket.create_connection(("{API}", 443), timeout=20, source_address=(sys.argv[2], 0))
                t = ctx.wrap_socket(s, server_hostname="api.limits.test")
                t.sendall(b"POST /up-%d HTTP/1.1\\r\\nHost: api.limits.test\\r\\nContent-Length: 16000000\\r\\n\\r\\n" % i)
                sent = 0
                while sent < 15_000_000:
                    sent += t.send(chunk)
                held.append(t)
            except OSError:
                refused += 1
        print("held", len(held), "refused", refused, flush=True)
        sys.stdin.readline()
    """)
    try:
        hog = subprocess.Popen(["ip", "netns", "exec", CL, PY, "-c", uploader, env.path("gateway-ca.pem"), "192.0.2.4",
                                "20"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            peak = 0
            line = ""
            import select
            while not line:
                peak = max(peak, rss(gw.pid))
                if select.select([hog.stdout], [], [], 0.05)[0]:
                    line = hog.stdout.readline()
            held, refused = int(line.split()[1]), int(line.split()[3])
            peak = max(peak, rss(gw.pid))
            r = env.python(f"""
                import socket, ssl, sys
                ctx = ssl.create_default_context(cafile=sys.argv[1])
                s = socket.create_connection(("{API}", 443), timeout=20, source_address=(sys.argv[2], 0))
                t = ctx.wrap_socket(s, server_hostname="api.limits.test")
                body = b"token={PH}"
                t.sendall(b"POST /up-other HTTP/1.1\\r\\nHost: api.limits.test\\r\\nContent-Length: %d\\r\\n"
                          b"Connection: close\\r\\n\\r\\n" % len(body) + body)
                print(t.recv(100).split(b"\\r\\n")[0].decode())
            """, source="192.0.2.5")
        finally:
            hog.stdin.close()
            hog.wait(30)
    finally:
        in_ns(GW, "nft", "delete", "table", "ip", "airlock_limits_budget", check=False)
        in_ns(GW, "sysctl", "-qw", "net.ipv4.tcp_rmem=" + " ".join(rmem), check=False)
    growth = peak - baseline
    print(f"standalone gateway RSS grew {growth / mib:.1f} MiB; {held} uploads held, {refused} blocked")
    assert growth < 64 * mib, f"grew {growth / mib:.1f} MiB ({held} held, {refused} refused)"
    assert held == 3 and refused == 17, (held, refused)  # 3 x 16,000,000 fit the client's 48 MiB
    assert r.stdout.strip() == "HTTP/1.1 200 OK", r.stdout + r.stderr
    (rec,) = env.upstream("/up-other")
    assert_equal_secret(rec["body"], f"token={FAKE}", "the other client's body")
    blocked = [c for c in env.audit("budget") if c["event"] == "blocked"]
    assert len(blocked) == 17 and all("memory budget of this client" in c["reason"] for c in blocked), blocked[:2]
