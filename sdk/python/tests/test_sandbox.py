"""Real sandboxes, no upstream: commands share the sandbox, results, errors, stop."""
import os
import shutil
import subprocess

import pytest

from airlock import ConfigError, Mount, Sandbox, SandboxStopped


def test_runs_share_the_sandbox(airlock_bin):
    with Sandbox.builder("w").env("GREETING", "hello").create() as sb:
        assert sb.run('echo "$GREETING" > /tmp/state; sleep 300 >/dev/null 2>&1 & echo $! > /tmp/bg').ok
        r = sb.run('cat /tmp/state; kill -0 "$(cat /tmp/bg)" && echo alive')
        assert r.stdout == b"hello\nalive\n", r


def test_results_and_options(airlock_bin):
    with Sandbox.create("w") as sb:
        r = sb.run(["sh", "-c", 'cat; echo "$X" >&2; pwd; exit 7'], input=b"in\n", env={"X": "x1"}, cwd="/tmp")
        assert (r.exit_code, r.stdout, r.stderr) == (7, b"in\n/tmp\n", b"x1\n")
        assert sb.run(["no-such-command"]).exit_code == 127
        r = sb.run(["sleep", "30"], timeout=0.2)
        assert r.timed_out
        assert sb.run("echo still").stdout == b"still\n"


def test_stop_and_context_manager(airlock_bin):
    with Sandbox.create("w") as sb:
        pass
    assert sb.wait_stopped(10)
    with pytest.raises(SandboxStopped):
        sb.run("true")


def test_airlocks_own_validation_reaches_the_caller(airlock_bin):
    for pattern, rule in (("*.com", "single label"), ("*", "allow_any_host_dangerous")):
        with pytest.raises(ConfigError, match=rule):
            Sandbox.builder("w").log_output(subprocess.DEVNULL).secret(
                lambda s: s.env("K").value("sk-fake-py-val").allow_host_pattern(pattern)).create()


def test_a_run_carrying_the_value_is_refused(airlock_bin):
    value = "sk-fake-python-refused-0123"
    with Sandbox.builder("w").secret_env("API_KEY", value, "api.example.com").create() as sb:
        with pytest.raises(ConfigError, match='secret "API_KEY"') as info:
            sb.run(["echo", "Bearer " + value])
        assert value not in str(info.value)
        with pytest.raises(ConfigError):
            sb.run(["cat"], input=value.encode())
        assert sb.run('echo "$API_KEY"').stdout == b"$MSB_API_KEY\n"
        assert sb.placeholder("API_KEY") == "$MSB_API_KEY"


def test_image_is_a_local_root_file_system(airlock_bin, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(root, 0o755)
    files = ["/bin/sh"] + [f for f in subprocess.run(["ldd", "/bin/sh"], capture_output=True, text=True).stdout.split()
                           if f.startswith("/")]
    for f in files:
        dest = root / f.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(f), dest)
    (root / "marker").write_text("from the image\n")
    with Sandbox.create("w", image=str(root), workdir="/") as sb:
        r = sb.run(["/bin/sh", "-c", 'read l < /marker; echo "$l"; test -e /usr/bin/curl || echo no-host-curl'])
        assert r.stdout == b"from the image\nno-host-curl\n", r


def test_a_mount(airlock_bin, tmp_path):
    os.chmod(tmp_path, 0o755)
    (tmp_path / "f").write_text("mounted\n")
    with Sandbox.create("w", mounts=[Mount(str(tmp_path), "/data", read_only=True)]) as sb:
        assert sb.run(["cat", "/data/f"]).stdout == b"mounted\n"
        assert sb.run("echo x > /data/g").exit_code != 0


def test_workspace_modes(airlock_bin, tmp_path):
    os.chmod(tmp_path, 0o755)
    ws = tmp_path / "project"
    ws.mkdir()
    os.chmod(ws, 0o777)
    (ws / "README").write_text("project file\n")
    with Sandbox.create("w", workspace=str(ws)) as sb:
        assert sb.run("pwd; cat README; echo made > new").stdout == f"{ws}\nproject file\n".encode()
    assert (ws / "new").read_text() == "made\n"  # read-write: the host sees it
    with Sandbox.create("w", workspace=str(ws), workspace_mode="overlay") as sb:
        assert sb.run("echo changed > README; cat README").stdout == b"changed\n"
    assert (ws / "README").read_text() == "project file\n"  # overlay: discarded
    with Sandbox.builder("w").workspace(mode="none").workdir("/").create() as sb:
        assert sb.run(["test", "-e", str(ws / "README")]).exit_code != 0
