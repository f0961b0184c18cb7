"""`airlock run`: runtimes with trust stores of their own verify the gateway's certificate
unmodified, and the value reaches the allowed host. Java (HttpClient, its own PKCS12/JKS trust
store) and Python grpcio (gRPC core's bundled roots) would refuse the gateway's certificate on a
sandbox that only rewrote the PEM bundle.

  sandbox ── its gateway ── host netns HOST_IP ──veth── UP_IP upstream netns
  upstream: nginx (HTTPS, :443) and a grpcio server (TLS, :8443), certificates from a test CA
  the gateway trusts for upstreams; DNS from a dnsmasq on the host's loopback.

Needs root, a JDK (java) and python3-grpcio. No assertion prints the fake value.
"""
import json
import os
import textwrap

import pytest

from netlab import Lab, airlock_run, TAG, assert_equal_secret, fake_value, link_addresses, sh, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "airlock")
PY = "/usr/bin/python3"
UPNS = f"alsbt{TAG}"
HOST_IF, UP_IF = f"alsth{TAG}", f"alstp{TAG}"
HOST_IP, UP_IP, _, _ = link_addresses()  # this run's own /30 on the host
HOST = "api.trust.test"
GRPC_PORT = 8443

GRPC_SERVER = r"""
import sys, grpc
from concurrent import futures
cert, key, record, port = sys.argv[1:5]
def call(request, context):
    meta = dict(context.invocation_metadata())
    with open(record, "w") as f:  # what the server received; the test compares, never prints
        f.write(meta.get("authorization", ""))
    return b"pong:" + request
handler = grpc.method_handlers_generic_handler("airlock.Echo", {
    "Call": grpc.unary_unary_rpc_method_handler(call)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((handler,))
creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
server.add_secure_port("%s:%s" % (sys.argv[5], port), creds)
server.start()
server.wait_for_termination()
"""

GRPC_CLIENT = f"""
import os, grpc
channel = grpc.secure_channel("{HOST}:{GRPC_PORT}", grpc.ssl_channel_credentials())
call = channel.unary_unary("/airlock.Echo/Call")
reply = call(b"ping", metadata=[("authorization", "Bearer " + os.environ["API_KEY"])], timeout=30)
print("grpc", reply.decode())
"""

JAVA_CLIENT = """
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

public class Client {
  public static void main(String[] args) throws Exception {
    HttpClient client = HttpClient.newHttpClient();
    HttpRequest request = HttpRequest.newBuilder(URI.create(args[0]))
        .header("Authorization", "Bearer " + System.getenv("API_KEY")).build();
    HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
    System.out.println("java " + response.statusCode() + " " + response.body().trim());
  }
}
"""


class World:
    def __init__(self, lab):
        self.lab = lab
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()

    def setup(self):
        lab = self.lab
        lab.upstream_link(UPNS, HOST_IF, UP_IF, HOST_IP, UP_IP)
        lab.ca("ca")
        lab.leaf("server", "ca", f"DNS:{HOST}")
        d = lab.dir
        self.upstream = lab.nginx(UPNS, {"uri": "$request_uri", "authorization": "$http_authorization",
                                         "protocol": "$server_protocol"}, f"""\
            server {{
              listen {UP_IP}:443 ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "ok"; }}
            }}
            """)
        server = lab.write("grpc_server.py", GRPC_SERVER)
        lab.start(["ip", "netns", "exec", UPNS, PY, server, lab.path("server.pem"), lab.path("server.key"),
                   lab.path("grpc-received"), str(GRPC_PORT), UP_IP], "grpc.stderr")
        # gRPC listens on a dual-stack socket: the address shows v4-mapped.
        wait_listening(UPNS, [f"[::ffff:{UP_IP}]:{GRPC_PORT}"], "the gRPC server listening")
        self.dns_port = lab.dnsmasq([f"--host-record={HOST},{UP_IP}"])
        self.config = lab.write("airlock.toml", textwrap.dedent(f"""\
            [network]
            intercept_ports = [443, {GRPC_PORT}]
            egress = {json.dumps([f"allow@{UP_IP}:tcp:443", f"allow@{UP_IP}:tcp:{GRPC_PORT}"])}
            [[network.upstream_ca]]
            file = "{lab.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_TRUST_KEY"
            allow_hosts = ["{HOST}"]

            [gateway]
            home = "{lab.path('home')}"
            """))

    def run(self, cmd, timeout=180):
        return airlock_run(self.value, "AIRLOCK_E2E_TRUST_KEY", self.lab.path("home"), self.config, self.dns_port,
                           cmd, timeout)


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-trust-") as lab:
        w = World(lab)
        w.setup()
        yield w


