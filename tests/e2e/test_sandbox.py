"""`airlock run`: isolation, environment, exit status, limits and cleanup, tried from inside.

Needs root (namespaces, nftables). Every test uses a fresh, obviously fake value and checks that
it appears in no output of the sandbox; no assertion prints it.
"""
import glob
import re
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import tempfile
import time

import pytest

from netlab import fake_value, run_clean, sh, wait_for

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
STATE_ROOT = "/run/airlock"


def airlock_run(args, cmd, env=None, timeout=60, secret=None, **kw):
    """airlock run; with secret, its output must not hold that value."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return run_clean(secret, [AIRLOCK, "run", *args, "--", *cmd], "airlock run's output", timeout=timeout,
                     env=full_env, **kw)


def in_sandbox(script, args=(), **kw):
    """A shell script in the sandbox (keywords as for airlock_run)."""
    return airlock_run(list(args), ["/bin/sh", "-c", script], **kw)


# Other runs (another checkout's tests, a bench) may have sandboxes alive at the same time: what
# a live owner holds is theirs, never a leftover of ours, so the before/after comparisons below
# leave it out. A sandbox of ours that ended and left something behind has a dead owner.

def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()  # [0] is field 3 (state)


def owner(state):
    """(pid, alive) of the process recorded in a state directory's owner file; (0, False) if none."""
    try:
        with open(os.path.join(state, "owner")) as f:
            pid, start = f.read().split()
    except (OSError, ValueError):
        return 0, False
    try:
        return int(pid), _stat_fields(pid)[19] == start
    except (OSError, IndexError):
        return int(pid), False


def all_state_dirs():
    """Per-sandbox state directories (not the shared directory of id leases)."""
    return set(glob.glob(STATE_ROOT + "/*")) - {STATE_ROOT + "/ids"}


def state_dirs():
    """State directories no live process owns: leftovers (a live sandbox's, maybe another run's,
    is not one)."""
    return {d for d in all_state_dirs() if not owner(d)[1]}


def live_owners():
    return {pid for pid, alive in map(owner, all_state_dirs()) if alive}


