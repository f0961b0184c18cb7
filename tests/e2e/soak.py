#!/usr/bin/python3
"""Soak harness for `airlock gateway` (issue 12 §8): connection churn, upstream resets, stalls,
bad certificates, garbage and slow heads against one gateway, then a check that its descriptors
and memory come back to their baseline.

    sudo AIRLOCK_BIN=build/cli/airlock /usr/bin/python3 tests/e2e/soak.py          # short (< 60 s)
    sudo AIRLOCK_BIN=build/cli/airlock /usr/bin/python3 tests/e2e/soak.py --long   # 5 rounds of 10,000

The short mode is what tests/e2e/test_soak.py runs in the suite. Each round runs, concurrently:

  churn     new TLS connections, one request each with a substituted header (the upstream
            checks the value), closed by the client; 10,000 a round in --long
  resets    requests to an upstream that answers part of a body and resets
  stalls    requests to an upstream that accepts and never answers; the client resets after 1 s
  badcert   requests to an upstream whose certificate no trusted CA signed (must fail closed)
  garbage   clients that send non-TLS bytes to port 443 (refused), and an upstream that answers
            a ClientHello with garbage
  slowhead  half a request head, then silence (cut by the head deadline)
  idle      connections held open without a request, to measure what one costs

Then it waits until the gateway holds no more descriptors than before the round and reports
its RSS (baseline, peak, after) and the throughput. A round fails when descriptors do not come
back within 30 s, when RSS after the round is more than 32 MiB over the baseline, when a churn
request fails, or when a bad certificate or garbage got an answer. The topology is made and
removed here (namespaces with a per-run TAG, documentation addresses only).
"""
import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import Lab, TAG, assert_absent, in_ns, sh, wait_listening  # noqa: E402

PY = "/usr/bin/python3"
FAKE = "fake-soak-value-9d41c"
PH = "$MSB_API_KEY"
CL, GW, UP = f"alsc{TAG}", f"alsg{TAG}", f"alsu{TAG}"
HOSTS = {"api.soak.test": "203.0.113.30", "reset.soak.test": "203.0.113.31", "stall.soak.test": "203.0.113.32",
         "rogue.soak.test": "203.0.113.33", "garbage.soak.test": "203.0.113.34"}
MIB = 1 << 20

UPSTREAMS = r'''
import asyncio, os, ssl, struct, sys, socket
d = sys.argv[1]
def context(name):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(f"{d}/{name}.pem", f"{d}/{name}.key")
    return c
good, rogue = context("server"), context("rogue")
VALUE = os.environ["SOAK_VALUE"].encode()
async def read_head(r):
    return await r.readuntil(b"\r\n\r\n")
async def api(r, w):  # checks the substituted value; answers 200 or 400, then closes
    try:
        head = await read_head(r)
        ok = b"\r\nx-api-key: " + VALUE + b"\r\n" in head.lower()  # the value is lower case
        w.write(b"HTTP/1.1 %s\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n" % (b"200 OK" if ok else b"400 Bad"))
        await w.drain()
    except Exception:
        pass
    w.close()
async def reset(r, w):
    try:
        await read_head(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await w.drain()
        s = w.get_extra_info("socket")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except Exception:
        pass
    w.transport.abort()
async def stall(r, w):
    try:
        await asyncio.sleep(3600)
    finally:
        w.close()
async def garbage(r, w):  # answers a ClientHello with bytes that are not TLS
    try:
        await r.read(1)
        w.write(b"garbage, not a ServerHello\r\n" * 10)
        await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    ips = sys.argv[2:]
    servers = [await asyncio.start_server(api, ips[0], 443, ssl=good, backlog=4096),
               await asyncio.start_server(reset, ips[1], 443, ssl=good, backlog=1024),
               await asyncio.start_server(stall, ips[2], 443, ssl=good, backlog=1024),
               await asyncio.start_server(api, ips[3], 443, ssl=rogue, backlog=1024),
               await asyncio.start_server(garbage, ips[4], 443, backlog=1024)]
    await asyncio.Event().wait()
asyncio.run(main())
'''

