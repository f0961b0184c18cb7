"""The upstream lab the SDK tests (test_sdk_go.py, test_sdk_python.py, test_sdk_cpp.py) share: the
seeds' hosts (api.example.com, api.stripe.com, api.openai.com) and a host no secret allows
(evil.example.net), all answered by a dnsmasq on the host's loopback with an nginx in a namespace
of its own, which logs what it received as JSON lines.

  sandbox ── its gateway (airlock serve) ── host netns (netlab.link_addresses) ──veth── upstream netns (nginx, test CA)

The SDK tests get the lab through environment variables (never a value: the tests make their
fake values themselves):
  AIRLOCK_BIN, AIRLOCK_HOME          the airlock binary, its state directory
  AIRLOCK_LAB_DNS                    IP:PORT of the dnsmasq
  AIRLOCK_LAB_EGRESS                 comma-separated egress rules that let the sandbox reach the upstream
  AIRLOCK_LAB_EGRESS_HTTP            the rule for its plain HTTP port (80)
  AIRLOCK_LAB_CA                     the test CA (PEM) the upstream's certificate chains to
  AIRLOCK_LAB_ACCESS_LOG             nginx's JSON access log (sni, host, uri, authorization)
  AIRLOCK_LAB_DIR                    the lab's directory (the tests skip it when scanning for values)
"""
import os

from netlab import TAG, Lab, link_addresses, sh

HOSTS = ("api.example.com", "api.stripe.com", "api.openai.com", "evil.example.net")


def start(prefix, tag_base):
    """A Lab with the upstream running; returns (lab, env for the SDK tests). `tag_base` keeps the
    namespace and link names apart from other test files running at the same time."""
    upns, host_if, up_if = f"{tag_base}u{TAG}", f"{tag_base}h{TAG}", f"{tag_base}p{TAG}"
    host_ip, up_ip, _, _ = link_addresses()  # this run's own /30 on the host
    lab = Lab(prefix)
    try:
        os.chmod(lab.dir, 0o755)
        lab.netns(upns)
        lab.veth(host_if, up_if, None, upns)
        sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", upns, "addr", "add", f"{up_ip}/30", "dev", up_if)
        sh("ip", "-n", upns, "link", "set", up_if, "up")
        lab.ca("ca")
        lab.leaf("server", "ca", ",".join(f"DNS:{h}" for h in HOSTS))
        d = lab.dir
        access = lab.nginx(upns, {"sni": "$ssl_server_name", "host": "$host", "uri": "$request_uri",
                                  "authorization": "$http_authorization"}, f"""\
            server {{
              listen {up_ip}:443 ssl; listen {up_ip}:80;
              ssl_certificate {d}/server.pem; ssl_certificate_key {d}/server.key;
              location / {{ echo "ok"; }}
            }}
            """)
        dns_port = lab.dnsmasq([f"--address=/{h}/{up_ip}" for h in HOSTS])
        os.makedirs(lab.path("home"), exist_ok=True)
        env = dict(os.environ)
        env.update({
            "AIRLOCK_HOME": lab.path("home"),
            "AIRLOCK_LAB_DNS": f"127.0.0.1:{dns_port}",
            "AIRLOCK_LAB_EGRESS": f"allow@{up_ip}:tcp:443",
            "AIRLOCK_LAB_EGRESS_HTTP": f"allow@{up_ip}:tcp:80",
            "AIRLOCK_LAB_CA": lab.path("ca.pem"),
            "AIRLOCK_LAB_ACCESS_LOG": access.path,
            "AIRLOCK_LAB_DIR": lab.dir,
        })
        return lab, env
    except BaseException:
        lab.close()
        raise