def under_a_live_sandbox(pid, owners):
    """Is pid a live sandbox owner or one of its descendants?"""
    for _ in range(64):  # bounded walk up the parents
        if pid in owners:
            return True
        try:
            pid = int(_stat_fields(pid)[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid <= 1:
            return False
    return False


def netns_with_gw0():
    """Network namespaces that hold the gateway side of a sandbox link and belong to no live
    sandbox (a leftover)."""
    owners = live_owners()
    out = sh("lsns", "-t", "net", "-n", "-o", "PID", check=False)
    found = set()
    for pid in out.stdout.split():
        if under_a_live_sandbox(int(pid), owners):
            continue
        link = sh("nsenter", "-t", pid, "-n", "ip", "-o", "link", "show", "gw0", check=False)
        if link.returncode == 0:
            found.add(os.readlink(f"/proc/{pid}/ns/net"))
    return found


def guest_inits():
    """PIDs of guest inits: argv[0] is airlock-sandbox-init (`pgrep -f` also matched any process
    whose arguments merely mention it, such as someone's shell or grep)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0", 1)[0]
        except OSError:
            continue
        if argv0 == b"airlock-sandbox-init":
            found.append(int(pid))
    return found


def stray_guest_inits():
    """PIDs of guest inits that no live sandbox owns."""
    owners = live_owners()
    return [pid for pid in guest_inits() if not under_a_live_sandbox(pid, owners)]


def host_addresses():
    out = sh("ip", "-4", "-o", "addr", "show", "scope", "global", check=False).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


class Recorder:
    """A host server on a thread that counts what reaches it (it should get nothing): TCP
    connections (each answered with HOST-SERVICE), or UDP datagrams."""

    def __init__(self, host, udp=False):
        self.udp = udp
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        if not udp:
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                if self.udp:
                    self.sock.recvfrom(2048)
                    self.count += 1
                else:
                    conn, _ = self.sock.accept()
                    self.count += 1
                    conn.sendall(b"HOST-SERVICE\n")
                    conn.close()
            except OSError:
                continue

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


# --- environment and secrets ----------------------------------------------------------------

def test_environment_holds_the_placeholder_not_the_value():
    value = fake_value()
    proc = in_sandbox("env | sort", ["--secret", "OPENAI_API_KEY@api.openai.com"],
                      env={"OPENAI_API_KEY": value, "AIRLOCK_E2E_HOST_ONLY": "leak"}, secret=value)
    assert proc.returncode == 0, proc.stderr
    assert "OPENAI_API_KEY=$MSB_OPENAI_API_KEY\n" in proc.stdout
    assert "AIRLOCK_E2E_HOST_ONLY" not in proc.stdout
    names = sorted(line.split("=", 1)[0] for line in proc.stdout.splitlines())
    ca_vars = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
               "GIT_SSL_CAINFO", "PIP_CERT", "AWS_CA_BUNDLE", "DENO_CERT", "CARGO_HTTP_CAINFO",
               "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "HTTPLIB2_CA_CERTS",
               "PERL_LWP_SSL_CA_FILE", "COMPOSER_CAFILE", "HEX_CACERTS_PATH", "NIX_SSL_CERT_FILE"]
    assert names == sorted(["HOME", "JAVA_TOOL_OPTIONS", "LANG", "OPENAI_API_KEY", "PATH", "PWD", "TERM"] + ca_vars)
    for name in ca_vars:
        assert f"{name}=/etc/ssl/certs/ca-certificates.crt\n" in proc.stdout


def test_env_and_env_pass():
    proc = in_sandbox('echo "$A|$B|$C"', ["--env", "A=1", "--env", "B=two words", "--env-pass", "C"],
                      env={"C": "from-host"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "1|two words|from-host\n"


def test_secret_file_and_missing_host_variable():
    value = fake_value()
    # Outside /tmp (the guest has its own) and outside the workspace: not in the guest's view.
    directory = tempfile.mkdtemp(dir="/var/tmp")
    try:
        os.chmod(directory, 0o755)
        path = os.path.join(directory, "token")
        with open(path, "w") as f:
            f.write(value + "\n")
        os.chmod(path, 0o600)
        proc = in_sandbox('echo "$GH_TOKEN"; cat ' + path + " 2>&1; true",
                          ["--secret-file", f"GH_TOKEN={path}@api.github.com"], secret=value)
    finally:
        shutil.rmtree(directory)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"$MSB_GH_TOKEN\ncat: {path}: No such file or directory\n"

    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_E2E_UNSET"}
    proc = sh(AIRLOCK, "run", "--secret", "AIRLOCK_E2E_UNSET@x.example", "--", "true", check=False, env=env,
              timeout=30)
    assert proc.returncode == 2
    assert "--secret AIRLOCK_E2E_UNSET: the host variable AIRLOCK_E2E_UNSET is not set" in proc.stderr


def test_inline_secret_value_is_rejected_without_echoing_it():
    value = fake_value()
    proc = airlock_run(["--secret", f"API_KEY={value}@api.example.com"], ["true"], secret=value)
    assert proc.returncode == 2
    assert "inline values are not accepted" in proc.stderr


def test_refuses_to_pass_a_variable_equal_to_a_secret_value():
    value = fake_value()
    proc = airlock_run(["--secret", "API_KEY@api.example.com", "--env-pass", "COPY"], ["true"],
                       env={"API_KEY": value, "COPY": value}, secret=value)
    assert proc.returncode == 2
    assert "environment variable COPY equals the value of secret API_KEY" in proc.stderr


def test_value_is_in_no_file_and_no_process_of_the_sandbox():
    value = fake_value()
    script = (
        "cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n';"
        # Everything readable outside the host's large read-only trees.
        "echo FILES:; grep -rlsF \"$NEEDLE_PREFIX\" /etc /tmp /root /run /var /home /dev/shm /opt"
        " 2>/dev/null; echo scanned"
    )
    # The guest greps for the value's prefix only: the full value is what must not be found.
    proc = in_sandbox(script, ["--secret", "API_KEY@api.example.com", "--env",
                               "NEEDLE_PREFIX=sk-airlock-e2e-FAKE-" + value[-16:-8]],
                      env={"API_KEY": value}, timeout=120, secret=value)
    assert proc.returncode == 0, proc.stderr
    assert "scanned" in proc.stdout
    assert "API_KEY=$MSB_API_KEY" in proc.stdout
    # No file matched the prefix either (grep -l prints paths of matches).
    assert proc.stdout.split("FILES:\n", 1)[1] == "scanned\n"


def test_host_processes_are_invisible():
    proc = in_sandbox("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; ps -e -o pid=,comm=")
    assert proc.returncode == 0, proc.stderr
    pids = [int(p) for p in proc.stdout.splitlines()[0].split()]
    assert pids[0] == 1
    assert max(pids) < 50, pids
    assert "pytest" not in proc.stdout and "python3 -m" not in proc.stdout
    assert str(os.getpid()) not in proc.stdout.split()


# --- network --------------------------------------------------------------------------------

def test_private_ranges_metadata_host_and_host_loopback_are_unreachable():
    loopback = Recorder("127.0.0.1")
    anyaddr = Recorder("0.0.0.0")
    try:
        targets = [f"127.0.0.1:{loopback.port}", "169.254.169.254:80", "10.0.0.1:80",
                   "172.16.0.1:80", "192.168.0.1:80", "100.96.0.1:15001"]
        targets += [f"{a}:{anyaddr.port}" for a in host_addresses()]
        script = "; ".join(
            f"curl -s -m 3 http://{t}/ -o /dev/null -w '{t} %{{http_code}}\\n' || echo '{t} failed'"
            for t in targets)
        proc = in_sandbox(script, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "HOST-SERVICE" not in proc.stdout
        for t in targets:
            assert f"{t} failed" in proc.stdout or f"{t} 000" in proc.stdout, proc.stdout
        assert loopback.count == 0
        assert anyaddr.count == 0
    finally:
        loopback.close()
        anyaddr.close()


def test_udp_and_raw_sockets_do_not_get_out():
    udp = Recorder("0.0.0.0", udp=True)
    try:
        addresses = host_addresses() + ["203.0.113.9", "8.8.8.8"]
        script = f"""
import socket
for a in {addresses!r}:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'leak', (a, {udp.port}))
try:
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    r.settimeout(1)
    for a in {addresses!r}:
        r.sendto(b'\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00', (a, 0))
    print('icmp-reply', r.recvfrom(100))
except socket.timeout:
    print('icmp-no-reply')
except PermissionError:
    print('raw-denied')
"""
        proc = airlock_run([], ["/usr/bin/python3", "-c", script], timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout in ("icmp-no-reply\n", "raw-denied\n")
        time.sleep(0.5)
        assert udp.count == 0
    finally:
        udp.close()


def test_guest_network_view():
    proc = in_sandbox("ip -o link | awk -F': ' '{print $2}' | sort | tr '\\n' ' '; echo;"
                      "ip route; cat /etc/resolv.conf")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"eth0@if\d+ lo ", lines[0]), lines[0]
    assert "default via 100.96.0.1 dev eth0" in proc.stdout
    assert "nameserver 100.96.0.1" in proc.stdout


# --- process --------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_status_passes_through(code):
    assert in_sandbox(f"exit {code}").returncode == code


def test_command_killed_by_signal_reports_128_plus_n():
    assert in_sandbox("kill -KILL $$").returncode == 128 + 9


def test_command_not_found_is_127():
    proc = airlock_run([], ["no-such-command-e2e"])
    assert proc.returncode == 127
    assert "cannot run 'no-such-command-e2e'" in proc.stderr


def test_timeout_kills_the_sandbox_with_124():
    start = time.monotonic()
    proc = in_sandbox("sleep 60", ["--timeout", "1"])
    assert proc.returncode == 124
    # Killed at its 1 s timeout, not after the 60 s sleep; the bound also holds the sandbox's
    # setup and teardown, which a loaded machine stretches (it was 10 s).
    assert time.monotonic() - start < 40
    assert "airlock: sandbox timed out after 1 s" in proc.stderr


def test_sigterm_is_forwarded_to_the_command():
    p = subprocess.Popen([AIRLOCK, "run", "--", "/bin/sh", "-c",
                          "trap 'echo got-term; exit 7' TERM; echo ready; sleep 30 & wait"],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 7
    assert out == "got-term\n"


def test_orphans_are_reaped_and_stdin_passes_through():
    proc = in_sandbox("(sh -c 'sleep 0.2' &); read line; echo \"got $line\"", input="hello\n", timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "got hello\n"


def test_tty_flag_gives_a_terminal():
    proc = in_sandbox("test -t 0 && test -t 1 && echo tty; tty", ["-t"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.replace("\r", "").startswith("tty\n/dev/pts/")


# --- filesystem -----------------------------------------------------------------------------

def test_system_is_read_only_and_writes_outside_the_workspace_are_discarded(tmp_path):
    marker = f"/var/tmp/airlock-e2e-{secrets.token_hex(4)}"
    proc = in_sandbox(f"mkdir -p {marker} 2>/dev/null; echo x > /usr/airlock-e2e 2>/dev/null || echo usr-ro;"
                      "touch /tmp/t && echo tmp-rw; test -f /etc/os-release && echo host-etc")
    assert proc.returncode == 0, proc.stderr
    assert "usr-ro\n" in proc.stdout and "tmp-rw\n" in proc.stdout and "host-etc\n" in proc.stdout
    assert not os.path.exists(marker)
    assert not os.path.exists("/usr/airlock-e2e")


def test_volumes(tmp_path):
    # A volume is id-mapped to its owner (airlock runs as root here, without sudo: the volume's
    # owner, never root): what the guest writes there belongs to that user on the host.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from host\n")
    os.chown(shared, 4242, 4242)
    os.chown(shared / "in.txt", 4242, 4242)
    proc = in_sandbox("cat /w/in.txt; echo out > /w/out.txt; cat /r/in.txt; echo y > /r/x 2>/dev/null || echo ro",
                      ["--volume", f"{shared}:/w", "--volume", f"{shared}:/r:ro"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from host\nfrom host\nro\n"
    assert (shared / "out.txt").read_text() == "out\n"
    assert (os.stat(shared / "out.txt").st_uid, os.stat(shared / "out.txt").st_gid) == (4242, 4242)
    assert not (shared / "x").exists()


# --- cleanup --------------------------------------------------------------------------------

def test_nothing_is_left_after_exit():
    before_state, before_ns = state_dirs(), netns_with_gw0()
    before_tables = sh("nft", "list", "tables", check=False).stdout
    assert in_sandbox("exit 3").returncode == 3
    assert in_sandbox("sleep 30", ["--timeout", "0.5"]).returncode == 124
    # What the kernel frees after the last process of a namespace exits may lag the exit (a fixed
    # 0.3 s assumed it); nothing of ours may be left once it has.
    wait_for(lambda: state_dirs() == before_state and netns_with_gw0() == before_ns, "the sandboxes' leftovers gone")
    after_tables = sh("nft", "list", "tables", check=False).stdout
    assert after_tables == before_tables
    assert "airlock" not in after_tables
    names = sh("ip", "netns", "list", check=False).stdout
    assert not re.search(r"^airlock-[0-9a-f]{8}\b", names, re.M)


def test_setup_failure_exits_3_and_leaves_nothing():
    before_state, before_ns = state_dirs(), netns_with_gw0()
    proc = airlock_run(["--volume", "/nonexistent-airlock-e2e:/x"], ["true"])
    assert proc.returncode == 3
    assert proc.stderr == "airlock: error: --volume /nonexistent-airlock-e2e: No such file or directory\n"
    bad_dns = airlock_run(["--dns-server", "not-an-ip"], ["true"])
    assert bad_dns.returncode == 2
    assert state_dirs() == before_state
    assert netns_with_gw0() == before_ns


def test_crash_leaves_state_that_gc_removes():
    before_ns = netns_with_gw0()
    p = subprocess.Popen([AIRLOCK, "run", "--pids", "50", "--", "/bin/sh", "-c",
                          "echo ready; sleep 60"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    new = {d for d in all_state_dirs() if owner(d) == (p.pid, True)}  # ours, not another run's
    assert len(new) == 1
    p.send_signal(signal.SIGKILL)  # no teardown runs: a crash
    p.wait(timeout=10)
    (state,) = new
    assert os.path.isdir(state)
    # The guest died with its owner (parent-death signal), so no sandbox process is left.
    # (Bounded wait: the kernel delivers that signal and the guest exits after the owner's end.)
    deadline = time.monotonic() + 30
    while stray_guest_inits() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stray_guest_inits() == []
    gc = sh(AIRLOCK, "gc", check=False, timeout=30)
    assert gc.returncode == 0, gc.stderr
    assert f"removed state {state}\n" in gc.stdout
    assert not os.path.exists(state)
    # The gateway namespace is anonymous: it died with the crashed process's fds.
    assert netns_with_gw0() == before_ns
    assert not glob.glob("/sys/fs/cgroup/*/airlock-" + os.path.basename(state))
