// The pure parts of the sandbox: option parsing, the guest environment, the gateway ruleset.
#include "sandbox/sandbox.hpp"

#include <policy/address.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <map>

namespace airlock::sandbox {
namespace {

bool is_absolute_clean(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  if (path.find('\0') != std::string_view::npos) return false;
  // No `..` component: a guest path must not climb out of the new root while it is built.
  std::size_t start = 0;
  while (start <= path.size()) {
    const std::size_t end = std::min(path.find('/', start), path.size());
    if (path.substr(start, end - start) == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace

Volume parse_volume(std::string_view spec) {
  Volume volume;
  std::string_view rest = spec;
  if (rest.ends_with(":ro")) {
    volume.read_only = true;
    rest.remove_suffix(3);
  } else if (rest.ends_with(":rw")) {
    rest.remove_suffix(3);
  }
  const std::size_t colon = rest.find(':');
  if (colon == std::string_view::npos || rest.find(':', colon + 1) != std::string_view::npos) {
    throw ConfigError("--volume " + std::string(spec) + ": expected HOST:GUEST[:ro]");
  }
  volume.host = std::string(rest.substr(0, colon));
  volume.guest = std::string(rest.substr(colon + 1));
  if (!is_absolute_clean(volume.host) || !is_absolute_clean(volume.guest)) {
    throw ConfigError("--volume " + std::string(spec) +
                      ": HOST and GUEST must be absolute paths without '..'");
  }
  if (volume.guest == "/") {
    throw ConfigError("--volume " + std::string(spec) + ": GUEST cannot be /");
  }
  return volume;
}

std::uint64_t parse_memory_size(std::string_view text) {
  std::uint64_t number = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t scale = 1;
  if (unit == "" || unit == "b" || unit == "B") scale = 1;
  else if (unit == "k" || unit == "K") scale = 1ull << 10;
  else if (unit == "m" || unit == "M") scale = 1ull << 20;
  else if (unit == "g" || unit == "G") scale = 1ull << 30;
  else scale = 0;
  if (ec != std::errc() || end == text.data() || scale == 0 || number == 0 ||
      number > (~0ull) / scale) {
    throw ConfigError("--memory " + std::string(text) + ": expected a size like 512M or 2G");
  }
  return number * scale;
}

const std::vector<std::string>& ca_env_vars() {
  static const std::vector<std::string> vars = {
      // OpenSSL's default file (curl, Python ssl/httpx/aiohttp, Ruby, PHP, Go, .NET, uv, rustls
      // native certs), requests/certifi, curl, Node/Bun/npm (added to their bundled roots), git,
      // pip, AWS SDKs and CLI, Deno, cargo, gRPC core (Python grpcio and friends replace their
      // bundled roots), gcloud, httplib2 (Google API clients), Perl LWP, Composer, Hex, Nix.
      "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
      "GIT_SSL_CAINFO", "PIP_CERT", "AWS_CA_BUNDLE", "DENO_CERT", "CARGO_HTTP_CAINFO",
      "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
      "HTTPLIB2_CA_CERTS", "PERL_LWP_SSL_CA_FILE", "COMPOSER_CAFILE", "HEX_CACERTS_PATH",
      "NIX_SSL_CERT_FILE"};
  return vars;
}

std::vector<std::string> build_guest_env(const EnvRequest& request,
                                         const std::vector<SecretBinding>& secrets,
                                         const HostEnv& host_env, bool ca_bundle) {
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> origin;  // for error messages
  const auto host = [&](const std::string& name) -> std::optional<std::string> {
    return host_env ? host_env(name) : std::nullopt;
  };
  env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  env["HOME"] = "/root";
  env["TERM"] = host("TERM").value_or("dumb");
  env["LANG"] = host("LANG").value_or("C.UTF-8");
  if (ca_bundle) {
    for (const std::string& name : ca_env_vars()) env[name] = kGuestCaBundle;
  }

  const auto secret_named = [&](const std::string& name) -> const SecretBinding* {
    for (const SecretBinding& s : secrets) {
      if (s.env_var() == name) return &s;
    }
    return nullptr;
  };
  const auto check_name = [&](const std::string& name, const char* flag) {
    if (name.empty() || name.find('=') != std::string::npos ||
        name.find('\0') != std::string::npos) {
      throw ConfigError(std::string(flag) + " " + name + ": not a valid variable name");
    }
    if (secret_named(name) != nullptr) {
      throw ConfigError(std::string(flag) + " " + name +
                        ": this variable holds a secret's placeholder; it cannot be set");
    }
  };

  for (const std::string& name : request.pass) {
    check_name(name, "--env-pass");
    if (auto value = host(name)) {
      env[name] = std::move(*value);
      origin[name] = "--env-pass";
    }
  }
  for (const auto& [name, value] : request.set) {
    check_name(name, "--env");
    if (value.find('\0') != std::string::npos) {
      throw ConfigError("--env " + name + ": the value contains a NUL byte");
    }
    env[name] = value;
    origin[name] = "--env";
  }

  // Every JVM reads JAVA_TOOL_OPTIONS (JVMs other than the distribution's have their own
  // cacerts); the user's options come after ours, so theirs win where both set a property.
  if (ca_bundle) {
    const std::string trust = std::string("-Djavax.net.ssl.trustStore=") + kGuestJavaTrustStore +
                              " -Djavax.net.ssl.trustStoreType=PKCS12";
    const auto it = env.find("JAVA_TOOL_OPTIONS");
    env["JAVA_TOOL_OPTIONS"] = it == env.end() || it->second.empty() ? trust : trust + " " + it->second;
  }

  // A value the guest can read must never be a secret's value, whole or in part.
  for (const auto& [name, value] : env) {
    for (const SecretBinding& s : secrets) {
      const bool whole = s.value().equals(value);
      const bool part = !whole && !s.value().empty() && value.size() > s.value().size() &&
                        value.find(s.value().expose()) != std::string::npos;
      if (whole || part) {
        throw ConfigError("environment variable " + name + " " +
                          (whole ? "equals" : "contains") + " the value of secret " +
                          s.env_var() + "; refusing to start (the value must not enter the sandbox)");
      }
    }
  }
  for (const SecretBinding& s : secrets) env[s.env_var()] = s.placeholder();

  std::vector<std::string> out;
  out.reserve(env.size());
  for (const auto& [name, value] : env) out.push_back(name + "=" + value);
  return out;
}

std::vector<std::string> with_ipv4_embeddings(std::vector<std::string> cidrs) {
  const std::size_t given = cidrs.size();
  for (std::size_t i = 0; i < given; ++i) {
    // IPv6 text stays as it is (Cidr::parse reads ::ffff:0:0/96 as 0.0.0.0/0).
    if (cidrs[i].find(':') != std::string::npos) continue;
    const auto range = policy::Cidr::parse(cidrs[i]);
    if (!range) continue;
    cidrs.push_back("::ffff:" + range->network.to_string() + "/" + std::to_string(96 + range->prefix));
    for (const policy::Cidr& form : policy::embedding_networks(*range)) cidrs.push_back(form.to_string());
  }
  return cidrs;
}

std::vector<std::string> default_blocked_destinations() {
  std::vector<std::string> base = {
      "0.0.0.0/8",      "10.0.0.0/8",     "100.64.0.0/10",  "127.0.0.0/8",  "169.254.0.0/16",
      "172.16.0.0/12",  "192.0.0.0/24",   "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4",
      "240.0.0.0/4",    "::/127",         "::ffff:0:0/96",  "fc00::/7",     "fec0::/10",
      "fe80::/10",      "ff00::/8"};
  // Where the embedded IPv4 address cannot be told by a prefix (NAT64 local-use, Teredo): the
  // whole prefix, unless an allow rule opens it.
  for (const policy::Cidr& p : policy::scattered_embedding_prefixes()) base.push_back(p.to_string());
  return with_ipv4_embeddings(std::move(base));
}

std::string gateway_ruleset(std::uint16_t transparent_port, std::uint16_t dns_port,
                            const std::vector<std::string>& blocked) {
  for (const std::string& cidr : blocked) {
    if (cidr.empty() || cidr.find_first_not_of("0123456789abcdefABCDEF.:/") != std::string::npos) {
      throw ConfigError("blocked destination " + cidr + ": not an address or CIDR");
    }
  }
  const std::string gw = std::string("\"") + kGatewayIf + "\"";
  const std::string tp = std::to_string(transparent_port);
  const std::string dp = std::to_string(dns_port);
  std::string r;
  r += "table inet airlock {\n";
  // Before the redirect (which rewrites the destination): blocked destinations get a reset.
  r += "  chain guard {\n";
  r += "    type filter hook prerouting priority -150; policy accept;\n";
  // One rule per entry: sets would refuse overlapping intervals (a host address in 10/8).
  for (const std::string& cidr : blocked) {
    r += "    iifname " + gw + " tcp dport != 53 " +
         (cidr.find(':') == std::string::npos ? "ip" : "ip6") + " daddr " + cidr +
         " reject with tcp reset\n";
  }
  r += "  }\n";
  r += "  chain prerouting {\n";
  r += "    type nat hook prerouting priority dstnat; policy accept;\n";
  r += "    iifname " + gw + " udp dport 53 redirect to :" + dp + "\n";
  r += "    iifname " + gw + " tcp dport 53 redirect to :" + dp + "\n";
  r += "    iifname " + gw + " meta l4proto tcp redirect to :" + tp + "\n";
  r += "  }\n";
  r += "  chain input {\n";
  r += "    type filter hook input priority filter; policy drop;\n";
  r += "    iifname \"lo\" accept\n";
  r += "    ct state established,related accept\n";
  r += "    iifname " + gw + " ct status dnat tcp dport { " + tp + ", " + dp + " } accept\n";
  r += "    iifname " + gw + " ct status dnat udp dport " + dp + " accept\n";
  // Neighbour discovery, or IPv6 on the link does not work at all.
  r += "    iifname " + gw +
       " icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept\n";
  r += "  }\n";
  r += "  chain forward {\n";
  r += "    type filter hook forward priority filter; policy drop;\n";
  r += "  }\n";
  r += "}\n";
  return r;
}

}  // namespace airlock::sandbox