LOAD = r'''
import asyncio, json, resource, socket, ssl, struct, sys, time
cfg = json.loads(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
ctx = ssl.create_default_context(cafile=cfg["ca"])
H = cfg["hosts"]
out = {k: {"ok": 0, "failed": 0} for k in ("churn", "resets", "stalls", "badcert", "garbage", "slowhead")}
def count(kind, ok):
    out[kind]["ok" if ok else "failed"] += 1
async def request(name, path, header=b""):
    r, w = await asyncio.wait_for(asyncio.open_connection(H[name], 443, ssl=ctx, server_hostname=name), 20)
    try:
        w.write(b"GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (path, name.encode(), header))
        return await asyncio.wait_for(r.read(), 20)
    finally:
        w.close()
async def churn(i):
    try:
        data = await request("api.soak.test", b"/churn", b"X-Api-Key: " + cfg["ph"].encode() + b"\r\n")
        count("churn", data.startswith(b"HTTP/1.1 200"))
    except Exception:
        count("churn", False)
async def resets(i):
    try:
        data = await request("reset.soak.test", b"/reset")
        count("resets", len(data) < 100000)  # never a complete body
    except Exception:
        count("resets", True)  # the reset reached the client
async def stalls(i):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(H["stall.soak.test"], 443, ssl=ctx,
                                                              server_hostname="stall.soak.test"), 20)
        w.write(b"GET /stall HTTP/1.1\r\nHost: stall.soak.test\r\n\r\n")
        try:
            await asyncio.wait_for(r.read(1), 1.0)
            count("stalls", False)
        except asyncio.TimeoutError:
            count("stalls", True)
        s = w.get_extra_info("socket")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        w.transport.abort()
    except Exception:
        count("stalls", False)
async def badcert(i):
    try:
        await request("rogue.soak.test", b"/rogue")
        count("badcert", False)  # an answer through an unverified upstream
    except Exception:
        count("badcert", True)
async def garbage(i):
    try:
        if i % 2:
            await request("garbage.soak.test", b"/garbage")
            count("garbage", False)
        else:
            r, w = await asyncio.open_connection(H["api.soak.test"], 443)
            w.write(b"SSH-2.0-not-tls\r\n" * 4)
            data = await asyncio.wait_for(r.read(), 20)
            w.close()
            count("garbage", data == b"")
    except Exception:
        count("garbage", True)
async def slowhead(i):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(H["api.soak.test"], 443, ssl=ctx,
                                                              server_hostname="api.soak.test"), 20)
        w.write(b"GET /slow HTTP/1.1\r\nHost: api.soak.test\r\nX-Slow: ")
        data = await asyncio.wait_for(r.read(), cfg["head_wait"])
        count("slowhead", data == b"")
        w.close()
    except Exception as e:
        count("slowhead", not isinstance(e, asyncio.TimeoutError))
async def bounded(kind, n, limit):
    sem = asyncio.Semaphore(limit)
    async def one(i):
        async with sem:
            await kind(i)
    await asyncio.gather(*(one(i) for i in range(n)))
async def main():
    start = time.monotonic()
    n = cfg["counts"]
    await asyncio.gather(bounded(churn, n["churn"], 64), bounded(resets, n["resets"], 16),
                         bounded(stalls, n["stalls"], 32), bounded(badcert, n["badcert"], 8),
                         bounded(garbage, n["garbage"], 8), bounded(slowhead, n["slowhead"], 200))
    out["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(out), flush=True)
asyncio.run(main())
'''

