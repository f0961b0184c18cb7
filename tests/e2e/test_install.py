"""Install and packaging: `cmake --install`, the systemd unit, the man page, `airlock version`,
and the Debian package CPack builds, installed with dpkg into a clean Debian 12 root and run there.

The clean root is made from this (Debian 12) host's own packages, as debootstrap would make it but
without a network: every Essential package and the .deb's declared dependencies, closed over
their dependencies, each package's files copied from the host and its entry in the root's dpkg
database. Nothing else of the host is in it, so a library the package uses but does not declare
makes `airlock --help` fail there (the test shows that it would, with libssl3 left out).
"""
import functools
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from netlab import fake_value, run_clean, sh

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
BUILD = os.environ.get("AIRLOCK_BUILD_DIR", "")
SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def needs_build(test):
    """Fails, never skips, without a build: a run that cannot install must not pass as coverage."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        assert BUILD, "needs AIRLOCK_BUILD_DIR (run through ctest: e2e.test_install)"
        return test(*args, **kwargs)
    return run


# ---------------------------------------------------------------- cmake --install


@needs_build
def test_cmake_install_puts_binary_unit_config_and_man_page(tmp_path):
    prefix = tmp_path / "prefix"
    sh("cmake", "--install", BUILD, "--prefix", str(prefix))
    binary = prefix / "bin" / "airlock"
    assert os.access(binary, os.X_OK)
    assert sh(str(binary), "--help").stdout.startswith("airlock: ")
    for path in ("share/doc/airlock/examples/airlock.toml", "share/doc/airlock/examples/gateway.toml",
                 "share/man/man1/airlock.1", "lib/systemd/system/airlock-gateway.service"):
        assert (prefix / path).is_file(), path
    unit = (prefix / "lib/systemd/system/airlock-gateway.service").read_text()
    # The unit runs the binary of this install's prefix, not the prefix the build was configured with.
    assert f"ExecStart={binary} gateway --config /etc/airlock/gateway.toml\n" in unit
    for hardening in ("DynamicUser=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "LimitCORE=0"):
        assert hardening in unit
    if shutil.which("systemd-analyze"):
        proc = subprocess.run(["systemd-analyze", "verify", "--man=no",
                               str(prefix / "lib/systemd/system/airlock-gateway.service")],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    # The installed example configs are valid (the gateway's with its credential path as a file).
    value = fake_value()
    proc = run_clean(value, [str(binary), "check", str(prefix / "share/doc/airlock/examples/airlock.toml")],
                     "airlock check example", env={**os.environ, "OPENAI_API_KEY": value})
    assert proc.returncode == 0, proc.stderr
    gateway_toml = (prefix / "share/doc/airlock/examples/gateway.toml").read_text()
    credential = tmp_path / "openai"
    credential.write_text(value + "\n")
    mine = tmp_path / "gateway.toml"
    mine.write_text(gateway_toml.replace("/run/credentials/airlock-gateway.service/OPENAI_API_KEY", str(credential)))
    proc = run_clean(value, [str(binary), "check", str(mine)], "airlock check gateway.toml")
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1:3128" in proc.stdout


def _help_entries(args):
    """Subcommands and long options `airlock ARGS --help` lists, recursively."""
    text = sh(AIRLOCK, *args, "--help").stdout
    options = set(re.findall(r"^\s+(?:-\w,)?(--[a-z][a-z-]*)", text, re.M)) - {"--help"}
    found = {(tuple(args), o) for o in options}
    if "Subcommands:" in text:
        for line in text.split("Subcommands:", 1)[1].splitlines():
            m = re.match(r"^  ([a-z][a-z-]*)\s", line)
            if m:
                found.add((tuple(args), m.group(1)))
                found |= _help_entries([*args, m.group(1)])
    return found


def test_man_page_names_every_subcommand_and_option():
    page = open(os.path.join(SOURCE, "deploy/man/airlock.1")).read().replace("\\-", "-")
    page = re.sub(r"\\f[BIRP]", " ", page)  # font changes
    entries = _help_entries([])
    assert ((), "gateway") in entries and (("run",), "--secret") in entries  # the parser sees them
    missing = sorted(f"{' '.join(cmd)} {name}".strip() for cmd, name in entries
                     if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", page))
    assert not missing, f"deploy/man/airlock.1 does not mention: {missing}"


# ---------------------------------------------------------------- airlock version


def _git_describe(source):
    proc = subprocess.run(["git", "-C", source, "describe", "--always", "--dirty", "--abbrev=12", "--tags"],
                          capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else None


def test_version_names_the_commit():
    described = _git_describe(SOURCE)
    out = sh(AIRLOCK, "version").stdout
    assert re.fullmatch(r"airlock \d+\.\d+\.\d+ \(\S+\)\n", out), out
    if described is None:
        pytest.skip("not a git checkout: the fallback is tested below")
    head = sh("git", "-C", SOURCE, "rev-parse", "--short=12", "HEAD").stdout.strip()
    assert head in out, f"{out!r} does not name HEAD {head} (rebuild after committing)"


def test_version_falls_back_outside_a_git_checkout(tmp_path):
    script = os.path.join(SOURCE, "cmake/git_version.cmake")
    header = tmp_path / "build_commit.hpp"
    not_git = tmp_path / "tarball"
    not_git.mkdir()
    sh("cmake", f"-DSOURCE_DIR={not_git}", f"-DOUTPUT={header}", "-DFALLBACK=release tarball", "-P", script)
    assert '#define AIRLOCK_BUILD_COMMIT "release_tarball"\n' in header.read_text()
    before = header.stat().st_mtime_ns
    sh("cmake", f"-DSOURCE_DIR={not_git}", f"-DOUTPUT={header}", "-DFALLBACK=release tarball", "-P", script)
    assert header.stat().st_mtime_ns == before  # unchanged text: not rewritten, nothing rebuilds
    if _git_describe(SOURCE):
        sh("cmake", f"-DSOURCE_DIR={SOURCE}", f"-DOUTPUT={header}", "-DFALLBACK=x", "-P", script)
        assert f'"{_git_describe(SOURCE)}"' in header.read_text()


# ---------------------------------------------------------------- the .deb in a clean Debian 12 root


def _installed_packages():
    """Every installed package: name -> (Essential, Pre-Depends + Depends, Provides)."""
    out = sh("dpkg-query", "-W", "-f", "${Package}\t${db:Status-Abbrev}\t${Essential}\t${Pre-Depends}, ${Depends}\t${Provides}\n").stdout
    packages = {}
    for line in out.splitlines():
        name, status, essential, depends, provides = line.split("\t")
        if status.startswith("ii"):
            packages[name] = (essential == "yes", depends, provides)
    return packages


def _names(field):
    """A Depends field as groups of alternatives, each a list of package names."""
    groups = []
    for group in field.split(","):
        names = [re.sub(r"\(.*?\)|:\w+", "", alt).strip() for alt in group.split("|")]
        names = [n for n in names if n]
        if names:
            groups.append(names)
    return groups


def _closure(seeds, packages):
    provided_by = {}
    for name, (_, _, provides) in packages.items():
        for group in _names(provides):
            provided_by.setdefault(group[0], name)
    chosen, todo = set(), list(seeds)
    while todo:
        name = todo.pop()
        real = name if name in packages else provided_by.get(name)
        assert real, f"{name} is not installed on this host"
        if real in chosen:
            continue
        chosen.add(real)
        for group in _names(packages[real][1]):
            pick = next((n for n in group if n in packages or n in provided_by), None)
            assert pick, f"{real} needs one of {group}, none is installed on this host"
            todo.append(pick)
    return chosen


def _add_package(root, name):
    """Copies an installed package's files from the host into `root` and records it in the root's
    dpkg database (status entry and file list), as dpkg would have unpacked it."""
    for line in sh("dpkg", "-L", name).stdout.splitlines():
        path = line.strip()
        if not path.startswith("/") or path in ("/.",):
            continue
        target = root + path
        if os.path.islink(path):
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(os.readlink(path), target)
        elif os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        elif os.path.isfile(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.lexists(target):
                shutil.copy2(path, target)
    for info in glob.glob(f"/var/lib/dpkg/info/{name}.*") + glob.glob(f"/var/lib/dpkg/info/{name}:*.*"):
        shutil.copy2(info, os.path.join(root, "var/lib/dpkg/info", os.path.basename(info)))
    stanza = sh("dpkg-query", "-s", name).stdout.strip()
    with open(os.path.join(root, "var/lib/dpkg/status"), "a") as status:
        status.write(stanza + "\n\n")


def _new_root(parent):
    root = os.path.join(parent, "root")
    os.makedirs(root)
    # Merged /usr, as on the host and in every Debian 12 install.
    for top in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink("/" + top):
            link = os.readlink("/" + top)
            os.makedirs(os.path.join(root, link.lstrip("/")), exist_ok=True)
            os.symlink(link, os.path.join(root, top))
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "tmp", "proc", "dev", "etc"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    open(os.path.join(root, "var/lib/dpkg/status"), "w").close()
    open(os.path.join(root, "var/lib/dpkg/available"), "w").close()
    return root


@needs_build
def test_deb_installs_into_a_clean_debian_12_root_and_runs():
    assert "VERSION_ID=\"12\"" in open("/etc/os-release").read(), "the clean root is made from a Debian 12 host"
    work = tempfile.mkdtemp(prefix="airlock-deb-")
    try:
        sh("cpack", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", os.path.join(work, "pkg"),
           timeout=300)
        debs = glob.glob(os.path.join(work, "pkg", "airlock_*.deb"))
        assert len(debs) == 1, debs
        deb = debs[0]
        contents = sh("dpkg-deb", "-c", deb).stdout
        for path in ("./usr/bin/airlock", "./usr/lib/systemd/system/airlock-gateway.service",
                     "./usr/share/man/man1/airlock.1", "./usr/share/doc/airlock/examples/airlock.toml"):
            assert path in contents
        depends = sh("dpkg-deb", "-f", deb, "Depends").stdout
        for needed in ("libc6", "libssl3", "libstdc++6", "nftables"):
            assert needed in depends, depends

        packages = _installed_packages()
        essential = [n for n, (ess, _, _) in packages.items() if ess]
        declared = [group[0] for group in _names(depends)]
        everything = _closure(essential + declared, packages)
        without_ssl = _closure(essential + [d for d in declared if d != "libssl3"], packages)
        assert "libssl3" not in without_ssl, "the control needs a root without libssl3"
        root = _new_root(work)
        for name in sorted(without_ssl):
            _add_package(root, name)
        sh("chroot", root, "/sbin/ldconfig")

        # The root holds only what was declared: dpkg refuses while libssl3 is missing, and a
        # forced install does not run (the host's libraries are not in the root).
        proc = subprocess.run(["dpkg", f"--root={root}", "-i", deb], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "libssl3" in proc.stderr, proc.stderr
        sh("dpkg", f"--root={root}", "--force-depends", "-i", deb, timeout=120)
        proc = subprocess.run(["chroot", root, "/usr/bin/airlock", "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "libssl" in proc.stderr, proc.stderr
        sh("dpkg", f"--root={root}", "--force-depends", "-r", "airlock", timeout=120)

        for name in sorted(everything - without_ssl):
            _add_package(root, name)
        sh("chroot", root, "/sbin/ldconfig")
        sh("dpkg", f"--root={root}", "-i", deb, timeout=120)  # every dependency met: no force
        assert "Status: install ok installed" in sh("dpkg", f"--root={root}", "-s", "airlock").stdout

        proc = sh("chroot", root, "/usr/bin/airlock", "--help")
        assert proc.stdout.startswith("airlock: run untrusted code") and "gateway" in proc.stdout
        assert re.fullmatch(r"airlock \d+\.\d+\.\d+ \(\S+\)\n", sh("chroot", root, "/usr/bin/airlock", "version").stdout)
        value = fake_value()
        proc = run_clean(value, ["chroot", root, "/usr/bin/airlock", "check", "/usr/share/doc/airlock/examples/airlock.toml"],
                         "airlock check in the root", env={**os.environ, "OPENAI_API_KEY": value})
        assert proc.returncode == 0, proc.stderr
        unit = open(os.path.join(root, "usr/lib/systemd/system/airlock-gateway.service")).read()
        assert "ExecStart=/usr/bin/airlock gateway" in unit

        sh("dpkg", f"--root={root}", "-r", "airlock", timeout=120)
        assert not os.path.lexists(os.path.join(root, "usr/bin/airlock"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- warnings as errors: ours, not a consumer's


def _configure(tmp_path, source, *args):
    build = tmp_path / "b"
    sh("cmake", "-S", str(source), "-B", str(build), "-G", "Ninja", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", *args,
       timeout=300)
    commands = json.load(open(build / "compile_commands.json"))
    return [c for c in commands if "/secrets/host_pattern.cpp" in c["file"]]


def test_werror_for_our_builds_not_for_a_project_that_embeds_airlock(tmp_path):
    # host_pattern.cpp is compiled into the module library and the SDK's package library: every
    # compile of it is checked.
    # Top level (a user's `cmake -S airlock`): -Werror.
    ours = _configure(tmp_path / "top", SOURCE)
    assert ours and all("-Werror" in c["command"] and "-Wall" in c["command"] for c in ours)
    # Embedded with add_subdirectory: warnings stay on, errors are the consumer's choice.
    consumer = tmp_path / "consumer"
    consumer.mkdir()
    (consumer / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\nproject(consumer CXX)\n"
        f"add_subdirectory({SOURCE} airlock)\n")
    embedded = _configure(tmp_path / "embedded", consumer)
    assert embedded and all("-Werror" not in c["command"] and "-Wall" in c["command"] for c in embedded)
    forced = _configure(tmp_path / "forced", consumer, "-DAIRLOCK_WERROR=ON")
    assert forced and all("-Werror" in c["command"] for c in forced)
