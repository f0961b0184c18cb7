#include "cli/config.hpp"

#include <policy/policy.hpp>

#include <sstream>

namespace airlock::cli {
namespace {

std::string action_text(ViolationAction action) {
  return action == ViolationAction::kUnset ? std::string("(unset)") : std::string(to_string(action));
}

std::string or_default(const std::string& s) { return s.empty() ? "(default)" : s; }

}  // namespace

std::string summarize_config(const AirlockConfig& config) {
  const SandboxConfig& sandbox = config.sandbox;
  const ViolationAction resolved = sandbox.violation_action();
  std::ostringstream out;
  out << "secrets: " << sandbox.secrets.size() << "\n";
  for (const SecretBinding& s : sandbox.secrets) {
    out << "  " << s.env_var() << "\n";
    out << "    placeholder:          " << s.placeholder() << "\n";
    out << "    hosts:                ";
    if (s.any_host()) {
      out << "ANY HOST (allow_any_host_dangerous: the value goes wherever the sandbox sends it)";
    }
    bool first = !s.any_host();
    for (const HostPattern& h : s.hosts()) {
      out << (first ? "" : ", ") << h.text();
      first = false;
    }
    out << "\n";
    const InjectionScopes& sc = s.scopes();
    std::string scopes;
    for (auto [on, name] : {std::pair{sc.headers, "headers"}, std::pair{sc.basic_auth, "basic_auth"},
                            std::pair{sc.query, "query"}, std::pair{sc.body, "body"}}) {
      if (on) scopes += (scopes.empty() ? "" : ", ") + std::string(name);
    }
    out << "    inject:               " << (scopes.empty() ? "(nothing: detection only)" : scopes) << "\n";
    out << "    require_tls_identity: "
        << (s.require_tls_identity() ? "yes" : "no (plain HTTP may also receive the value)") << "\n";
    out << "    on_violation:         " << action_text(s.on_violation()) << " -> " << to_string(resolved) << "\n";
  }
  const NetworkConfig& n = sandbox.network;
  out << "network:\n";
  out << "  on_secret_violation:  " << action_text(n.on_secret_violation) << "\n";
  out << "  violation action:     " << to_string(resolved) << " (resolved network-wide)\n";
  out << "  intercept_ports:      ";
  for (std::size_t i = 0; i < n.intercept_ports.size(); ++i) out << (i ? ", " : "") << n.intercept_ports[i];
  out << "\n  tls_bypass:           ";
  if (n.tls_bypass.empty()) out << "(none)";
  for (std::size_t i = 0; i < n.tls_bypass.size(); ++i) out << (i ? ", " : "") << n.tls_bypass[i].text();
  out << "\n  max_body_bytes:       " << n.max_body_bytes << "\n";
  out << "  upstream_ca:          ";
  if (n.upstream_cas.empty()) out << "(system roots only)";
  for (std::size_t i = 0; i < n.upstream_cas.size(); ++i) {
    const UpstreamCa& ca = n.upstream_cas[i];
    out << (i ? ", " : "") << ca.pem_file << " for " << (ca.for_hosts ? ca.for_hosts->text() : "every host");
  }
  out << "\n  egress:               ";
  for (const std::string& rule : n.egress) out << rule << ", ";
  out << "then";
  for (const policy::Rule& rule : policy::Policy::default_rules()) out << " " << rule.to_string() << ",";
  out << " deny the rest";
  const GatewaySettings& g = config.gateway;
  out << "\ngateway:\n";
  out << "  transparent_listen:   " << or_default(g.transparent_listen) << "\n";
  out << "  proxy_listen:         " << or_default(g.proxy_listen) << "\n";
  out << "  audit_log:            " << or_default(g.audit_log) << "\n";
  out << "  home:                 " << or_default(g.home) << "\n";
  out << "  log_level:            " << or_default(g.log_level) << "\n";
  out << "  resolve_pins_with_host_dns: " << (g.resolve_pins_with_host_dns ? "yes" : "no") << "\n";
  const auto number = [](const std::optional<std::uint64_t>& v) { return v ? std::to_string(*v) : std::string("(default)"); };
  out << "  memory_budget:        " << number(g.memory_budget) << "\n";
  out << "  client_memory_budget: " << number(g.client_memory_budget) << "\n";
  out << "  max_connections:      " << number(g.max_connections) << "\n";
  out << "  max_client_connections: " << number(g.max_client_connections) << "\n";
  out << "  audit_fail_open:      " << (g.audit_fail_open ? "yes" : "no") << "\n";
  return out.str();
}

}  // namespace airlock::cli
