#!/usr/bin/python3
"""Helpers for scripts/bench: parse tool output, hold idle TLS connections, measure a
process tree's RSS, check the upstream's access log, and render the results table.

Secret values: the upstream log check reads the expected value from the environment
(BENCH_KEY_0) and only ever prints counts, never the value itself.
"""
import json
import os
import re
import signal
import socket
import ssl
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# ---------------------------------------------------------------- parsing tool output

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _duration_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unknown duration {text!r}")
    return float(m.group(1)) * UNIT_MS[m.group(2)]


def parse_wrk(path):
    """Returns requests, rps, p50/p99 in ms, socket errors and non-2xx counts."""
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {"requests": 0, "rps": 0.0, "errors": 0, "non2xx": 0}
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([0-9.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", text, re.M)
        if m:
            out[key] = _duration_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(g) for g in m.groups())
        out["error_detail"] = "connect %s, read %s, write %s, timeout %s" % m.groups()
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    return out


def parse_ab(path):
    """Returns complete/failed counts (with ab's categories) and rps."""
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {"requests": 0, "failed": 0, "rps": 0.0, "non2xx": 0, "failed_detail": ""}
    m = re.search(r"^Complete requests:\s*(\d+)", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"^Failed requests:\s*(\d+)", text, re.M)
    if m:
        out["failed"] = int(m.group(1))
    m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), Exceptions: (\d+)\)", text)
    if m:
        out["failed_detail"] = "connect %s, receive %s, length %s, exceptions %s" % m.groups()
    m = re.search(r"^Non-2xx responses:\s*(\d+)", text, re.M)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"^Requests per second:\s*([0-9.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    # A peer that closes without TLS close_notify: ab logs this per connection.
    out["eof_without_close_notify"] = text.count("unexpected eof while reading")
    return out


def parse_h2load(path):
    """Returns requests (succeeded), rps, failed/errored/timeout counts, non-2xx and the
    application protocol h2load negotiated (it falls back to HTTP/1.1 or prior-knowledge h2
    when the server selects no h2; only an h2 run counts)."""
    text = open(path, encoding="utf-8", errors="replace").read()
    out = {"requests": 0, "rps": 0.0, "failed": 0, "non2xx": 0, "protocol": None, "failed_detail": ""}
    m = re.search(r"^finished in [0-9.]+\w*, ([0-9.]+) req/s", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text, re.M)
    if m:
        out["requests"] = int(m.group(4))
        out["failed"] = int(m.group(5)) + int(m.group(6)) + int(m.group(7))
        out["failed_detail"] = "failed %s, errored %s, timeout %s" % m.group(5, 6, 7)
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        out["non2xx"] = sum(int(g) for g in m.group(2, 3, 4))
    m = re.search(r"^Application protocol: (\S+)", text, re.M)
    if m:
        out["protocol"] = m.group(1)
    return out


def parse(tool, path):
    return {"wrk": parse_wrk, "ab": parse_ab, "h2load": parse_h2load}[tool](path)


def cmd_parse(kind, path):
    data = parse(kind, path)
    print(json.dumps(data))


# scenario: (tool, [(metric, function of the parsed output)])
SCENARIOS = {
    "ka": ("wrk", [("ka_rps", lambda d: d["rps"]), ("ka_p50_ms", lambda d: d.get("p50_ms")),
                   ("ka_p99_ms", lambda d: d.get("p99_ms"))]),
    "close": ("wrk", [("close_rps", lambda d: d["rps"])]),
    "newconn": ("ab", [("newconn_rps", lambda d: d["rps"])]),
    "dl": ("wrk", [("dl_mibps", lambda d: d["rps"])]),             # 1 MiB per request
    "dlchunk": ("wrk", [("dlchunk_mibps", lambda d: d["rps"])]),   # the same 1 MiB, chunked
    "dlgzip": ("wrk", [("dlgzip_mibps", lambda d: d["rps"])]),     # 1 MiB of text, gzip despite identity
    "ul": ("wrk", [("ul_mibps", lambda d: d["rps"] / 16.0)]),      # 64 KiB per request
    "h2": ("h2load", [("h2_rps", lambda d: d["rps"])]),
    # The same two with each gateway event-loop thread CPU-capped (scripts/bench capped_scenarios).
    "kacap": ("wrk", [("kacap_rps", lambda d: d["rps"])]),
    "newconncap": ("ab", [("newconncap_rps", lambda d: d["rps"])]),
}


