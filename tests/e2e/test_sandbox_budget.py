"""What a sandbox makes the gateway spend outside its cgroup is bounded (issue 11 item 6).

A guest with `--memory 64M` opens many intercepted connections to a host whose secret allows body
injection and uploads large bodies that it never finishes: the gateway must buffer such a body to
rewrite it, in the airlock process, outside the guest's cgroup. Before the budget, airlock grew by
every held body (24 x 15 MB here); now it stays under the sandbox's budget (derived from
--memory) and the requests past it are blocked (reset, audited, warned).

  sandbox ── its gateway (in `airlock run`) ── host netns HOST_IP ──veth── UP_IP upstream (nginx)
"""
import json
import os
import subprocess
import textwrap
import threading
import time

import pytest

from netlab import Lab, TAG, assert_absent, assert_equal_secret, fake_value, link_addresses, sh

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
PY = "/usr/bin/python3"
UPNS = f"albgu{TAG}"
HOST_IF, UP_IF = f"albgh{TAG}", f"albgp{TAG}"
HOST_IP, UP_IP, _, _ = link_addresses()  # this run's own /30 on the host
HOST = "bodies.upstream.test"
MIB = 1 << 20

assert os.geteuid() == 0, "these tests need root"


class World:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()

    def setup(self):
        self.lab.upstream_link(UPNS, HOST_IF, UP_IF, HOST_IP, UP_IP)
        self.lab.ca("ca")
        self.lab.leaf("server", "ca", f"DNS:{HOST}")
        d = self.lab.dir
        self.upstream = self.lab.nginx(UPNS, {"uri": "$request_uri", "body": "$request_body"}, f"""\
            client_body_buffer_size 1m; client_max_body_size 32m;
            server {{
              listen {UP_IP}:443 ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo_read_request_body; echo "ok"; }}
            }}
            """)
        self.dns_port = self.lab.dnsmasq([f"--host-record={HOST},{UP_IP}"])
        self.config = self.lab.write("airlock.toml", textwrap.dedent(f"""\
            [network]
            egress = ["allow@{UP_IP}:tcp:443"]
            [[network.upstream_ca]]
            file = "{self.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_BUDGET_KEY"
            allow_hosts = ["{HOST}"]
            inject = {{ headers = true, body = true }}

            [gateway]
            home = "{self.path('home')}"
            audit_log = "{self.path('audit.jsonl')}"
            """))

    def audit(self):
        with open(self.path("audit.jsonl")) as f:
            text = f.read()
        assert_absent(self.value, text, "the audit log")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-budget-") as lab:
        w = World(lab)
        w.setup()
        yield w


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# The guest: a warm-up request, then N uploads declared as 16,000,000 bytes of which 15 MB are
# sent and the rest never; it holds them open, then closes them and makes one small request.
GUEST = textwrap.dedent("""
    import os, socket, ssl, sys, time
    HOST, N, DECLARED, SENT = sys.argv[1], int(sys.argv[2]), 16_000_000, 15_000_000
    ctx = ssl.create_default_context()
    def connect():
        return ctx.wrap_socket(socket.create_connection((HOST, 443), timeout=20), server_hostname=HOST)
    def small(path):
        t = connect()
        body = ("token=" + os.environ["API_KEY"]).encode()
        t.sendall(b"POST %s HTTP/1.1\\r\\nHost: %s\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n"
                  % (path.encode(), HOST.encode(), len(body)) + body)
        answer = b""
        while True:
            part = t.recv(4096)
            if not part: break
            answer += part
        return answer.split(b"\\r\\n")[0].decode()
    print("warm", small("/warm"), flush=True)
    sys.stdin.readline()  # the test has taken its baseline
    chunk = b"a" * 65536
    held, refused = [], 0
    for i in range(N):
        try:
            t = connect()
            t.sendall(b"POST /big-%d HTTP/1.1\\r\\nHost: %s\\r\\nContent-Length: %d\\r\\n\\r\\n" % (i, HOST.encode(), DECLARED))
            sent = 0
            while sent < SENT:
                sent += t.send(chunk[:min(len(chunk), SENT - sent)])
            held.append(t)
        except OSError:
            refused += 1
    time.sleep(1.5)  # every body is now held (or refused) at once
    print("held", len(held), "refused", refused, flush=True)
    sys.stdin.readline()
    for t in held:
        t.close()
    print("after", small("/after"), flush=True)
""")


def test_large_stalled_bodies_keep_airlock_under_the_sandbox_budget(world):
    n = 24
    env = dict(os.environ, AIRLOCK_E2E_BUDGET_KEY=world.value, AIRLOCK_HOME=world.path("home"))
    p = subprocess.Popen([AIRLOCK, "run", "--config", world.config, "--dns-server", f"127.0.0.1:{world.dns_port}",
                          "--memory", "64M", "--", PY, "-c", GUEST, HOST, str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0]
    sampling = [True]

    def sample():
        while sampling[0]:
            peak[0] = max(peak[0], rss_bytes(p.pid))
            time.sleep(0.02)

    try:
        assert p.stdout.readline().strip() == "warm HTTP/1.1 200 OK"
        baseline = rss_bytes(p.pid)
        sampler = threading.Thread(target=sample)
        sampler.start()
        p.stdin.write("\n")
        p.stdin.flush()
        line = p.stdout.readline().split()
        assert line[:1] == ["held"], line
        held, refused = int(line[1]), int(line[3])
        sampling[0] = False
        sampler.join()
        p.stdin.write("\n")
        p.stdin.flush()
        after = p.stdout.readline().strip()
        out, err = p.communicate(timeout=60)
    finally:
        sampling[0] = False
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert_absent(world.value, out + err, "airlock run's output")
    growth = peak[0] - baseline
    print(f"airlock RSS: baseline {baseline / MIB:.1f} MiB, peak {peak[0] / MIB:.1f} MiB, "
          f"growth {growth / MIB:.1f} MiB; {held} bodies held, {refused} refused")
    # The budget for --memory 64M is 64 MiB; the growth also holds the allocator's own slack.
    assert growth < 64 * MIB, f"airlock grew by {growth / MIB:.1f} MiB ({held} held, {refused} refused)"
    assert refused > 0 and held >= 1, (held, refused)
    assert after == "after HTTP/1.1 200 OK", after + err[-2000:]
    (rec,) = world.upstream.wait_received("/after")
    assert_equal_secret(rec["body"], "token=" + world.value, "the body the upstream received")
    blocked = [r for r in world.audit() if r["event"] == "blocked" and "memory budget" in r.get("reason", "")]
    assert len(blocked) >= refused, blocked[:3]
    assert "memory budget" in err
