"""`airlock run` with HTTP/2 and gRPC (issue 13): unmodified h2 clients inside the sandbox call
real h2 servers with the placeholder; the value is substituted at the allowed host only, per
stream, and echoes come back masked in headers, DATA and trailers.

  sandbox ── its gateway ── host netns HOST_IP ──veth── UP_IP upstream netns
  upstream: nginx (TLS, h2 and http/1.1 by ALPN, :443; it logs the protocol of every request)
  and a grpcio server (TLS, :8443), certificates from a test CA the gateway trusts for
  upstreams; DNS from a dnsmasq on the host's loopback: api.h2.test and alt.h2.test (both
  allowed for the secret) and evil.h2.test (not allowed), all at the upstream's address.

Clients: curl --http2, httpx (http2=True), Go net/http (built by the test, standard library
only), Node's http2.connect, python grpcio (unary and server-streaming, `authorization`
metadata), and a raw h2 client (python3-hpack over ssl) for what libraries will not send: one
stream of several with a mismatched :authority, HPACK dynamic-table references, a header block
split over CONTINUATION in the middle of the placeholder, a body placeholder split across DATA
frames.

By hand, AIRLOCK_E2E_H2_DIRECT=1 runs the same clients straight against the upstream (in its
namespace, trusting the test CA, holding the value itself, echoes expected unmasked): every test
passes there except the four about gates (mismatched :authority, disallowed authority, the
mismatched stream of the HPACK test, block-and-terminate), which fail there by design.

Needs root, nginx-light (http_v2), python3-grpcio, python3-httpx, python3-h2, golang-go, nodejs.
No assertion prints the fake value.
"""
import json
import os
import textwrap

import pytest

from netlab import Lab, TAG, assert_absent, assert_equal_secret, fake_value, link_addresses, listening, run_clean, sh, wait_for

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
DIRECT = os.environ.get("AIRLOCK_E2E_H2_DIRECT") == "1"
PY = "/usr/bin/python3"
UPNS = f"alh2u{TAG}"
HOST_IF, UP_IF = f"alh2h{TAG}", f"alh2p{TAG}"
HOST_IP, UP_IP, _, _ = link_addresses()  # this run's own /30 on the host
API, ALT, EVIL = "api.h2.test", "alt.h2.test", "evil.h2.test"
GRPC_PORT = 8443

GRPC_SERVER = r"""
import sys, grpc
from concurrent import futures
cert, key, records, host, port = sys.argv[1:6]
def record(name, context):
    meta = dict(context.invocation_metadata())
    with open("%s/grpc-%s" % (records, name), "w") as f:  # compared by the test, never printed
        f.write(meta.get("authorization", ""))
    return meta.get("authorization", "")
def call(request, context):
    record("unary", context)
    return b"pong:" + request
def stream(request, context):
    record("stream", context)
    for i in range(3):
        yield b"part%d:" % i + request
def echo(request, context):
    auth = record("echo", context)
    context.send_initial_metadata((("x-echo-initial", auth),))
    context.set_trailing_metadata((("x-echo-trailer", auth),))
    return b"echo:" + auth.encode()
handler = grpc.method_handlers_generic_handler("airlock.Echo", {
    "Call": grpc.unary_unary_rpc_method_handler(call),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
    "Echo": grpc.unary_unary_rpc_method_handler(echo)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
server.add_secure_port("%s:%s" % (host, port), creds)
server.start()
server.wait_for_termination()
"""

GRPC_CLIENT = f"""
import os, grpc
channel = grpc.secure_channel("{API}:{GRPC_PORT}", grpc.ssl_channel_credentials())
md = [("authorization", "Bearer " + os.environ["API_KEY"])]
reply = channel.unary_unary("/airlock.Echo/Call")(b"ping", metadata=md, timeout=30)
print("unary", reply.decode())
parts = [m.decode() for m in channel.unary_stream("/airlock.Echo/Stream")(b"s", metadata=md, timeout=30)]
print("stream", ",".join(parts))
"""

GRPC_ECHO_CLIENT = f"""
import os, grpc
channel = grpc.secure_channel("{API}:{GRPC_PORT}", grpc.ssl_channel_credentials())
md = [("authorization", "Bearer " + os.environ["API_KEY"])]
reply, call = channel.unary_unary("/airlock.Echo/Echo").with_call(b"e", metadata=md, timeout=30)
print("message", reply.decode())
print("initial", dict(call.initial_metadata()).get("x-echo-initial"))
print("trailer", dict(call.trailing_metadata()).get("x-echo-trailer"))
"""