def cmd_record(scenario, path, variant, run, tsv):
    """Parses one tool run and appends its metrics (and any error counts as notes) to the
    results file. Prints a one-line summary. Exit 1 when the run produced no requests."""
    tool, metrics = SCENARIOS[scenario]
    d = parse(tool, path)
    lines, summary = [], []
    wrong_protocol = tool == "h2load" and d["protocol"] != "h2"
    if d["requests"] > 0 and d["rps"] > 0 and not wrong_protocol:
        for metric, fn in metrics:
            v = fn(d)
            if v is not None:
                lines.append(f"value\t{variant}\t{run}\t{metric}\t{v:.4f}")
                summary.append(f"{metric}={v:.2f}")
    problems = []
    if tool == "wrk" and d["errors"]:
        problems.append(f"socket errors ({d['error_detail']})")
    if tool == "ab" and d["failed"]:
        eof = d["eof_without_close_notify"]
        problems.append(f"ab counted {d['failed']} of {d['requests']} as failed "
                        f"({d['failed_detail']}); {eof} connections ended without TLS "
                        "close_notify (the response had arrived; the upstream log check "
                        "counts what it answered)")
    if tool == "h2load" and wrong_protocol:
        got = f"selected {d['protocol']}" if d["protocol"] else "selected no ALPN protocol"
        problems.append(f"not HTTP/2: offered only h2, the proxy {got} ({d['requests']} requests "
                        "succeeded; not counted)")
    if tool == "h2load" and d["failed"]:
        problems.append(f"h2load: {d['failed_detail']}")
    if d["non2xx"]:
        problems.append(f"{d['non2xx']} non-2xx responses")
    if d["requests"] == 0:
        problems.append("no request completed")
    if problems:
        lines.append(f"note\t{variant}\t{run}\t{scenario}: {'; '.join(problems)}")
    with open(tsv, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    print(f"{scenario}: {d['requests']} requests, " + " ".join(summary) +
          (f" [{'; '.join(problems)}]" if problems else ""))
    return 0 if d["requests"] > 0 else 1


def cmd_cpucost(scenario, path, variant, run, tsv, snap0, snap1, load0, load1, seconds, hz):
    """Appends the proxy's CPU time per request (µs; from its utime+stime) and how busy the
    client's core was (%) during one scenario run."""
    tool, _ = SCENARIOS[scenario]
    d = parse_wrk(path) if tool == "wrk" else parse_ab(path)
    hz, seconds = float(hz), float(seconds)
    proxy = (int(snap1.split()[1]) - int(snap0.split()[1])) / hz
    load = (int(load1.split()[0]) - int(load0.split()[0])) / hz
    with open(tsv, "a", encoding="utf-8") as f:
        if d["requests"] > 0 and proxy > 0:
            f.write(f"value\t{variant}\t{run}\t{scenario}_cpu_us\t{1e6 * proxy / d['requests']:.4f}\n")
        if seconds > 0:
            f.write(f"value\t{variant}\t{run}\t{scenario}_load_pct\t{100 * load / seconds:.4f}\n")
    return 0


def cap_snapshot(entries):
    """For each "loop:cpu:cgroup" (a capped event loop, the CPU it is pinned to and its cpu
    cgroup): the run time in ns of the threads in the group (/proc/TID/schedstat; a thread the
    loop starts joins its group) and the group's CFS counters (cpu.stat: nr_periods,
    nr_throttled, throttled_time)."""
    out = []
    for entry in entries:
        loop, cpu, group = entry.split(":", 2)
        runtime = {}
        try:
            tids = [t.strip() for t in open(os.path.join(group, "tasks")) if t.strip()]
        except OSError:
            tids = []
        for tid in tids:
            try:
                runtime[tid] = int(open(f"/proc/{tid}/schedstat").read().split()[0])
            except (OSError, ValueError, IndexError):
                pass
        stat = {}
        try:
            for line in open(os.path.join(group, "cpu.stat")):
                k, _, v = line.partition(" ")
                if v.strip().isdigit():
                    stat[k] = int(v)
        except OSError:
            pass
        out.append({"loop": int(loop), "cpu": int(cpu), "runtime_ns": runtime, **stat})
    return out


def cmd_capstat(scenario, variant, run, tsv, cap_pct, load_cpu, load0, load1, snap0, snap1,
                seconds, hz, client_seconds=None):
    """Appends what a capped scenario run needs to be read as the gateway's figure: the CPU each
    capped event loop used as a share of its cap (lowest loop: {scenario}_capuse_pct), the share
    of CFS periods in which each was throttled (lowest: {scenario}_throttled_pct), and how busy
    the client's core was without the gateway loops pinned to it ({scenario}_client_pct: the
    client tool, nginx, the kernel's forwarding and any other load there) and, given
    `client_seconds` (the client tool's and nginx's own CPU seconds), their share of a CPU
    ({scenario}_clientown_pct); and one note with every loop's figures."""
    cap_pct, load_cpu, seconds, hz = float(cap_pct), int(load_cpu), float(seconds), float(hz)
    before, after = json.loads(snap0), json.loads(snap1)
    if seconds <= 0 or len(before) != len(after) or not after:
        return 1
    threads, on_load_cpu = [], 0.0
    for i, (a, b) in enumerate(zip(before, after)):
        if a["loop"] != b["loop"] or not b["runtime_ns"]:
            return 1
        # A thread that joined the group during the run counts from zero.
        ns = sum(t - a["runtime_ns"].get(tid, 0) for tid, t in b["runtime_ns"].items())
        used = 100 * ns / 1e9 / seconds
        periods = b.get("nr_periods", 0) - a.get("nr_periods", 0)
        throttled = b.get("nr_throttled", 0) - a.get("nr_throttled", 0)
        threads.append((i, b["cpu"], used, periods, throttled))
        if b["cpu"] == load_cpu:
            on_load_cpu += used
    busy = 100 * (int(load1.split()[0]) - int(load0.split()[0])) / hz / seconds
    client = max(busy - on_load_cpu, 0.0)
    capuse = min(100 * used / cap_pct for _, _, used, _, _ in threads)
    throttled_share = min(100 * t / p if p else 0.0 for _, _, _, p, t in threads)
    detail = "; ".join(f"loop {i} on CPU {cpu}: {used:.1f} % CPU ({100 * used / cap_pct:.0f} % of its cap), "
                       f"throttled in {t} of {p} periods" for i, cpu, used, p, t in threads)
    with open(tsv, "a", encoding="utf-8") as f:
        f.write(f"value\t{variant}\t{run}\t{scenario}_capuse_pct\t{capuse:.4f}\n")
        f.write(f"value\t{variant}\t{run}\t{scenario}_throttled_pct\t{throttled_share:.4f}\n")
        f.write(f"value\t{variant}\t{run}\t{scenario}_client_pct\t{client:.4f}\n")
        own = ""
        if client_seconds not in (None, ""):
            own_pct = 100 * float(client_seconds) / seconds
            f.write(f"value\t{variant}\t{run}\t{scenario}_clientown_pct\t{own_pct:.4f}\n")
            own = f" (the client tool and nginx themselves: {own_pct:.0f} %)"
        f.write(f"note\t{variant}\t{run}\t{scenario}: cap {cap_pct:.0f} % of a CPU per event-loop thread; "
                f"{detail}; CPU {load_cpu} {busy:.0f} % busy, {client:.0f} % without the gateway{own}\n")
    return 0


def perf_stat_counts(path):
    """{event: count} from `perf stat -x,` output (lines "count,unit,event,...")."""
    counts = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        f = line.strip().split(",")
        if len(f) >= 3 and not line.startswith("#") and f[0].replace(".", "", 1).isdigit():
            counts[f[2]] = float(f[0])
    return counts


def cmd_perrequest(scenario, path, ut0, ut1, hz, stat_path):
    """One line for a profile: the proxy's user and system CPU per request (from /proc utime and
    stime around the scenario) and its syscalls and context switches per request (perf stat)."""
    tool, _ = SCENARIOS[scenario]
    d = parse(tool, path)
    n = d["requests"]
    if n <= 0 or not ut0 or not ut1:
        print("per request: no requests or no CPU times")
        return 1
    (u0, s0), (u1, s1) = (map(int, ut0.split())), (map(int, ut1.split()))
    user, system = 1e6 * (u1 - u0) / float(hz) / n, 1e6 * (s1 - s0) / float(hz) / n
    text = (f"{n} requests; proxy CPU per request: {user:.1f} µs user + {system:.1f} µs system "
            f"= {user + system:.1f} µs ({100 * system / max(user + system, 1e-9):.0f} % system)")
    try:
        counts = perf_stat_counts(stat_path)
    except OSError:
        counts = {}
    if "raw_syscalls:sys_enter" in counts:
        text += f"; {counts['raw_syscalls:sys_enter'] / n:.2f} syscalls"
    if "context-switches" in counts:
        text += f", {counts['context-switches'] / n:.2f} context switches"
    print(text + " per request (perf stat over the scenario's first "
          "--duration seconds, CPU times over the whole scenario)")
    return 0


# ---------------------------------------------------------------- idle connections

def cmd_hold(host, port, count, cafile, workers=8, hold_max=600):
    """Opens `count` TLS connections to host:port, completes one keep-alive request on each,
    then holds them until SIGTERM or hold_max seconds. Prints one status line."""
    ctx = ssl.create_default_context(cafile=cafile)
    request = (f"GET /small HTTP/1.1\r\nHost: {host}\r\n"
               "Authorization: Bearer $MSB_BENCH_KEY_0\r\n\r\n").encode()
    held, failures, lock = [], [], threading.Lock()

    def open_one(_):
        try:
            raw = socket.create_connection((host, port), timeout=15)
            tls = ctx.wrap_socket(raw, server_hostname=host)
            tls.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf and len(buf) < 65536:
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before response headers")
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            want = int(m.group(1)) if m else 0
            while len(body) < want:
                chunk = tls.recv(65536)
                if not chunk:
                    raise ConnectionError("closed before response body")
                body += chunk
            with lock:
                held.append(tls)
        except Exception as exc:  # report, never crash the holder
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(open_one, range(count)))
    elapsed = time.monotonic() - start
    first = failures[0] if failures else ""
    print(f"held {len(held)} failed {len(failures)} seconds {elapsed:.1f} first_error {first}",
          flush=True)

    # Hold until SIGTERM (the harness sends it after measuring) or hold_max seconds.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(hold_max)
    for s in held:
        try:
            s.close()
        except OSError:
            pass


