#include <airlock/secret.hpp>

#include <algorithm>
#include <utility>

namespace airlock {
namespace {

[[noreturn]] void secret_error(std::string_view env_var, std::string_view rule) {
  throw ConfigError("secret " + quote_for_message(env_var) + ": " + std::string(rule));
}

// Parses a host (or pattern) for a secret, naming the secret in the error.
template <typename Parse>
HostPattern parse_for_secret(std::string_view env_var, std::string_view text, Parse parse) {
  try {
    return parse(text);
  } catch (const ConfigError& e) {
    secret_error(env_var, e.what());
  }
}

void validate_placeholder(std::string_view env_var, std::string_view placeholder, bool is_default) {
  const std::string which = is_default ? "default placeholder (from the env var)" : "placeholder";
  if (placeholder.empty()) secret_error(env_var, which + " must not be empty");
  if (placeholder.size() > kMaxPlaceholderBytes) {
    secret_error(env_var, which + " must be at most " + std::to_string(kMaxPlaceholderBytes) + " bytes");
  }
  if (placeholder.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos) {
    secret_error(env_var, which + " must not contain CR, LF or NUL");
  }
}

}  // namespace

std::string_view to_string(ViolationAction action) noexcept {
  switch (action) {
    case ViolationAction::kUnset: return "";
    case ViolationAction::kBlock: return "block";
    case ViolationAction::kBlockAndLog: return "block-and-log";
    case ViolationAction::kBlockAndTerminate: return "block-and-terminate";
  }
  return "";
}

ViolationAction parse_violation_action(std::string_view text) {
  for (auto a : {ViolationAction::kUnset, ViolationAction::kBlock, ViolationAction::kBlockAndLog,
                 ViolationAction::kBlockAndTerminate}) {
    if (text == to_string(a)) return a;
  }
  throw ConfigError("unknown violation action " + quote_for_message(text) +
                    ": use \"block\", \"block-and-log\", \"block-and-terminate\" or \"\" (the default)");
}

std::string default_placeholder(std::string_view env_var) { return "$MSB_" + std::string(env_var); }

const HostPattern* SecretBinding::match_host(std::string_view host) const noexcept {
  for (const HostPattern& p : hosts_) {
    if (p.matches(host)) return &p;
  }
  return nullptr;
}

SecretBinding SecretBinding::clone() const {
  SecretBinding copy;
  copy.env_var_ = env_var_;
  copy.value_ = value_.clone();
  copy.placeholder_ = placeholder_;
  copy.hosts_ = hosts_;
  copy.any_host_ = any_host_;
  copy.require_tls_identity_ = require_tls_identity_;
  copy.scopes_ = scopes_;
  copy.on_violation_ = on_violation_;
  return copy;
}

// ---- SecretBuilder ----

SecretBuilder& SecretBuilder::env(std::string_view env_var) {
  env_var_ = env_var;
  return *this;
}
SecretBuilder& SecretBuilder::value(SecretValue value) {
  value_ = std::move(value);
  return *this;
}
SecretBuilder& SecretBuilder::allow_host(std::string_view host) {
  hosts_.emplace_back(host);
  return *this;
}
SecretBuilder& SecretBuilder::allow_host_pattern(std::string_view pattern) {
  host_patterns_.emplace_back(pattern);
  return *this;
}
SecretBuilder& SecretBuilder::allow_any_host_dangerous(bool i_understand_the_risk) {
  any_host_ = i_understand_the_risk;
  return *this;
}
SecretBuilder& SecretBuilder::placeholder(std::string_view placeholder) {
  placeholder_ = std::string(placeholder);
  return *this;
}
SecretBuilder& SecretBuilder::require_tls_identity(bool required) {
  require_tls_identity_ = required;
  return *this;
}
SecretBuilder& SecretBuilder::inject_headers(bool on) {
  scopes_.headers = on;
  return *this;
}
SecretBuilder& SecretBuilder::inject_basic_auth(bool on) {
  scopes_.basic_auth = on;
  return *this;
}
SecretBuilder& SecretBuilder::inject_query(bool on) {
  scopes_.query = on;
  return *this;
}
SecretBuilder& SecretBuilder::inject_body(bool on) {
  scopes_.body = on;
  return *this;
}
SecretBuilder& SecretBuilder::on_violation(ViolationAction action) {
  on_violation_ = action;
  return *this;
}

// Validates every §1/§2 rule. The value moves into the binding (one copy of it, not two).
SecretBinding SecretBuilder::build() {
  const std::string& env = env_var_;
  if (env.empty()) secret_error(env, "env var is required and must not be empty");
  if (env.find_first_of(std::string_view("=\0", 2)) != std::string::npos) {
    secret_error(env, "env var must not contain '=' or NUL");
  }
  if (!value_.has_value() || value_->empty()) secret_error(env, "value is required and must not be empty");

  SecretBinding binding;
  binding.env_var_ = env;
  for (const std::string& h : hosts_) {
    binding.hosts_.push_back(parse_for_secret(env, h, [](std::string_view t) { return HostPattern::exact(t); }));
  }
  for (const std::string& p : host_patterns_) {
    binding.hosts_.push_back(parse_for_secret(env, p, [](std::string_view t) { return HostPattern::wildcard(t); }));
  }
  if (binding.hosts_.empty() && !any_host_) {
    secret_error(env, "at least one allowed host or host pattern is required "
                      "(or allow_any_host_dangerous(true), which sends the value to any host)");
  }

  const bool is_default = !placeholder_.has_value();
  binding.placeholder_ = is_default ? default_placeholder(env) : *placeholder_;
  validate_placeholder(env, binding.placeholder_, is_default);
  // A placeholder holding the value would put the value in the sandbox.
  if (binding.placeholder_.find(value_->expose()) != std::string::npos) {
    secret_error(env, "placeholder must not contain the secret's value");
  }

  binding.any_host_ = any_host_;
  binding.require_tls_identity_ = require_tls_identity_;
  binding.scopes_ = scopes_;
  binding.on_violation_ = on_violation_;
  binding.value_ = std::move(*value_);
  value_.reset();
  return binding;
}

// ---- plain-struct form ----

SecretBinding SecretEntry::bind() const {
  SecretBuilder b;
  b.env(env_var).value(value.clone());
  for (const auto& h : allow_hosts) b.allow_host(h);
  for (const auto& p : allow_host_patterns) b.allow_host_pattern(p);
  b.allow_any_host_dangerous(allow_any_host_dangerous);
  if (!placeholder.empty()) b.placeholder(placeholder);
  b.require_tls_identity(require_tls.value_or(true));
  b.inject_headers(inject.headers).inject_basic_auth(inject.basic_auth);
  b.inject_query(inject.query).inject_body(inject.body);
  b.on_violation(on_violation);
  return b.build();
}

SecretEntry Secret::env(std::string_view env_var, std::string_view value, SecretEnvOptions options) {
  SecretEntry e;
  e.env_var = env_var;
  e.value = SecretValue(value);
  e.allow_hosts = std::move(options.allow_hosts);
  e.allow_host_patterns = std::move(options.allow_host_patterns);
  e.placeholder = std::move(options.placeholder);
  e.require_tls = options.require_tls;
  e.on_violation = options.on_violation;
  return e;
}

// ---- across secrets ----

void validate_secret_set(const std::vector<SecretBinding>& secrets) {
  for (std::size_t i = 0; i < secrets.size(); ++i) {
    for (std::size_t j = i + 1; j < secrets.size(); ++j) {
      const SecretBinding& a = secrets[i];
      const SecretBinding& b = secrets[j];
      const std::string names = "secrets " + quote_for_message(a.env_var()) + " and " + quote_for_message(b.env_var());
      if (a.env_var() == b.env_var()) {
        throw ConfigError("secret " + quote_for_message(a.env_var()) + ": env var is bound twice");
      }
      if (a.placeholder() == b.placeholder()) {
        throw ConfigError(names + ": two secrets may not share a placeholder (" + quote_for_message(a.placeholder()) + ")");
      }
      if (a.placeholder().find(b.placeholder()) != std::string::npos) {
        throw ConfigError(names + ": the placeholder of " + quote_for_message(a.env_var()) + " contains the placeholder of " +
                          quote_for_message(b.env_var()) + "; no placeholder may contain another");
      }
      if (b.placeholder().find(a.placeholder()) != std::string::npos) {
        throw ConfigError(names + ": the placeholder of " + quote_for_message(b.env_var()) + " contains the placeholder of " +
                          quote_for_message(a.env_var()) + "; no placeholder may contain another");
      }
    }
  }
}

ViolationAction effective_violation_action(const std::vector<SecretBinding>& secrets,
                                           ViolationAction network_action) noexcept {
  for (auto it = secrets.rbegin(); it != secrets.rend(); ++it) {
    if (it->on_violation() != ViolationAction::kUnset) return it->on_violation();
  }
  if (network_action != ViolationAction::kUnset) return network_action;
  return kDefaultViolationAction;
}

// ---- network ----

NetworkBuilder& NetworkBuilder::on_secret_violation(ViolationAction action) {
  config_.on_secret_violation = action;
  return *this;
}

NetworkBuilder& NetworkBuilder::intercept_port(std::uint16_t port) {
  if (port == 0) throw ConfigError("network: intercept port must be between 1 and 65535");
  auto& ports = config_.intercept_ports;
  if (std::find(ports.begin(), ports.end(), port) == ports.end()) ports.push_back(port);
  return *this;
}

NetworkBuilder& NetworkBuilder::bypass_tls(std::string_view host_pattern) {
  try {
    config_.tls_bypass.push_back(HostPattern::parse(host_pattern));
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("network: tls bypass: ") + e.what());
  }
  return *this;
}