HTTPX_CLIENT = f"""
import os, httpx
with httpx.Client(http2=True, timeout=20) as c:
    r = c.get("https://{API}/httpx-h2", headers={{"authorization": "Bearer " + os.environ["API_KEY"]}})
    print("httpx", r.http_version, r.status_code, r.text.strip())
"""

NODE_CLIENT = f"""
const http2 = require("http2");
const session = http2.connect("https://{API}");
session.on("error", (e) => {{ console.log("session error", e.code); process.exit(2); }});
const req = session.request({{":path": "/node-h2", authorization: "Bearer " + process.env.API_KEY}});
let status = 0, body = "";
req.on("response", (h) => {{ status = h[":status"]; }});
req.setEncoding("utf8");
req.on("data", (d) => {{ body += d; }});
req.on("error", (e) => {{ console.log("stream error", e.code); process.exit(2); }});
req.on("end", () => {{ console.log("node", session.alpnProtocol, status, body.trim()); session.close(); }});
"""

GO_CLIENT = """
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
)

func main() {
	req, err := http.NewRequest("GET", os.Args[1], nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("API_KEY"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println("go", resp.Proto, resp.StatusCode, strings.TrimSpace(string(body)))
}
"""

# A raw HTTP/2 client over TLS (ALPN h2). argv[1]: a plan {"sni": ..., "streams": [...]}, each
# stream {"authority", "path", "method", "headers": [[name, value]], "body", "content_length",
# "split_at_value", "body_split_at_value"} where "{KEY}" stands for $API_KEY. Streams go one after the other on one
# connection (the next once the previous ended). HPACK: literals with incremental indexing (so a
# repeated header is sent as a dynamic-table index), no Huffman coding when a block is split at
# the value. Prints one JSON list: per stream its status, headers, body, trailers, reset code.
RAW_CLIENT = r"""
import json, os, socket, ssl, struct, sys
import hpack
plan = json.loads(sys.argv[1])
KEY = os.environ["API_KEY"]
def sub(s):
    return s.replace("{KEY}", KEY)
def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload
ctx = ssl.create_default_context()
ctx.set_alpn_protocols(["h2"])
t = ctx.wrap_socket(socket.create_connection((plan["sni"], plan.get("port", 443)), timeout=20),
                    server_hostname=plan["sni"])
if t.selected_alpn_protocol() != "h2":
    print(json.dumps({"alpn": t.selected_alpn_protocol()}))
    sys.exit(3)
buf = b""
def read_frame():
    global buf
    while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
        chunk = t.recv(65536)
        if not chunk:
            return None
        buf += chunk
    n = int.from_bytes(buf[:3], "big")
    f = (buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF, buf[9:9 + n])
    buf = buf[9 + n:]
    return f
def cut_at_key(data):
    at = data.find(KEY.encode())
    assert at >= 0, "the placeholder is not in the block"
    return at + len(KEY) // 2
enc, dec = hpack.Encoder(), hpack.Decoder()
t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0))
results, sid, ended = [], 1, None
for s in plan["streams"]:
    if ended is not None:
        results.append({"sent": False})
        continue
    headers = [(":method", s.get("method", "GET")), (":scheme", "https"), (":authority", s["authority"]),
               (":path", s["path"])] + [(k, sub(v)) for k, v in s.get("headers", [])]
    body = sub(s.get("body", "")).encode()
    if s.get("content_length"):
        headers.append(("content-length", str(len(body))))
    if s.get("split_at_value"):
        block = enc.encode(headers, huffman=False)
        a = cut_at_key(block)
        pieces = [block[:a], block[a:a + 2], block[a + 2:]]
    else:
        pieces = [enc.encode(headers)]
    out = b""
    for i, p in enumerate(pieces):
        flags = (0x4 if i == len(pieces) - 1 else 0) | (0x1 if i == 0 and not body else 0)
        out += frame(1 if i == 0 else 9, flags, sid, p)
    if body:
        parts = [body]
        if s.get("body_split_at_value"):
            a = cut_at_key(body)
            parts = [body[:a], body[a:]]
        for i, p in enumerate(parts):
            out += frame(0, 0x1 if i == len(parts) - 1 else 0, sid, p)
    t.sendall(out)
    r = {"sent": True, "status": None, "headers": {}, "body": "", "trailers": {}, "reset": None}
    block, block_end = b"", False
    try:
        while True:
            f = read_frame()
            if f is None:
                r["eof"] = ended = True
                break
            ftype, flags, fsid, payload = f
            if ftype == 4 and not flags & 1:
                t.sendall(frame(4, 1, 0))
            elif ftype == 6 and not flags & 1:
                t.sendall(frame(6, 1, 0, payload))
            elif ftype == 7:
                r["goaway"] = ended = int.from_bytes(payload[4:8], "big")
                break
            elif ftype in (1, 9):
                if ftype == 1:
                    p = payload
                    if flags & 0x8:
                        p = p[1:len(p) - p[0]]
                    if flags & 0x20:
                        p = p[5:]
                    block, block_end = p, bool(flags & 1)
                else:
                    block += payload
                if flags & 0x4:
                    fields = dict(dec.decode(block))
                    if fsid != sid:
                        continue
                    if r["status"] is None and fields.get(":status", "").startswith("1"):
                        continue
                    if r["status"] is None:
                        r["status"], r["headers"] = fields.get(":status"), fields
                    else:
                        r["trailers"] = fields
                    if block_end:
                        break
            elif ftype == 0 and fsid == sid:
                p = payload[1:len(payload) - payload[0]] if flags & 0x8 else payload
                r["body"] += p.decode("latin-1")
                if payload:
                    inc = struct.pack(">I", len(payload))
                    t.sendall(frame(8, 0, 0, inc) + frame(8, 0, sid, inc))
                if flags & 1:
                    break
            elif ftype == 3 and fsid == sid:
                r["reset"] = int.from_bytes(payload, "big")
                break
    except (socket.timeout, OSError) as e:
        r["error"] = type(e).__name__
        ended = True
    results.append(r)
    sid += 2
print(json.dumps(results))
"""