def rss_tree_kib(pid):
    """Sum of VmRSS (KiB) of pid and all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_snapshot(cpu, pid):
    """(user+nice+system ticks of one CPU, utime+stime ticks of pid and its descendants)."""
    busy = 0
    for line in open("/proc/stat"):
        f = line.split()
        if f[0] == f"cpu{cpu}":
            busy = int(f[1]) + int(f[2]) + int(f[3])
    tree = 0
    if pid > 0:
        children = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    st = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(st[1]), []).append((int(entry), int(st[11]) + int(st[12])))
        try:
            st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            tree = int(st[11]) + int(st[12])
        except OSError:
            pass
        todo = [pid]
        while todo:
            for child, ticks in children.get(todo.pop(), []):
                tree += ticks
                todo.append(child)
    return busy, tree


# ---------------------------------------------------------------- upstream log check

LOG_RE = re.compile(r'^(\S+) (\d+) (\S+) (\S+) (\d+) (\d+) "(.*)"$')


def cmd_checklog(path, expect_addr, expect_auth):
    """Counts what the upstream received. expect_auth: 'real' (BENCH_KEY_0 from the
    environment must be in every Authorization, no placeholder) or 'placeholder'."""
    value = os.environ.get("BENCH_KEY_0", "")
    placeholder = "$MSB_BENCH_KEY_0"
    total = bad_status = bad_addr = real = ph = other = 0
    for line in open(path, encoding="utf-8", errors="replace"):
        m = LOG_RE.match(line.rstrip("\n"))
        if not m:
            other += 1
            continue
        total += 1
        addr, status, auth = m.group(1), m.group(2), m.group(7)
        if status != "200":
            bad_status += 1
        if addr != expect_addr:
            bad_addr += 1
        if value and value in auth:
            real += 1
        elif placeholder in auth:
            ph += 1
    ok = total > 0 and bad_status == 0 and bad_addr == 0 and other == 0
    if expect_auth == "real":
        ok = ok and real == total
    else:
        ok = ok and ph == total
    want = "the real BENCH_KEY_0 value" if expect_auth == "real" else "the placeholder"
    got = real if expect_auth == "real" else ph
    print(f"{'ok' if ok else 'FAILED'}: upstream saw {total} requests from {expect_addr}: "
          f"{got} carried {want} in Authorization, {bad_status} non-200, "
          f"{bad_addr} from another address, {other} unparsable lines")
    return 0 if ok else 1


def cmd_checkbody(path, expect_addr, expect_auth):
    """Checks the last line of the /check log: source address, Authorization and body."""
    value = os.environ.get("BENCH_KEY_0", "")
    lines = [l for l in open(path, encoding="utf-8", errors="replace") if l.strip()]
    if not lines:
        print("FAILED: the upstream logged no /check request")
        return 1
    line = lines[-1]
    addr = line.split(" ", 1)[0]
    placeholder = "$MSB_BENCH_KEY_0"
    if addr != expect_addr:
        print(f"FAILED: /check came from {addr}, expected {expect_addr}")
        return 1
    if expect_auth == "real":
        n_real = line.count(value) if value else 0
        if n_real != 2 or placeholder in line:
            print(f"FAILED: upstream /check held the real value {n_real} times (want 2: "
                  f"header and body), placeholder present: {placeholder in line}")
            return 1
        print("ok: upstream received the real value in Authorization and in the body")
    else:
        if line.count(placeholder) != 2 or (value and value in line):
            print("FAILED: upstream /check did not receive the placeholder unchanged")
            return 1
        print("ok: upstream received the placeholder unchanged in Authorization and body")
    return 0


# ---------------------------------------------------------------- report

# metric: (label, unit, higher_is_better, decimals)
METRICS = [
    ("ka_rps", "Keep-alive small requests", "req/s", True, 0),
    ("ka_p50_ms", "Keep-alive latency p50", "ms", False, 2),
    ("ka_p99_ms", "Keep-alive latency p99", "ms", False, 2),
    ("newconn_rps", "New TLS connection per request (ab)", "req/s", True, 0),
    ("dl_mibps", "1 MiB downloads", "MiB/s", True, 1),
    ("dlchunk_mibps", "1 MiB downloads, chunked", "MiB/s", True, 1),
    ("dlgzip_mibps", "1 MiB downloads, gzip despite identity (decoded size)", "MiB/s", True, 1),
    ("ul_mibps", "64 KiB uploads, body placeholder", "MiB/s", True, 1),
    ("idle_kib", "Memory per idle connection ({idle} held)", "KiB", False, 1),
    ("h2_rps", "HTTP/2 small requests (h2load, 8 connections × 10 streams)", "req/s", True, 0),
    ("close_rps", "Extra: wrk `Connection: close` (caveated)", "req/s", True, 0),
    ("ka_cpu_us", "Proxy CPU per keep-alive request", "µs", False, 1),
    # The same per run, divided by the client core's CPU per request in that run (wrk and nginx do
    # the same work whatever proxy is between them, so that measures how fast the machine ran):
    # runs at different machine speeds compare (see speednorm).
    ("ka_cpu_norm", "Proxy CPU per keep-alive request ÷ client core CPU per request (same run)", "×", False, 2),
    ("newconn_cpu_us", "Proxy CPU per new connection", "µs", False, 0),
    ("dl_cpu_us", "Proxy CPU per 1 MiB download", "µs", False, 0),
    ("ul_cpu_us", "Proxy CPU per 64 KiB upload", "µs", False, 0),
    ("ka_load_pct", "Client core busy, keep-alive (client, nginx)", "%", None, 0),
    ("newconn_load_pct", "Client core busy, new connections", "%", None, 0),
    # The thread-scaling scenario: airlock (1 thread) against airlock-2t (2 threads), every
    # event-loop thread capped at the same CPU quota (scripts/bench capped_scenarios).
    ("kacap_rps", "Keep-alive, gateway CPU-capped at {cap} % per thread (1 thread; airlock-2t: 2)", "req/s", True, 0),
    ("newconncap_rps", "New connections, gateway CPU-capped at {cap} % per thread (1 thread; airlock-2t: 2)",
     "req/s", True, 0),
    ("kacap_capuse_pct", "Capped keep-alive: CPU the least busy gateway thread used, % of its cap", "%", None, 0),
    ("newconncap_capuse_pct", "Capped new connections: CPU the least busy gateway thread used, % of its cap",
     "%", None, 0),
    ("kacap_client_pct", "Capped keep-alive: client core busy without the gateway (client, nginx, other load)",
     "%", None, 0),
    ("newconncap_client_pct", "Capped new connections: client core busy without the gateway", "%", None, 0),
    ("kacap_clientown_pct", "Capped keep-alive: CPU of wrk and nginx themselves, % of a CPU", "%", None, 0),
    ("newconncap_clientown_pct", "Capped new connections: CPU of ab and nginx themselves, % of a CPU", "%", None, 0),
]
# Rows of the capped scaling scenario: airlock-2t's cell is compared with airlock's (one thread at
# the same cap), never with direct or a peer (they have no such row).
CAPPED = ("kacap_rps", "newconncap_rps")
VARIANT_ORDER = ["direct", "airlock", "airlock-2t", "tls-relay", "mitmproxy", "squid"]
PEERS = ["mitmproxy", "squid"]
# The zero-logic TLS relay: what terminating and re-encrypting alone costs on this machine.
FLOOR = "tls-relay"


def _fmt(v, decimals):
    return f"{v:,.{decimals}f}"


def _figure(value, decimals, meets):
    """`value` with `decimals` decimals, or with as many more (up to 4) as it takes for the figure
    shown to read as the verdict does: `meets(x)` is the target's test, and the shown figure must
    pass it exactly when the value does (79.8 % against a target of 80 % is "79.8", never "80")."""
    met = meets(value)
    for d in range(decimals, decimals + 5):
        text = f"{value:.{d}f}"
        if meets(float(text)) == met:
            return text
    return text


def _ratio(v, ref, higher):
    if v is None or ref is None or v <= 0 or ref <= 0:
        return None
    return v / ref if higher else ref / v


def _add_speed_normalised(raw, good, values):
    """ka_cpu_norm per run: ka_cpu_us / (ka_load_pct / 100 / ka_rps in µs), for runs with all three."""
    per_run = {}
    for variant, run, metric, v in raw:
        if (variant, run) in good and metric in ("ka_cpu_us", "ka_load_pct", "ka_rps"):
            per_run.setdefault((variant, run), {})[metric] = float(v)
    for (variant, run), m in sorted(per_run.items(), key=lambda kv: (kv[0][0], int(kv[0][1]))):
        if len(m) == 3 and m["ka_rps"] > 0 and m["ka_load_pct"] > 0:
            values.setdefault((variant, "ka_cpu_norm"), []).append(m["ka_cpu_us"] / (1e6 * m["ka_load_pct"] / 100 / m["ka_rps"]))


def cmd_report(results_tsv, meta_json):
    meta = json.load(open(meta_json))
    values, status, notes, raw, voided = {}, {}, [], [], {}
    for line in open(results_tsv, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if parts[0] == "value":
            raw.append(parts[1:])
        elif parts[0] == "status":
            _, variant, run, state, msg = parts
            status.setdefault(variant, []).append((int(run), state, msg))
        elif parts[0] == "note":
            notes.append((parts[1], parts[2], parts[3]))
        elif parts[0] == "void":  # one scenario's values of a run withdrawn (its own check failed)
            voided.setdefault((parts[1], parts[3]), set()).add(parts[2])
    variants = [v for v in VARIANT_ORDER if v in meta["variants"]]
    # Only runs that passed their checks count.
    good = {(v, str(run)) for v, runs in status.items() for run, state, _ in runs if state == "ok"}
    for variant, run, metric, v in raw:
        if (variant, run) in good and run not in voided.get((variant, metric), ()):
            values.setdefault((variant, metric), []).append(float(v))
    _add_speed_normalised(raw, good, values)

    def median(variant, metric):
        vs = values.get((variant, metric))
        return statistics.median(vs) if vs else None

    def foreign_load(metric):
        """The most CPU time other processes took on the proxy's core in any run of the
        scenario behind this metric, as a share of the scenario's wall time."""
        scenario = metric.split("_")[0]
        loads = [x for v in variants for x in values.get((v, f"{scenario}_foreign_pct"), [])]
        return f"≤ {max(loads):.0f} %" if loads else "n/a"

    def failed(variant):
        runs = status.get(variant, [])
        return not runs or all(state != "ok" for _, state, _ in runs)

    def capped_targets():
        """The two-thread target from the capped scenario (airlock-2t against airlock, each event
        loop capped at the same CPU quota), with what makes it the gateway's figure: how much of
        its cap the least busy loop used and how busy the client's core was, in the worst run."""
        cap = meta.get("cap_pct")
        lines = []
        for metric, label, uncapped in (("kacap_rps", "keep-alive", "ka_rps"),
                                        ("newconncap_rps", "new connections", "newconn_rps")):
            one, two = median("airlock", metric), median("airlock-2t", metric)
            if not one or not two or not cap:
                continue
            scenario = metric.split("_")[0]
            uses = values.get(("airlock", f"{scenario}_capuse_pct"), []) + \
                values.get(("airlock-2t", f"{scenario}_capuse_pct"), [])
            clients = values.get(("airlock-2t", f"{scenario}_client_pct"), [])
            own = values.get(("airlock-2t", f"{scenario}_clientown_pct"), [])
            def scales(x):
                return x >= 1.8
            text = (f"- two event-loop threads against one, each CPU-capped at {cap} % of a CPU "
                    f"(scenario 6), {label}: {_figure(two / one, 2, scales)}× one thread at the same cap "
                    "(target ≥ 1.8×): " + ("met" if scales(two / one) else "**not met**"))
            if uses:
                text += f"; the least busy loop used ≥ {min(uses):.0f} % of its cap in every run"
            if clients:
                text += (f", the client's core without the gateway was ≤ {max(clients):.0f} % busy "
                         "with two loops")
            if own:
                text += f" (the client tool and nginx themselves ≤ {max(own):.0f} % of a CPU)"
            c1, c2 = median("airlock", f"{scenario}_cpu_us"), median("airlock-2t", f"{scenario}_cpu_us")
            if c1 and c2:
                text += f"; gateway CPU per request {c1:.1f} → {c2:.1f} µs ({c2 / c1:.2f}×)"
            # The model: a capped loop's rate is its cap over its CPU per request. Against the
            # uncapped one-thread run, that is the cap × the uncapped rate when that loop had a
            # whole CPU (other load on its CPU lowers the uncapped rate, not the capped one).
            base, base_cpu = median("airlock", uncapped), median("airlock", f"{uncapped.split('_')[0]}_cpu_us")
            if base and base_cpu:
                text += (f"; one capped loop made {one / (cap / 100 / (base_cpu * 1e-6)):.2f}× its cap over the "
                         f"uncapped CPU per request ({base_cpu:.1f} µs) and {one / (base * cap / 100):.2f}× "
                         f"{cap} % of the uncapped one-thread rate")
            text += (". Shows: the gateway's throughput with two loops against one when each gets the "
                     "same CPU and the load generator is kept unsaturated by the cap; not: 1.8× the "
                     "uncapped one-thread figure on this 2-core machine (the line above), nor latency "
                     "(a capped loop waits out each CFS period once its quota is spent)")
            lines.append(text)
        return lines

    out = []
    out.append(f"# airlock benchmark, {meta['date']}")
    out.append("")
    out.append(f"- Machine: {meta['machine']}")
    out.append(f"- CPU placement: {meta['placement']}")
    out.append(f"- Runs: medians of {meta['runs']} runs (under each, the lowest and highest run), "
               f"{meta['duration']} s per timed scenario; ratios of medians, > 1 meaning better than "
               "the reference (for latency and memory: lower).")
    foreign = [int(m.group(1)) for _, _, msg in notes
               for m in [re.search(r"other processes used (\d+) %", msg)] if m]
    if foreign:
        out.append(f"- Other load on the proxy's CPU: {len(foreign)} timed scenario runs saw other "
                   f"processes use over 3 % of it (up to {max(foreign)} %); see the notes. "
                   "Those figures are low for the proxy that ran then.")
    else:
        out.append("- Other load on the proxy's CPU: under 3 % in every timed scenario run.")
    out.append(f"- Versions: {meta['versions']}")
    out.append(f"- Commit: {meta['commit']}")
    out.append("")
    head = "| Scenario | unit |"
    sep = "|---|---|"
    for v in variants:
        head += f" {v} |"
        sep += "---:|"
    head += " other load on the proxy's CPU |"
    sep += "---:|"
    out.append(head)
    out.append(sep)
    for metric, label, unit, higher, dec in METRICS:
        row = f"| {label.format(idle=meta.get('idle_conns', 1000), cap=meta.get('cap_pct', '?'))} | {unit} |"
        for v in variants:
            if failed(v):
                row += " **failed** |"
                continue
            m = median(v, metric)
            if m is None:
                row += " **failed** (see notes) |" if (v, metric) in voided else " n/a |"
                continue
            cell = _fmt(m, dec)
            vs = values.get((v, metric), [])
            if len(vs) > 1:
                cell += f"<br>{_fmt(min(vs), dec)}–{_fmt(max(vs), dec)}"
            if len(vs) < meta["runs"]:
                cell += f" ({len(vs)} of {meta['runs']} runs)"
            parts = []
            if higher is None:  # context, not a figure of merit: no ratios
                row += f" {cell} |"
                continue
            if metric in CAPPED:
                r = _ratio(m, median("airlock", metric), higher) if v == "airlock-2t" else None
                if r is not None:
                    cell += f"<br>({r:.2f}× 1 thread)"
                row += f" {cell} |"
                continue
            if v != "direct":
                r = _ratio(m, median("direct", metric), higher)
                if r is not None:
                    parts.append(f"{r:.2f}× direct")
            if v.startswith("airlock") and FLOOR in variants and not failed(FLOOR):
                r = _ratio(m, median(FLOOR, metric), higher)
                if r is not None:
                    parts.append(f"{r:.2f}× {FLOOR}")
            others = [p for p in PEERS if p != v and p in variants and not failed(p)]
            peer_vals = [(p, median(p, metric)) for p in others]
            peer_vals = [(p, x) for p, x in peer_vals if x is not None and x > 0]
            if peer_vals and m > 0:
                best = max(peer_vals, key=lambda t: t[1]) if higher else min(peer_vals, key=lambda t: t[1])
                parts.append(f"{_ratio(m, best[1], higher):.2f}× {best[0]}")
            if parts:
                cell += "<br>(" + ", ".join(parts) + ")"
            row += f" {cell} |"
        out.append(row + f" {foreign_load(metric)} |")
    out.append("")
    out.append("\"× direct\" compares with the direct route; \"× peer\" compares with the better of "
               "mitmproxy and Squid in that row (for a peer: with the other peer)." +
               (f" For airlock, \"× {FLOOR}\" compares with the zero-logic TLS relay (nginx stream: "
                "terminate, re-encrypt, no HTTP), the floor of any intercepting proxy here."
                if FLOOR in variants else ""))
    out.append("")

    # targets for airlock
    if "airlock" in variants:
        out.append("## Targets (airlock)")
        out.append("")
        if failed("airlock"):
            out.append("- airlock failed its check; no target can be assessed.")
        else:
            have_floor = FLOOR in variants and not failed(FLOOR)

            def floor_clause(metric, floor):
                """How far the TLS relay floor gets against direct, and airlock against it."""
                if not have_floor:
                    return ""
                f = _ratio(median(FLOOR, metric), median("direct", metric), True)
                a = _ratio(median("airlock", metric), median(FLOOR, metric), True)
                if f is None or a is None:
                    return "; the TLS relay floor: not measured"
                def meets(pct):
                    return pct >= floor
                return (f"; the TLS relay floor reaches {_figure(f * 100, 0, meets)} % of direct"
                        f"{'' if meets(f * 100) else ' (below the target itself)'}, airlock {a:.2f}× the floor")

            def tgt(metric, label, floor):
                r = _ratio(median("airlock", metric), median("direct", metric), True)
                if r is None:
                    return f"- {label}: not measured"
                def meets(pct):
                    return pct >= floor
                return f"- {label}: {_figure(r * 100, 0, meets)} % of direct (target ≥ {floor} %): " + \
                    ("met" if meets(r * 100) else "**not met**") + floor_clause(metric, floor)
            out.append(tgt("ka_rps", "keep-alive small requests", 90))
            p99, p99_direct = median("airlock", "ka_p99_ms"), median("direct", "ka_p99_ms")
            if p99 is not None and p99_direct is not None:
                def p99_meets(ms):
                    return ms <= p99_direct + 0.3
                p99_floor = median(FLOOR, "ka_p99_ms") if have_floor else None
                floor = ""
                if p99_floor is not None:
                    floor = (f"; the TLS relay floor's p99 is {_figure(p99_floor, 2, p99_meets)} ms "
                             f"(direct + {p99_floor - p99_direct:.2f} ms"
                             f"{'' if p99_meets(p99_floor) else ', over the target itself'}), "
                             f"airlock's {p99 - p99_floor:+.2f} ms against it")
                elif have_floor:
                    floor = "; the TLS relay floor: not measured"
                out.append(f"- keep-alive p99 latency: {_figure(p99, 2, p99_meets)} ms, direct {p99_direct:.2f} ms "
                           f"(target ≤ direct + 0.30 ms): "
                           + ("met" if p99_meets(p99) else "**not met**") + floor)
            out.append(tgt("newconn_rps", "new TLS connection per request", 90))
            out.append(tgt("dl_mibps", "1 MiB downloads", 90))
            out.append(tgt("ul_mibps", "64 KiB uploads with body substitution", 80))
            out.append(tgt("h2_rps", "HTTP/2 small requests (h2load)", 80))
            for peer, factor in (("mitmproxy", 10), ("squid", 3)):
                if peer not in variants or failed(peer):
                    out.append(f"- ≥ {factor}× {peer}: {peer} not measured")
                    continue
                worst = None
                for metric, label, unit, higher, dec in METRICS:
                    if metric in ("close_rps", "ka_p50_ms", "ka_p99_ms") or higher is None or metric.endswith("_cpu_us"):
                        continue
                    r = _ratio(median("airlock", metric), median(peer, metric), higher)
                    if r is not None and (worst is None or r < worst[0]):
                        worst = (r, label.format(idle=meta.get("idle_conns", 1000), cap=meta.get("cap_pct", "?")))
                if worst:
                    def peer_meets(x, factor=factor):
                        return x >= factor
                    out.append(f"- every scenario ≥ {factor}× {peer}: lowest is {_figure(worst[0], 2, peer_meets)}× "
                               f"({worst[1]}): " + ("met" if peer_meets(worst[0]) else "**not met**"))
            if "airlock-2t" in variants and not failed("airlock-2t"):
                for metric, label in (("ka_rps", "keep-alive"), ("newconn_rps", "new connections")):
                    one, two = median("airlock", metric), median("airlock-2t", metric)
                    if not one or not two:
                        continue
                    scenario = metric.split("_")[0]
                    c1, c2 = median("airlock", f"{scenario}_cpu_us"), median("airlock-2t", f"{scenario}_cpu_us")
                    load = median("airlock-2t", f"{scenario}_load_pct")
                    extra = ""
                    if c1 and c2:
                        extra += f"; proxy CPU per request {c1:.1f} → {c2:.1f} µs ({c2 / c1:.2f}×)"
                    if load is not None:
                        extra += f"; the client's core was {load:.0f} % busy with two threads"
                    def scales(x):
                        return x >= 1.8
                    out.append(f"- two event-loop threads on {meta.get('nproc', 2)} CPUs, {label}: "
                               f"{_figure(two / one, 2, scales)}× one thread (target ≥ 1.8×): "
                               + ("met" if scales(two / one) else "**not met**") + extra)
            if "airlock-2t" in variants and not failed("airlock-2t"):
                for line in capped_targets():
                    out.append(line)
            idle = median("airlock", "idle_kib")
            if idle is not None:
                def fits(kib):
                    return kib <= 32
                out.append(f"- memory per idle intercepted connection: {_figure(idle, 1, fits)} KiB (target ≤ 32 KiB): "
                           + ("met" if fits(idle) else "**not met**"))
        out.append("")

    out.append("## Checks and notes")
    out.append("")
    for v in variants:
        for run, state, msg in sorted(status.get(v, [])):
            out.append(f"- {v}, run {run}: {state}: {msg}")
    for v, run, msg in notes:
        out.append(f"- {v}, run {run}: {msg}")
    out.append("")
    out.append("## Per-run values")
    out.append("")
    out.append("| variant | metric | runs |")
    out.append("|---|---|---|")
    for v in variants:
        for metric, label, unit, higher, dec in METRICS:
            vs = values.get((v, metric))
            if vs:
                out.append(f"| {v} | {metric} | {', '.join(_fmt(x, dec) for x in vs)} |")
    out.append("")
    print("\n".join(out))


