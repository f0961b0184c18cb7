"""The sandbox boundary, attacked from inside: the project is the guest's workspace (wherever it
lies, its files owned on the host by the invoking user), the host's other files are not in the
view, no file the guest can read holds a secret's value, every sandbox has ids of its own, and
nothing planted through a volume runs as someone else on the host.

Needs root. Each test builds its own directories (and a throw-away user) and removes them, even
when it fails; no assertion prints a value.
"""
import contextlib
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from netlab import assert_absent, fake_value, run_clean, sh

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
STATE_ROOT = "/run/airlock"
TAG = secrets.token_hex(3)

# What the README shows, verbatim: a script that reads its key from the environment and
# writes a file beside itself.
AGENT = """import os, pathlib
here = pathlib.Path(__file__).resolve().parent
(here / "result.txt").write_text("key=" + os.environ["OPENAI_API_KEY"] + "\\n")
print("agent ran in", os.getcwd())
"""


def host_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("SUDO_UID", "SUDO_GID", "SUDO_USER")}
    env.update(extra)
    return env


def airlock(args, cmd, secret=None, cwd=None, env=None, timeout=60):
    return run_clean(secret, [AIRLOCK, "run", *args, "--", *cmd], "airlock run's output", timeout=timeout,
                     cwd=cwd, env=env or host_env())


@contextlib.contextmanager
def directory(parent, mode=0o755, owner=None):
    path = tempfile.mkdtemp(prefix=f"airlock-e2e-{TAG}-", dir=parent)
    try:
        os.chmod(path, mode)
        if owner is not None:
            os.chown(path, owner, owner)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def throwaway_user():
    name = f"al{TAG}"
    sh("useradd", "--create-home", "--shell", "/bin/sh", name)
    try:
        yield pwd.getpwnam(name)
    finally:
        sh("userdel", "--remove", "--force", name, check=False)


def write(path, text, mode=0o644, owner=None):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner, owner)


# --- 1. the workspace ----------------------------------------------------------------------

def check_readme_example(project, owner_uid, owner_gid):
    value = fake_value()
    write(os.path.join(project, "agent.py"), AGENT, owner=None)
    os.chown(os.path.join(project, "agent.py"), owner_uid, owner_gid)
    proc = airlock(["--secret", "OPENAI_API_KEY@api.openai.com"], ["python3", "agent.py"], secret=value,
                   cwd=project, env=host_env(OPENAI_API_KEY=value))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"agent ran in {project}\n"
    result = os.path.join(project, "result.txt")
    with open(result) as f:
        assert f.read() == "key=$MSB_OPENAI_API_KEY\n"
    st = os.stat(result)
    assert (st.st_uid, st.st_gid) == (owner_uid, owner_gid)


def test_readme_example_works_from_a_project_under_root():
    with directory("/root") as project:
        check_readme_example(project, 0, 0)


def test_readme_example_works_from_a_mktemp_project():
    with directory(None, mode=0o700) as project:
        check_readme_example(project, 0, 0)


def test_readme_example_works_from_a_users_home_and_its_files_are_the_users():
    with throwaway_user() as user:
        project = os.path.join(user.pw_dir, "proj")
        os.mkdir(project)
        os.chown(project, user.pw_uid, user.pw_gid)
        check_readme_example(project, user.pw_uid, user.pw_gid)
        # The home directory itself (keys, history) is not shared by default: only a project in it.
        os.makedirs(os.path.join(user.pw_dir, ".ssh"), exist_ok=True)
        write(os.path.join(user.pw_dir, ".ssh", "id_e2e"), "PRIVATE KEY\n", mode=0o600, owner=user.pw_uid)
        proc = airlock([], ["sh", "-c", f"pwd; cat {user.pw_dir}/.ssh/id_e2e 2>&1; true"], cwd=user.pw_dir)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"/root\ncat: {user.pw_dir}/.ssh/id_e2e: No such file or directory\n"
        assert f"the current directory {user.pw_dir} is not shared" in proc.stderr
        # Whoever runs airlock (root, or a user through sudo): the project's owner owns what the
        # guest makes in it, also in the user's volumes.
        data = os.path.join(user.pw_dir, "data")
        os.mkdir(data)
        os.chown(data, user.pw_uid, user.pw_gid)
        proc = airlock(["-v", f"{data}:/data"], ["sh", "-c", "echo x > made.txt; echo y > /data/made.txt"],
                       cwd=project, env=host_env(SUDO_UID="0", SUDO_GID="0"))
        assert proc.returncode == 0, proc.stderr
        for path in (os.path.join(project, "made.txt"), os.path.join(data, "made.txt")):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid), path