class World:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()
        self.configs = 0
        self.go_client = None

    def setup(self):
        lab = self.lab
        lab.upstream_link(UPNS, HOST_IF, UP_IF, HOST_IP, UP_IP)
        lab.ca("ca")
        lab.leaf("server", "ca", f"DNS:{API},DNS:{ALT},DNS:{EVIL}")
        d = lab.dir
        # Both protocols by ALPN: a client the gateway answers with HTTP/1.1 still works, and the
        # log says which protocol reached the upstream.
        self.upstream = lab.nginx(UPNS, {
            "uri": "$request_uri", "host": "$host", "sni": "$ssl_server_name", "protocol": "$server_protocol",
            "authorization": "$http_authorization", "x_api_key": "$http_x_api_key", "body": "$request_body",
            "content_length": "$http_content_length", "status": "$status",
        }, f"""\
            server {{
              listen {UP_IP}:443 ssl http2;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo_read_request_body; echo "ok"; }}
              location /echo {{
                add_header x-echo $http_authorization always;
                add_trailer x-echo-trailer $http_authorization always;
                echo "received: $http_authorization";
              }}
            }}
            """)
        os.makedirs(self.path("records"))
        os.chmod(self.path("records"), 0o755)
        server = lab.write("grpc_server.py", GRPC_SERVER)
        lab.start(["ip", "netns", "exec", UPNS, PY, server, self.path("server.pem"), self.path("server.key"),
                   self.path("records"), UP_IP, str(GRPC_PORT)], "grpc.stderr")
        # gRPC may listen on a dual-stack socket: the address then shows v4-mapped.
        wait_for(lambda: {f"{UP_IP}:{GRPC_PORT}", f"[::ffff:{UP_IP}]:{GRPC_PORT}"} & listening(UPNS),
                 "the gRPC server listening", timeout=15)
        self.dns_port = lab.dnsmasq([f"--address=/{API}/{UP_IP}", f"--address=/{ALT}/{UP_IP}",
                                     f"--address=/{EVIL}/{UP_IP}"])
        # The guest's workspace: a directory of its own (the Go client goes there).
        self.workspace = self.path("ws")
        os.makedirs(self.workspace)
        os.chmod(self.workspace, 0o755)
        if DIRECT:
            lab.netns_file(UPNS, "hosts", "".join(f"{UP_IP} {h}\n" for h in (API, ALT, EVIL)))

    def write_config(self, action, audit_log=None):
        self.configs += 1
        return self.lab.write(f"airlock-{self.configs}.toml", textwrap.dedent(f"""\
            [network]
            on_secret_violation = "{action}"
            intercept_ports = [443, {GRPC_PORT}]
            egress = {json.dumps([f"allow@{UP_IP}:tcp:443", f"allow@{UP_IP}:tcp:{GRPC_PORT}"])}
            [[network.upstream_ca]]
            file = "{self.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_H2_KEY"
            allow_hosts = ["{API}", "{ALT}"]
            inject = {{ headers = true, basic_auth = true, body = true }}

            [gateway]
            home = "{self.path('home')}"
            audit_log = "{audit_log or self.path('audit.jsonl')}"
            """))

    def run(self, cmd, action="block-and-log", timeout=120, audit_log=None):
        """The command in `airlock run` (or, DIRECT, in the upstream's namespace holding the value);
        its output must not hold the value."""
        env = dict(os.environ)
        if DIRECT:
            ca = self.path("ca.pem")
            env.update(API_KEY=self.value, SSL_CERT_FILE=ca, CURL_CA_BUNDLE=ca, NODE_EXTRA_CA_CERTS=ca,
                       GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=ca)
            args = ["ip", "netns", "exec", UPNS, *cmd]
        else:
            env["AIRLOCK_E2E_H2_KEY"] = self.value
            env["AIRLOCK_HOME"] = self.path("home")
            args = [AIRLOCK, "run", "--config", self.write_config(action, audit_log), "--dns-server",
                    f"127.0.0.1:{self.dns_port}", "--", *cmd]
        return run_clean(None if DIRECT else self.value, args, "airlock run's output", timeout=timeout, env=env,
                         cwd=self.workspace)

    def raw(self, sni, streams, action="block-and-log", port=443):
        """The raw h2 client: (its per-stream results, the process)."""
        proc = self.run([PY, "-c", RAW_CLIENT, json.dumps({"sni": sni, "port": port, "streams": streams})], action)
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"the raw h2 client failed: {proc.stdout} {proc.stderr}") from None
        if isinstance(out, dict):
            raise AssertionError(f"the gateway did not negotiate h2 with the guest (ALPN: {out['alpn']})")
        return out, proc

    def audit(self):
        """The audit records so far (checked to be free of the value)."""
        try:
            with open(self.path("audit.jsonl")) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        assert_absent(self.value, text, "the audit log")
        return [json.loads(line) for line in text.splitlines()]

    def grpc_received(self, name):
        with open(self.path(f"records/grpc-{name}")) as f:
            return f.read()

    def assert_value_arrived(self, marker, field="authorization", prefix="Bearer ", protocol="HTTP/2.0"):
        """The upstream received `marker` once, over `protocol`, with the value in `field`."""
        __tracebackhide__ = True
        recs = self.upstream.wait_received(marker)  # nginx logs after it answered: the guest may end first
        assert len(recs) == 1, f"the upstream received {len(recs)} request(s) for {marker}"
        assert recs[0]["protocol"] == protocol, f"{marker} reached the upstream over {recs[0]['protocol']}"
        assert_equal_secret(recs[0][field], prefix + self.value, f"the {field} the upstream received for {marker}")
        return recs[0]

    def assert_no_value_arrived(self, marker):
        """No request for `marker` reached the upstream with the value in any field."""
        __tracebackhide__ = True
        for rec in self.upstream.received(marker):
            assert_absent(self.value, json.dumps(rec), f"the upstream's record of {marker}")

    def masked(self):
        """What an echo of the value looks like to the guest (DIRECT: the value, unmasked, so that
        the echo tests check the servers' echoes)."""
        return self.value if DIRECT else "*" * len(self.value)


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-h2-") as lab:
        w = World(lab)
        w.setup()
        yield w