def cmd_sample(pid, seconds, out, period=0.25):
    """Every `period` s for `seconds`: the time, the proxy's utime and stime (ticks, all threads)
    and the packets its network namespace's rt-cli link received and sent (about one each per
    keep-alive request), so that one run's rate and CPU cost can be followed over time."""
    end = time.monotonic() + float(seconds)
    with open(out, "w", encoding="utf-8") as f:
        while time.monotonic() < end:
            try:
                st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                rx = tx = 0
                for line in open(f"/proc/{pid}/net/dev"):
                    if line.strip().startswith("rt-cli:"):
                        x = line.split(":", 1)[1].split()
                        rx, tx = int(x[1]), int(x[9])
            except OSError:
                return 0
            f.write(f"{time.monotonic():.3f} {st[11]} {st[12]} {rx} {tx}\n")
            time.sleep(period)
    return 0


def cmd_speednorm(*paths):
    """Keep-alive figures of results files, per run, against the machine's speed in that run.
    The client core runs the same wrk and nginx work per request whichever proxy is in between,
    so its CPU per request (ka_load_pct / ka_rps) measures how fast the machine ran in that run;
    the proxy's CPU per request (ka_cpu_us) divided by it compares runs taken at different
    speeds, and the latency percentiles divided by the mean latency (16 connections / rate,
    Little's law) give the distribution's shape apart from the rate."""
    for path in paths:
        runs = {}
        for line in open(path, encoding="utf-8"):
            m = re.match(r"\| (\S+) \| (ka_\w+) \| (.*) \|$", line)
            if m:
                runs[(m.group(1), m.group(2))] = [float(x.replace(",", "")) for x in re.split(r", (?=\d)", m.group(3))]
        print(f"## {path}")
        for v in ("direct", "airlock", "airlock-2t", "tls-relay", "mitmproxy", "squid"):
            rps, load = runs.get((v, "ka_rps")), runs.get((v, "ka_load_pct"))
            if not rps or not load or len(rps) != len(load):
                continue
            cpu = runs.get((v, "ka_cpu_us")) or [0.0] * len(rps)
            p50 = runs.get((v, "ka_p50_ms")) or [0.0] * len(rps)
            p99 = runs.get((v, "ka_p99_ms")) or [0.0] * len(rps)
            for i, r in enumerate(rps):
                client_us = 1e6 * load[i] / 100 / r
                mean_ms = 1e3 * 16 / r
                norm = f"; proxy/client {cpu[i] / client_us:.2f}" if cpu[i] else ""
                print(f"{v} run {i + 1}: {r:,.0f} req/s; client core {client_us:.1f} us/request; proxy {cpu[i]:.1f} us/request"
                      f"{norm}; p50 {p50[i] / mean_ms:.2f}x and p99 {p99[i] / mean_ms:.2f}x the mean latency")
    return 0