def test_workdir_no_workdir_and_overlay():
    with directory("/srv") as project, directory("/srv") as elsewhere:
        write(os.path.join(project, "in.txt"), "host copy\n")
        proc = airlock(["--workdir", project], ["sh", "-c", "pwd; cat in.txt; echo new > out.txt"], cwd=elsewhere)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"{project}\nhost copy\n"
        assert os.path.exists(os.path.join(project, "out.txt"))
        assert not os.path.exists(os.path.join(elsewhere, "out.txt"))

        proc = airlock(["--no-workdir"], ["sh", "-c", f"pwd; ls {project} 2>&1; true"], cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == f"/root\nls: cannot access '{project}': No such file or directory\n"

        proc = airlock(["--workdir-overlay"], ["sh", "-c", "echo changed > in.txt; echo new > o2.txt; cat in.txt o2.txt"],
                       cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "changed\nnew\n"
        with open(os.path.join(project, "in.txt")) as f:
            assert f.read() == "host copy\n"
        assert not os.path.exists(os.path.join(project, "o2.txt"))

        bad = airlock(["--workdir", "/"], ["true"], cwd=project)
        assert bad.returncode == 2 and "cannot be the workspace" in bad.stderr, bad.stderr


# --- 2. the allow-listed view -------------------------------------------------------------

def test_the_guest_sees_only_the_allow_list():
    with directory(None) as project, directory("/srv") as volume:
        marker = f"/opt/airlock-e2e-{TAG}"
        os.makedirs(marker)
        try:
            proc = airlock(["-v", f"{volume}:/data:ro"],
                           ["sh", "-c", "ls -A /; ls /root; for p in /home /srv /mnt /media /opt /var/lib "
                            f"{marker} /etc/shadow /etc/gshadow /etc/sudoers; do test -e $p && echo seen $p; done; "
                            "test -e /usr/bin/python3 && echo usr; echo x > /usr/x 2>/dev/null || echo usr-ro; "
                            "echo x > /etc/x 2>/dev/null || echo etc-ro; test -d /data && echo data; true"],
                           cwd=project)
        finally:
            os.rmdir(marker)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        root_entries = set(lines[: lines.index("usr")]) if "usr" in lines else set(lines)
        assert "seen" not in proc.stdout, proc.stdout
        assert {"usr", "usr-ro", "etc-ro", "data"} <= set(lines), proc.stdout
        allowed = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr", "etc", "tmp", "run", "dev", "proc",
                   "sys", "root", "var", "data"}
        assert root_entries <= allowed, root_entries

        view = sh(AIRLOCK, "run", "--print-view", "-v", f"{volume}:/data:ro", cwd=project, env=host_env())
        assert view.returncode == 0, view.stderr
        assert re.search(rf"^{re.escape(project)} +workspace: host {re.escape(project)}, read-write", view.stdout, re.M)
        assert re.search(rf"^/data +volume: host {re.escape(volume)}, read-only", view.stdout, re.M)
        assert re.search(r"^/etc .*hidden:.*\bshadow\b", view.stdout, re.M)


def test_rootfs_keeps_working():
    with directory("/srv") as rootfs, directory("/srv") as project:
        for d in ("usr", "etc"):
            os.makedirs(os.path.join(rootfs, d))
        # A tiny root whose programs come from the host's system directories, as volumes.
        proc = airlock(["--rootfs", rootfs, "-v", "/usr:/usr:ro", "-v", "/lib:/lib:ro", "-v", "/lib64:/lib64:ro",
                        "-v", "/bin:/bin:ro"],
                       ["/bin/sh", "-c", "ls /etc; pwd; echo hi > mine.txt"], cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1] == project
        assert os.path.exists(os.path.join(project, "mine.txt"))


# --- 3. no value in a file the guest can read ----------------------------------------------

@pytest.mark.parametrize("where", ["srv", "etc", "project", "beside-config"])
def test_secret_source_files_are_unreadable_wherever_they_lie(where):
    value = fake_value()
    with directory("/srv") as project, directory("/srv") as outside:
        confdir = os.path.join(outside, "conf")
        os.mkdir(confdir)
        path = {"srv": os.path.join(outside, "token"), "etc": f"/etc/airlock-e2e-{TAG}.token",
                "project": os.path.join(project, "token"), "beside-config": os.path.join(confdir, "token")}[where]
        write(path, value + "\n", mode=0o644)
        try:
            if where == "beside-config":
                config = os.path.join(confdir, "airlock.toml")
                write(config, '[[secret]]\nenv = "API_TOKEN"\nvalue_from = "file:token"\n'
                              'allow_hosts = ["api.example.com"]\n')
                args = ["--config", config]
            else:
                args = ["--secret-file", f"API_TOKEN={path}@api.example.com"]
            proc = airlock(args, ["sh", "-c", f'echo "$API_TOKEN"; cat {path} 2>&1; echo end'], secret=value,
                           cwd=project)
        finally:
            if where == "etc":
                os.unlink(path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0] == "$MSB_API_TOKEN"
        if where == "project":
            assert lines[1:] == ["end"]  # shown as an empty file
            assert f"the guest sees {path} empty: it is a secret's source file" in proc.stderr
        else:
            assert lines[1:] == [f"cat: {path}: No such file or directory", "end"]


def test_a_dotenv_with_the_hosts_value_shows_the_placeholder():
    value = fake_value()
    with directory("/srv") as project:
        dotenv = os.path.join(project, ".env")
        sub = os.path.join(project, "deep", "er")
        os.makedirs(sub)
        content = f"# keys\nOPENAI_API_KEY={value}\nOTHER=1\n"
        write(dotenv, content, mode=0o600)
        write(os.path.join(sub, "cfg.json"), '{"k": "%s", "again": "%s"}' % (value, value))
        proc = airlock(["--secret", "OPENAI_API_KEY@api.openai.com"],
                       ["sh", "-c", "cat .env deep/er/cfg.json; ls -l .env | cut -c1-10"], secret=value,
                       cwd=project, env=host_env(OPENAI_API_KEY=value))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ("# keys\nOPENAI_API_KEY=$MSB_OPENAI_API_KEY\nOTHER=1\n"
                               '{"k": "$MSB_OPENAI_API_KEY", "again": "$MSB_OPENAI_API_KEY"}-rw-------\n')
        assert (f"the guest sees {dotenv} with placeholders: it holds the value of OPENAI_API_KEY"
                in proc.stderr), proc.stderr
        with open(dotenv) as f:
            assert f.read() == content, "the host's .env changed"
        assert stat.S_IMODE(os.stat(dotenv).st_mode) == 0o600


# --- 4. ids ---------------------------------------------------------------------------------

def test_a_host_file_of_the_old_fixed_range_is_unreadable():
    with directory("/srv") as project:
        path = os.path.join(project, "theirs")
        write(path, "private data of uid 100000\n", mode=0o600, owner=100000)
        proc = airlock([], ["sh", "-c", "cat theirs 2>&1; cat /proc/self/uid_map"], cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert "private data" not in proc.stdout
        assert "cat: theirs: Permission denied" in proc.stdout
        inside, host, count = (int(x) for x in proc.stdout.splitlines()[-1].split())
        assert (inside, count) == (0, 65536)
        assert not (host <= 100000 < host + count)


@contextlib.contextmanager
def overlay_mount(parent):
    """A host directory on overlayfs: a file system whose mounts cannot be id-mapped."""
    with directory(parent) as base:
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(base, d))
        merged = os.path.join(base, "merged")
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work", merged)
        try:
            os.chmod(merged, 0o777)
            yield merged
        finally:
            sh("umount", "-l", merged, check=False)


def test_one_sandbox_cannot_read_a_file_of_a_concurrent_one():
    with directory("/srv") as project, overlay_mount("/srv") as shared:
        # The first leaves a private file where the second also looks (a shared volume whose file
        # system cannot map ids, so it would be written with the first's own host ids).
        first = subprocess.Popen([AIRLOCK, "run", "-v", f"{shared}:/shared", "--", "sh", "-c",
                                  "cat /proc/self/uid_map; echo the-first-sandboxs-data > /shared/private && "
                                  "chmod 600 /shared/private; echo written; exec sleep 30"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project,
                                 env=host_env())
        try:
            first_map = first.stdout.readline().split()
            first.stdout.readline()
            second = airlock(["-v", f"{shared}:/shared"],
                             ["sh", "-c", "cat /proc/self/uid_map; cat /shared/private 2>&1; true"], cwd=project)
            alone = airlock([], ["cat", "/proc/self/uid_map"], cwd=project)
        finally:
            first.kill()
            _, first_err = first.communicate(timeout=30)
        assert "the-first-sandboxs-data" not in second.stdout
        if first_map:  # it started: then the file system must have refused it, not the guest's ids
            assert not os.path.exists(os.path.join(shared, "private")) or \
                os.stat(os.path.join(shared, "private")).st_uid < 65536
        else:
            assert "cannot map ids" in first_err, first_err
        # Every live sandbox has ids of its own.
        assert alone.returncode == 0, alone.stderr
        maps = [m for m in (first_map, alone.stdout.split()) if m]
        if len(maps) == 2:
            assert abs(int(maps[0][1]) - int(maps[1][1])) >= 65536, maps


def test_concurrent_sandboxes_get_distinct_id_ranges():
    with directory("/srv") as project:
        first = subprocess.Popen([AIRLOCK, "run", "--", "sh", "-c", "cat /proc/self/uid_map; exec sleep 30"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project,
                                 env=host_env())
        try:
            first_map = first.stdout.readline().split()
            second = airlock([], ["cat", "/proc/self/uid_map"], cwd=project)
        finally:
            first.kill()
            first.wait(timeout=30)
        assert second.returncode == 0, second.stderr
        a, b = int(first_map[1]), int(second.stdout.split()[1])
        assert abs(a - b) >= 65536, (a, b)
        for host in (a, b):
            assert host >= 0x70000000 and host + 65536 <= 0x7FFE0000


def test_id_leases_are_released_and_stale_ones_collected():
    ids = os.path.join(STATE_ROOT, "ids")
    with directory("/srv") as project:
        first = subprocess.Popen([AIRLOCK, "run", "--", "sh", "-c", "cat /proc/self/uid_map; exec sleep 30"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project,
                                 env=host_env())
        try:
            lease = os.path.join(ids, first.stdout.readline().split()[1])
            assert os.path.exists(lease)  # held while the sandbox lives
        finally:
            first.terminate()
            first.wait(timeout=30)
    assert not os.path.exists(lease)  # and released at exit
    stale = os.path.join(ids, str(0x7FFD0000))
    write(stale, "")
    gc = sh(AIRLOCK, "gc", check=False)
    assert gc.returncode == 0, gc.stderr
    assert f"removed id lease {stale}\n" in gc.stdout
    assert not os.path.exists(stale)


SETID_ATTACK = r"""
cp /bin/sh ./sh-copy && chmod 4755 ./sh-copy && echo planted-chmod-suid
cp /bin/sh ./sh-gid && chmod 2755 ./sh-gid && echo planted-chmod-sgid
python3 -c 'import os; os.close(os.open("made-suid", os.O_CREAT|os.O_WRONLY, 0o4755)); print("planted-open-suid")'
python3 -c 'import os; os.mknod("dev-null", 0o666|0o020000, os.makedev(1, 3)); print("planted-device")'
touch rootfile && chown 0:0 rootfile && echo chowned
setcap cap_setuid+ep ./plain 2>/dev/null && echo planted-caps
echo written > ./plain
true
"""


@pytest.mark.parametrize("owner", [0, 4242])
def test_setuid_device_and_root_files_cannot_be_planted_through_a_rw_volume(owner):
    with directory("/srv") as project, directory("/srv", owner=owner) as volume:
        proc = airlock(["-v", f"{volume}:/data"], ["sh", "-c", "cd /data && " + SETID_ATTACK], cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert "planted" not in proc.stdout, proc.stdout
        for name in os.listdir(volume):
            st = os.lstat(os.path.join(volume, name))
            assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), name
            assert not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)), name
            assert st.st_uid != 0 and st.st_gid != 0, name
            assert st.st_uid == owner, (name, st.st_uid)
        if owner:
            # Not vacuous: the guest could write there, as the volume's owner.
            with open(os.path.join(volume, "plain")) as f:
                assert f.read() == "written\n"
