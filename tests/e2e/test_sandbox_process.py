"""`airlock run`: what the guest's processes get of the host besides files: their argv (verbatim),
their terminal (never a descriptor of a host terminal), and the system calls and socket families
the seccomp filter leaves them. Written as attacks; needs root.
"""
import os
import select
import subprocess
import termios
import time
import tty

import pytest

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")


def run(args, cmd, timeout=60, **kw):
    kw.setdefault("capture_output", True)
    return subprocess.run([AIRLOCK, "run", *args, "--", *cmd], timeout=timeout, **kw)


def python(script, args=(), **kw):
    return run(list(args), ["python3", "-c", script], **kw)


# --- arguments ------------------------------------------------------------------------------

ODD_ARGUMENTS = [b"[1,2]", b"", b"--", b"-t", b"--tty", b"{a,b}", b"two words", b" ", b"\xff\xfe\x80",
                 b"--x=y", b"a=b", b"--env", b"-v", b"[]", b"[a]", b"a,b", b"'quoted'", b"*", b"\\n",
                 b"--help"]


def test_arguments_after_the_separator_reach_the_command_byte_for_byte():
    # The guest prints each argument in hex: what it got, not what a shell or parser made of it.
    script = "import os, sys; print(' '.join(os.fsencode(a).hex() for a in sys.argv[1:]))"
    proc = run([], [b"python3", b"-c", script.encode(), *ODD_ARGUMENTS], timeout=30)
    assert proc.returncode == 0, proc.stderr
    got = [bytes.fromhex(h) for h in proc.stdout.decode().rstrip("\n").split(" ")]
    assert got == ODD_ARGUMENTS


def test_options_before_the_separator_still_apply_and_a_second_separator_is_an_argument():
    proc = run(["--env", "SEEN=yes"], ["/bin/sh", "-c", 'echo "$SEEN:$1:$2"', "sh", "--", "[1,2]"],
               timeout=30, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "yes:--:[1,2]\n"


def test_a_separator_without_a_command_is_a_usage_error():
    proc = subprocess.run([AIRLOCK, "run", "--"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "no command" in proc.stderr