def _proc_stat_cpus(path):
    """{cpuN: [user, nice, system, idle, iowait, irq, softirq, steal]} and {IRQ name: [per CPU]}."""
    cpus, irqs = {}, {}
    for line in open(path, encoding="utf-8", errors="replace"):
        f = line.split()
        if f and re.fullmatch(r"cpu\d+", f[0]):
            cpus[f[0]] = [int(x) for x in f[1:9]]
        elif f and f[0] in ("RES:", "CAL:", "LOC:", "TLB:"):
            irqs[f[0][:-1]] = [int(x) for x in f[1:1 + len(cpus)]]
    return cpus, irqs


def _switch_reasons(path):
    """Why the proxy's threads left the CPU, from a `perf record -e sched:sched_switch -g`:
    {(where, state, next): count}; where is the syscall (or "user"), state R = preempted."""
    import subprocess
    try:
        text = subprocess.run(["perf", "script", "-i", path], capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for block in text.split("\n\n"):
        m = re.search(r"prev_state=(\S+) ==> next_comm=(\S+)", block)
        if not m:
            continue
        state = m.group(1)
        where = "user"
        for sym, name in (("do_epoll_wait", "epoll_wait"), ("ksys_write", "write"), ("vfs_write", "write"),
                          ("__sys_sendto", "sendto"), ("__sys_recvfrom", "recvfrom"), ("do_epoll_ctl", "epoll_ctl"),
                          ("futex", "futex"), ("do_sigtimedwait", "sigtimedwait"), ("exc_page_fault", "page fault")):
            if sym in block:
                where = name
                break
        nxt = "-" if where == "epoll_wait" and state != "R" else re.sub(r"[/:].*|\d+$", "", m.group(2))
        out[(where, state, nxt)] = out.get((where, state, nxt), 0) + 1
    return out


def cmd_counters(directory):
    """One summary per scenario run that scripts/bench recorded with BENCH_COUNTERS=DIR."""
    import glob
    for series in sorted(glob.glob(os.path.join(directory, "*.series"))):
        base = series[: -len(".series")]
        name = os.path.basename(base)
        rows = [[float(x) for x in line.split()] for line in open(series) if line.strip()]
        if len(rows) < 2:
            continue
        span, ticks_u, ticks_s = rows[-1][0] - rows[0][0], rows[-1][1] - rows[0][1], rows[-1][2] - rows[0][2]
        n = rows[-1][3] - rows[0][3]   # packets in on rt-cli: one per request (and rare ACKs)
        hz = os.sysconf("SC_CLK_TCK")
        if n <= 0 or span <= 0:
            continue
        line = [f"{name}: {n / span:,.0f} req/s; proxy {1e6 * ticks_u / hz / n:.1f} user + {1e6 * ticks_s / hz / n:.1f} system us/request"]
        try:
            c = perf_stat_counts(base + ".proxy")
            # perf stat ran for the scenario's first --duration seconds; the series spans about that.
            line.append("per request: " + ", ".join(
                f"{k.split(':')[-1].replace('sys_enter_', '')} {c[k] / n:.2f}" for k in (
                    "raw_syscalls:sys_enter", "syscalls:sys_enter_epoll_wait", "context-switches", "sched:sched_wakeup", "page-faults")
                if k in c))
        except OSError:
            pass
        try:
            (c0, i0), (c1, i1) = _proc_stat_cpus(base + ".tasks0.proc"), _proc_stat_cpus(base + ".tasks1.proc")
            parts = []
            for cpu in sorted(c0):
                d = [b - a for a, b in zip(c0[cpu], c1[cpu])]
                tot = max(sum(d), 1)
                parts.append(f"{cpu} busy {100 * (d[0] + d[1] + d[2]) / tot:.0f} idle {100 * (d[3] + d[4]) / tot:.0f} "
                             f"irq+softirq {100 * (d[5] + d[6]) / tot:.0f} steal {100 * d[7] / tot:.1f} %")
            for irq in ("RES", "CAL"):
                if irq in i0 and irq in i1:
                    parts.append(f"{irq}/request " + "/".join(f"{(b - a) / n:.2f}" for a, b in zip(i0[irq], i1[irq])))
            line.append("; ".join(parts))
        except (OSError, KeyError):
            pass
        try:
            probe = [l.split() for l in open(base + ".probe") if l.startswith("alu")]
            line.append("probe (before/after) " + " ".join(
                f"alu {p[1]} l2 {p[3]} pair {p[p.index('ratio') + 1] if 'ratio' in p else '-'}" for p in probe[::2]))
        except (OSError, ValueError, IndexError):
            pass
        try:
            m = re.search(r"^tail_us (.*)$", open(base + ".client").read(), re.M)
            if m:
                line.append("latency us: " + m.group(1))
        except OSError:
            pass
        if os.path.exists(base + ".switch"):
            reasons = sorted(_switch_reasons(base + ".switch").items(), key=lambda kv: -kv[1])[:8]
            line.append("off CPU: " + ", ".join(f"{w} {st}{'' if nx == '-' else ' -> ' + nx} {k}" for (w, st, nx), k in reasons))
        print("\n  ".join(line))
    return 0


def main(argv):
    if len(argv) < 2:
        print("usage: benchlib.py parse|record|cpucost|perrequest|capsnap|capstat|hold|rss|checklog|checkbody|report ...",
              file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "parse":
        cmd_parse(args[0], args[1])
    elif cmd == "record":
        return cmd_record(args[0], args[1], args[2], args[3], args[4])
    elif cmd == "hold":
        cmd_hold(args[0], int(args[1]), int(args[2]), args[3])
    elif cmd == "cpucost":
        return cmd_cpucost(*args)
    elif cmd == "perrequest":
        return cmd_perrequest(*args)
    elif cmd == "capsnap":
        print(json.dumps(cap_snapshot(args)))
    elif cmd == "capstat":
        return cmd_capstat(*args)
    elif cmd == "cpusnap":
        print(*cpu_snapshot(int(args[0]), int(args[1])))
    elif cmd == "rss":
        print(rss_tree_kib(int(args[0])))
    elif cmd == "checklog":
        return cmd_checklog(args[0], args[1], args[2])
    elif cmd == "checkbody":
        return cmd_checkbody(args[0], args[1], args[2])
    elif cmd == "report":
        cmd_report(args[0], args[1])
    elif cmd == "counters":
        return cmd_counters(args[0])
    elif cmd == "speednorm":
        return cmd_speednorm(*args)
    elif cmd == "sample":
        return cmd_sample(int(args[0]), float(args[1]), args[2])
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