def bearer(marker, authority=API, **kw):
    return dict(authority=authority, path=f"/{marker}", headers=[["authorization", "Bearer {KEY}"]], **kw)


# ---------------------------------------------------------------- unmodified clients


def test_curl_http2_negotiates_h2_and_the_value_arrives(world):
    proc = world.run(["/bin/sh", "-c", f'curl -sS --http2 -m 20 -w "%{{http_version}}\\n" '
                                       f'-H "Authorization: Bearer $API_KEY" https://{API}/curl-h2'])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "ok\n2\n", f"curl got {proc.stdout!r} (the last line is the HTTP version it spoke)"
    world.assert_value_arrived("curl-h2")


def test_httpx_http2_negotiates_h2_and_the_value_arrives(world):
    proc = world.run([PY, "-c", HTTPX_CLIENT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "httpx HTTP/2 200 ok\n", proc.stdout
    world.assert_value_arrived("httpx-h2")


def build_go_client(world):
    """The Go client, built once on the host (standard library only: no modules to fetch)."""
    if world.go_client is None:
        src = world.lab.write("h2client.go", GO_CLIENT)
        out = os.path.join(world.workspace, "h2client")
        env = dict(os.environ, GOCACHE=world.path("gocache"), GOPATH=world.path("gopath"), HOME=world.lab.dir,
                   GO111MODULE="off", GOPROXY="off", GOFLAGS="", CGO_ENABLED="0")
        proc = sh("go", "build", "-o", out, src, env=env, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        world.go_client = out
    return world.go_client


def test_go_net_http_negotiates_h2_and_the_value_arrives(world):
    client = build_go_client(world)
    proc = world.run([client, f"https://{API}/go-h2"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "go HTTP/2.0 200 ok\n", proc.stdout
    world.assert_value_arrived("go-h2")


def test_node_http2_connect_and_the_value_arrives(world):
    # http2.connect offers h2 only: today's HTTP/1.1-only gateway fails it.
    proc = world.run(["node", "-e", NODE_CLIENT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "node h2 200 ok\n", proc.stdout
    world.assert_value_arrived("node-h2")


def test_grpcio_unary_and_server_streaming_carry_the_value(world):
    proc = world.run([PY, "-c", GRPC_CLIENT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == "unary pong:ping\nstream part0:s,part1:s,part2:s\n", proc.stdout
    for name in ("unary", "stream"):
        assert_equal_secret(world.grpc_received(name), "Bearer " + world.value, f"the gRPC {name} authorization")


# ---------------------------------------------------------------- responses scrubbed


def test_an_echo_in_response_headers_data_and_trailers_is_masked(world):
    # The upstream echoes the Authorization it received in a header, the body and a trailer.
    results, _ = world.raw(API, [bearer("echo/h2")])
    (r,) = results
    assert r["status"] == "200", r
    masked = "Bearer " + world.masked()
    assert r["headers"].get("x-echo") == masked, "the echo header is not masked"
    assert r["body"] == f"received: {masked}\n", "the echo body is not masked"
    assert r["trailers"].get("x-echo-trailer") == masked, "the echo trailer is not masked"
    world.assert_value_arrived("echo/h2")


def test_curl_http2_echo_is_masked(world):
    proc = world.run(["/bin/sh", "-c", f'curl -sS --http2 -m 20 -D - -H "Authorization: Bearer $API_KEY" '
                                       f'https://{API}/echo/curl'])
    assert proc.returncode == 0, proc.stderr
    masked = "Bearer " + world.masked()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("HTTP/2 200"), lines[0]
    # curl -D - prints the head, the body, then the trailers.
    assert f"x-echo: {masked}" in lines, "the echo header is not masked"
    assert f"received: {masked}" in lines, "the echo body is not masked"
    assert f"x-echo-trailer: {masked}" in lines, "the echo trailer is not masked"
    world.assert_value_arrived("echo/curl")


def test_grpc_echo_in_message_and_metadata_is_masked(world):
    proc = world.run([PY, "-c", GRPC_ECHO_CLIENT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    masked = "Bearer " + world.masked()
    assert proc.stdout == f"message echo:{masked}\ninitial {masked}\ntrailer {masked}\n", "not masked"
    assert_equal_secret(world.grpc_received("echo"), "Bearer " + world.value, "the gRPC echo authorization")


# ---------------------------------------------------------------- gates per stream


def test_one_stream_of_several_with_a_mismatched_authority_gets_no_value(world):
    # One connection (SNI api.h2.test): the second stream names alt.h2.test, a host the secret
    # allows too, so the only gate that fails is :authority = SNI. It gets nothing; the streams
    # before and after it, on the same connection, get the value.
    results, _ = world.raw(API, [bearer("mm-before"), bearer("mm-alt", authority=ALT), bearer("mm-after")])
    assert results[0]["status"] == "200", results[0]
    world.assert_value_arrived("mm-before")
    world.assert_no_value_arrived("mm-alt")
    assert results[1].get("status") != "200", results[1]
    assert results[2].get("status") == "200", f"the stream after the refused one: {results[2]}"
    world.assert_value_arrived("mm-after")


def test_a_placeholder_to_a_disallowed_authority_is_a_violation(world):
    results, proc = world.raw(EVIL, [bearer("evil-h2", authority=EVIL)])
    assert results[0].get("status") != "200", results[0]
    world.assert_no_value_arrived("evil-h2")
    world.upstream.assert_not_received("evil-h2")
    assert "API_KEY" in proc.stderr, "no host-side warning naming the secret"
    assert any(a["event"] == "violation" and a.get("sni") == EVIL and a.get("secret") == "API_KEY"
               for a in world.audit()), "no violation record"


def test_hpack_dynamic_table_reuse_is_gated_per_stream(world):
    # x-api-key goes as a literal with incremental indexing on the first stream; the next two
    # send the same header as a one-byte dynamic-table index. The gateway decodes each stream's
    # header list: the second stream gets the value, the third (mismatched :authority) does not.
    key = [["x-api-key", "{KEY}"]]
    results, _ = world.raw(API, [dict(authority=API, path="/hp-first", headers=key),
                                 dict(authority=API, path="/hp-second", headers=key),
                                 dict(authority=ALT, path="/hp-third-alt", headers=key)])
    assert [r.get("status") for r in results[:2]] == ["200", "200"], results
    world.assert_value_arrived("hp-first", field="x_api_key", prefix="")
    world.assert_value_arrived("hp-second", field="x_api_key", prefix="")
    world.assert_no_value_arrived("hp-third-alt")


def test_a_header_block_split_over_continuation_is_substituted_whole(world):
    # HEADERS + CONTINUATION + CONTINUATION, cut in the middle of the placeholder.
    results, _ = world.raw(API, [bearer("cont-split", split_at_value=True)])
    assert results[0]["status"] == "200", results[0]
    world.assert_value_arrived("cont-split")


def test_a_body_placeholder_split_across_data_frames_is_substituted(world):
    # The placeholder spans two DATA frames; content-length (the placeholder's length) must be
    # adjusted or dropped, or nginx refuses the body as not matching it.
    results, _ = world.raw(API, [dict(authority=API, path="/body-split", method="POST", body="token={KEY}&x=1",
                                      body_split_at_value=True, content_length=True,
                                      headers=[["content-type", "application/x-www-form-urlencoded"]])])
    assert results[0]["status"] == "200", results[0]
    (rec,) = world.upstream.wait_received("body-split")
    assert rec["protocol"] == "HTTP/2.0", rec["protocol"]
    assert_equal_secret(rec["body"], "token=" + world.value + "&x=1", "the body the upstream received")
    assert rec["content_length"] in ("", str(len("token=&x=1") + len(world.value))), "a stale content-length"


def test_block_and_terminate_ends_the_sandbox_on_an_h2_violation(world):
    proc = world.run([PY, "-c", RAW_CLIENT + "\nimport time; print('still-running', flush=True); time.sleep(60)",
                      json.dumps({"sni": EVIL, "streams": [bearer("h2-terminate", authority=EVIL)]})],
                     action="block-and-terminate")
    assert proc.returncode == 125, (proc.returncode, proc.stdout)
    assert "airlock: sandbox terminated: " in proc.stderr
    world.upstream.assert_not_received("h2-terminate")


@pytest.mark.skipif(DIRECT, reason="the gateway's audit log")
def test_streams_whose_substitution_cannot_be_audited_never_leave(world):
    """The audit log fails closed for HTTP/2 too: with every write failing (/dev/full), streams that
    would carry the value (several in one batch, their records written together) do not reach
    the upstream; the guest's request fails."""
    script = " & ".join(f'curl -sS --http2 -m 20 -H "Authorization: Bearer $API_KEY" https://{API}/h2-unaudited-{i}'
                        for i in range(3)) + " & wait"
    proc = world.run(["/bin/sh", "-c", script], audit_log="/dev/full")
    assert "ok" not in proc.stdout, proc.stdout
    assert "the audit log cannot be written" in proc.stderr, proc.stderr[-2000:]
    for i in range(3):
        world.upstream.assert_not_received(f"h2-unaudited-{i}")