IDLE = r'''
import json, socket, ssl, sys, time
cfg = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=cfg["ca"])
held = [ctx.wrap_socket(socket.create_connection((cfg["ip"], 443), timeout=20), server_hostname="api.soak.test")
        for _ in range(cfg["n"])]
print("open", flush=True)
sys.stdin.readline()
'''


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Soak:
    def __init__(self, lab, airlock):
        self.lab, self.airlock, self.path = lab, airlock, lab.path

    def setup(self):
        for ns in (CL, GW, UP):
            self.lab.netns(ns)
        self.lab.veth(f"vsc{TAG}", f"vsg{TAG}", CL, GW)
        self.lab.veth(f"vsh{TAG}", f"vsu{TAG}", GW, UP)
        for ns, cmds in (
            (CL, [("addr", "add", "192.0.2.2/24", "dev", f"vsc{TAG}"), ("link", "set", f"vsc{TAG}", "up"),
                  ("route", "add", "default", "via", "192.0.2.1")]),
            (GW, [("addr", "add", "192.0.2.1/24", "dev", f"vsg{TAG}"), ("link", "set", f"vsg{TAG}", "up"),
                  ("addr", "add", "198.51.100.1/24", "dev", f"vsh{TAG}"), ("link", "set", f"vsh{TAG}", "up"),
                  ("route", "add", "203.0.113.0/24", "via", "198.51.100.2")]),
            (UP, [("addr", "add", "198.51.100.2/24", "dev", f"vsu{TAG}"), ("link", "set", f"vsu{TAG}", "up"),
                  ("route", "add", "default", "via", "198.51.100.1")] +
                 [("addr", "add", f"{ip}/32", "dev", "lo") for ip in HOSTS.values()]),
        ):
            for cmd in cmds:
                in_ns(ns, "ip", *cmd)
        for ns in (CL, UP):  # many short connections: reuse TIME_WAIT ports
            in_ns(ns, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1", "net.ipv4.ip_local_port_range=10000 65000")
        in_ns(GW, "nft", "-f", self.lab.write("nft.conf", textwrap.dedent(f"""\
            table ip airlock_soak {{
              chain prerouting {{
                type nat hook prerouting priority dstnat; policy accept;
                iifname "vsg{TAG}" ip daddr != 192.0.2.1 tcp dport 443 redirect to :15001
              }}
            }}
            """)))
        hosts = "127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in HOSTS.items())
        self.lab.netns_file(GW, "hosts", hosts)
        self.lab.ca("test-ca")
        self.lab.ca("rogue-ca")
        self.lab.leaf("server", "test-ca", ",".join(f"DNS:{n}" for n in HOSTS))
        self.lab.leaf("rogue", "rogue-ca", "DNS:rogue.soak.test")
        self.lab.start(["ip", "netns", "exec", UP, PY, "-c", UPSTREAMS, self.lab.dir, *HOSTS.values()],
                       "upstreams.stderr", env=dict(os.environ, SOAK_VALUE=FAKE))
        wait_listening(UP, [f"{ip}:443" for ip in HOSTS.values()], "soak upstreams listening")
        config = self.lab.write("soak.toml", textwrap.dedent(f"""\
            [network]
            egress = ["allow@203.0.113.0/24:tcp"]
            [[network.upstream_ca]]
            file = "{self.path('test-ca.pem')}"
            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_SOAK_KEY"
            allow_hosts = ["api.soak.test"]
            [gateway]
            resolve_pins_with_host_dns = true
            home = "{self.path('home')}"
            """))
        env = dict(os.environ, AIRLOCK_SOAK_KEY=FAKE, AIRLOCK_HOME=self.path("home"))
        self.gateway = self.lab.start(["ip", "netns", "exec", GW, self.airlock, "gateway", "--config", config,
                                       "--transparent", "0.0.0.0:15001", "--audit-log", self.path("audit.jsonl"),
                                       "--log-level", "error"], "gateway.stderr", stdout=subprocess.PIPE,
                                      env=env, text=True)
        assert self.gateway.stdout.readline().startswith("airlock gateway ready ")
        sh(self.airlock, "ca", "export", self.path("gateway-ca.pem"), env=env)
        # The gateway process itself (ip netns exec execs it: same pid).
        self.pid = self.gateway.pid

    def client(self, script, cfg, **kw):
        return subprocess.Popen(["ip", "netns", "exec", CL, PY, "-c", script, json.dumps(cfg)], text=True, **kw)

    def measure_idle(self, n):
        """RSS and descriptors that n idle intercepted connections cost."""
        before_rss, before_fds = rss(self.pid), fds(self.pid)
        p = self.client(IDLE, {"ca": self.path("gateway-ca.pem"), "ip": HOSTS["api.soak.test"], "n": n},
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert p.stdout.readline().strip() == "open"
            time.sleep(0.5)
            cost = (rss(self.pid) - before_rss) / n, (fds(self.pid) - before_fds) / n
        finally:
            p.stdin.write("\n")
            p.stdin.close()
            p.wait(30)
        deadline = time.monotonic() + 30  # the next baseline is taken once they are closed
        while fds(self.pid) > before_fds and time.monotonic() < deadline:
            time.sleep(0.1)
        return cost

    def round(self, counts, head_wait):
        cfg = {"ca": self.path("gateway-ca.pem"), "hosts": HOSTS, "ph": PH, "counts": counts, "head_wait": head_wait}
        base_fds, base_rss = fds(self.pid), rss(self.pid)
        p = self.client(LOAD, cfg, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        peak_rss = peak_fds = 0
        while p.poll() is None:
            peak_rss, peak_fds = max(peak_rss, rss(self.pid)), max(peak_fds, fds(self.pid))
            time.sleep(0.05)
        out, err = p.communicate()
        assert_absent(FAKE, out + err, "the load's output")
        assert p.returncode == 0, err[-3000:]
        result = json.loads(out)
        deadline = time.monotonic() + 30
        while fds(self.pid) > base_fds and time.monotonic() < deadline:
            time.sleep(0.1)
        result.update(fds={"baseline": base_fds, "peak": peak_fds, "after": fds(self.pid)},
                      rss_mib={"baseline": round(base_rss / MIB, 1), "peak": round(peak_rss / MIB, 1),
                               "after": round(rss(self.pid) / MIB, 1)},
                      churn_per_second=round(counts["churn"] / result["seconds"], 1))
        return result


def check(result, counts):
    """The reasons a round failed (empty: it passed)."""
    problems = []
    if result["fds"]["after"] > result["fds"]["baseline"]:
        problems.append(f"descriptors did not come back: {result['fds']}")
    if result["rss_mib"]["after"] - result["rss_mib"]["baseline"] > 32:
        problems.append(f"memory did not come back: {result['rss_mib']}")
    for kind in ("churn", "resets", "stalls", "badcert", "garbage", "slowhead"):
        if result[kind]["failed"] or result[kind]["ok"] != counts[kind]:
            problems.append(f"{kind}: {result[kind]}")
    return problems


SHORT = {"churn": 2000, "resets": 200, "stalls": 100, "badcert": 50, "garbage": 100, "slowhead": 200}
LONG = {"churn": 10000, "resets": 1000, "stalls": 500, "badcert": 200, "garbage": 500, "slowhead": 1000}


def run(airlock, long=False, rounds=None, report=print):
    """Runs the soak; returns (results, problems)."""
    counts = LONG if long else SHORT
    rounds = rounds or (5 if long else 1)
    results, problems = [], []
    with Lab("airlock-soak-") as lab:
        s = Soak(lab, airlock)
        s.setup()
        warm_counts = {k: (0 if k == "slowhead" else min(v, 20)) for k, v in counts.items()}
        warm = s.round(warm_counts, head_wait=20)  # caches, pools, the resolver's thread, arenas
        report(f"warm-up: {json.dumps(warm)}")
        per_conn_rss, per_conn_fds = s.measure_idle(200 if not long else 1000)
        report(f"an idle intercepted connection costs {per_conn_rss / 1024:.1f} KiB of RSS and {per_conn_fds:.1f} descriptors")
        for i in range(rounds):
            result = s.round(counts, head_wait=20)
            report(f"round {i + 1}: {json.dumps(result)}")
            results.append(result)
            problems += [f"round {i + 1}: {p}" for p in check(result, counts)]
        with open(lab.path("gateway.stderr")) as f:
            assert_absent(FAKE, f.read(), "the gateway's stderr")
        with open(lab.path("audit.jsonl")) as f:
            assert_absent(FAKE, f.read(), "the audit log")
        assert s.gateway.poll() is None, "the gateway exited"
    return results, problems


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="5 rounds of 10,000 new connections and more faults")
    parser.add_argument("--rounds", type=int, help="rounds (default: 1 short, 5 long)")
    args = parser.parse_args()
    airlock = os.environ.get("AIRLOCK_BIN", "")
    assert os.geteuid() == 0 and airlock, "needs root and AIRLOCK_BIN"
    _, problems = run(os.path.abspath(airlock), args.long, args.rounds)
    for p in problems:
        print("FAILED:", p)
    sys.exit(1 if problems else 0)