def shell_with_file(name, text, command):
    """A guest shell that writes `text` to /tmp/<name> and runs `command` (no host path needed)."""
    return ["/bin/sh", "-c", f"cat > /tmp/{name} <<'AIRLOCK_EOF'\n{text}\nAIRLOCK_EOF\n{command}"]


def test_java_httpclient_verifies_the_gateway_certificate_and_the_value_arrives(world):
    proc = world.run(shell_with_file("Client.java", JAVA_CLIENT,
                                     f"java /tmp/Client.java https://{HOST}/java-ok"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "java 200 ok" in proc.stdout, proc.stdout + proc.stderr
    (rec,) = world.upstream.received("java-ok")
    assert_equal_secret(rec["authorization"], "Bearer " + world.value, "the Authorization nginx received")


def test_java_with_user_java_tool_options_still_trusts_the_gateway(world):
    # The user's JAVA_TOOL_OPTIONS (--env) come after airlock's trust store options.
    proc = world.run(shell_with_file("Client.java", JAVA_CLIENT,
                                     "JAVA_TOOL_OPTIONS=\"$JAVA_TOOL_OPTIONS -Xmx128m\" "
                                     f"java /tmp/Client.java https://{HOST}/java-opts"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "java 200 ok" in proc.stdout
    assert world.upstream.count("java-opts") == 1


def test_the_jdks_default_cacerts_holds_every_certificate_of_the_guest_bundle(world):
    # A JVM that ignores JAVA_TOOL_OPTIONS still reads the distribution's cacerts (keytool
    # -cacerts opens it directly), which the guest's view replaces with the bundle's certificates.
    proc = world.run(["/bin/sh", "-c", "keytool -list -cacerts -storepass changeit 2>/dev/null | "
                                       "grep -c trustedCertEntry; "
                                       "grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt"])
    assert proc.returncode == 0, proc.stderr
    entries, bundle = map(int, proc.stdout.split())
    assert entries == bundle, proc.stdout


def test_python_grpcio_verifies_the_gateway_certificate(world):
    # grpcio verifies against gRPC core's bundled roots unless GRPC_DEFAULT_SSL_ROOTS_FILE_PATH
    # names a file. The handshake with the gateway must pass verification: the call then either
    # succeeds (the upstream speaks h2, so the gateway offers h2 too).
    proc = world.run([PY, "-c", GRPC_CLIENT])
    assert "certificate verify failed" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_grpcio_call_carries_the_value_to_the_allowed_host(world):
    proc = world.run([PY, "-c", GRPC_CLIENT])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "grpc pong:ping", proc.stdout + proc.stderr
    with open(world.lab.path("grpc-received")) as f:
        received = f.read()
    assert_equal_secret(received, "Bearer " + world.value, "the authorization the gRPC server received")


def test_openssl_hash_directory_holds_the_gateway_ca(world):
    # -CApath lookups (SSL_CERT_DIR, X509_LOOKUP_hash_dir) find it, not only the bundle file.
    proc = world.run(["/bin/sh", "-c", f"echo | openssl s_client -connect {HOST}:443 -servername {HOST} "
                                       "-CApath /etc/ssl/certs -no-CAfile -no-CAstore -verify_return_error "
                                       "2>&1 | grep -E '^Verify return code'"])
    assert "Verify return code: 0 (ok)" in proc.stdout, proc.stdout + proc.stderr