NetworkBuilder& NetworkBuilder::upstream_ca_file(std::string pem_file, std::optional<std::string_view> for_hosts) {
  if (pem_file.empty()) throw ConfigError("network: upstream CA file name must not be empty");
  UpstreamCa ca;
  ca.pem_file = std::move(pem_file);
  if (for_hosts) {
    try {
      ca.for_hosts = HostPattern::parse(*for_hosts);
    } catch (const ConfigError& e) {
      throw ConfigError("network: upstream CA " + quote_for_message(ca.pem_file) + ": " + e.what());
    }
  }
  config_.upstream_cas.push_back(std::move(ca));
  return *this;
}

NetworkBuilder& NetworkBuilder::max_body_bytes(std::size_t bytes) {
  if (bytes == 0) throw ConfigError("network: max body bytes must be greater than 0");
  config_.max_body_bytes = bytes;
  return *this;
}

// ---- sandbox ----

SandboxBuilder& SandboxBuilder::secret(const std::function<SecretBuilder&(SecretBuilder&)>& configure) {
  SecretBuilder b;
  configure(b);
  secrets_.push_back(b.build());
  return *this;
}

SandboxBuilder& SandboxBuilder::secret(SecretEntry entry) {
  secrets_.push_back(entry.bind());
  return *this;
}

SandboxBuilder& SandboxBuilder::secret_env(std::string_view env_var, std::string_view value, std::string_view host) {
  SecretBuilder b;
  b.env(env_var).value(value);
  if (host.find('*') != std::string_view::npos) {
    b.allow_host_pattern(host);
  } else {
    b.allow_host(host);
  }
  secrets_.push_back(b.build());
  return *this;
}

SandboxBuilder& SandboxBuilder::network(const std::function<NetworkBuilder&(NetworkBuilder&)>& configure) {
  configure(network_);
  return *this;
}

SandboxConfig SandboxBuilder::build() {
  validate_secret_set(secrets_);
  SandboxConfig config;
  config.secrets.reserve(secrets_.size());
  for (const SecretBinding& s : secrets_) config.secrets.push_back(s.clone());
  config.network = network_.config();
  return config;
}

}  // namespace airlock
