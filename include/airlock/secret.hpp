#pragma once
// The secret model of secrets-spec §1: builders, the plain-struct form and validation.
#include <airlock/errors.hpp>
#include <airlock/host_pattern.hpp>
#include <airlock/secret_value.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock {

enum class ViolationAction : std::uint8_t {
  kUnset,              // ""  : use the network's (or the runtime's) default
  kBlock,              // "block"
  kBlockAndLog,        // "block-and-log"  (the runtime default)
  kBlockAndTerminate,  // "block-and-terminate"
};
std::string_view to_string(ViolationAction action) noexcept;
// Throws ConfigError naming the bad string and the four accepted ones.
ViolationAction parse_violation_action(std::string_view text);
inline constexpr ViolationAction kDefaultViolationAction = ViolationAction::kBlockAndLog;

struct InjectionScopes {
  bool headers = true;
  bool basic_auth = true;
  bool query = false;
  bool body = false;
  friend bool operator==(const InjectionScopes&, const InjectionScopes&) = default;
};

inline constexpr std::size_t kMaxPlaceholderBytes = 1024;
// `$MSB_<env var>`, the env var exactly as given.
std::string default_placeholder(std::string_view env_var);

// A validated secret: every rule of §1/§2 held when it was built.
class SecretBinding {
 public:
  const std::string& env_var() const noexcept { return env_var_; }
  const SecretValue& value() const noexcept { return value_; }
  const std::string& placeholder() const noexcept { return placeholder_; }
  const std::vector<HostPattern>& hosts() const noexcept { return hosts_; }
  bool any_host() const noexcept { return any_host_; }
  bool require_tls_identity() const noexcept { return require_tls_identity_; }
  const InjectionScopes& scopes() const noexcept { return scopes_; }
  ViolationAction on_violation() const noexcept { return on_violation_; }

  // The first pattern that matches `host` (SNI or Host), or nullptr. With any_host, a
  // static catch-all pattern is never returned; callers check any_host() first.
  const HostPattern* match_host(std::string_view host) const noexcept;

  SecretBinding(SecretBinding&&) noexcept = default;
  SecretBinding& operator=(SecretBinding&&) noexcept = default;
  SecretBinding clone() const;

 private:
  friend class SecretBuilder;
  SecretBinding() = default;
  std::string env_var_;
  SecretValue value_;
  std::string placeholder_;
  std::vector<HostPattern> hosts_;
  bool any_host_ = false;
  bool require_tls_identity_ = true;
  InjectionScopes scopes_;
  ViolationAction on_violation_ = ViolationAction::kUnset;
};

// Rust-style builder. build() validates and throws ConfigError("secret FOO: <rule>").
class SecretBuilder {
 public:
  SecretBuilder& env(std::string_view env_var);
  SecretBuilder& value(SecretValue value);
  SecretBuilder& value(std::string_view value) { return this->value(SecretValue(value)); }
  SecretBuilder& allow_host(std::string_view host);
  SecretBuilder& allow_host_pattern(std::string_view pattern);
  SecretBuilder& allow_any_host_dangerous(bool i_understand_the_risk);
  SecretBuilder& placeholder(std::string_view placeholder);
  SecretBuilder& require_tls_identity(bool required);
  SecretBuilder& inject_headers(bool on);
  SecretBuilder& inject_basic_auth(bool on);
  SecretBuilder& inject_query(bool on);
  SecretBuilder& inject_body(bool on);
  SecretBuilder& on_violation(ViolationAction action);
  SecretBinding build();

 private:
  std::string env_var_;
  std::optional<SecretValue> value_;
  std::vector<std::string> hosts_;
  std::vector<std::string> host_patterns_;
  bool any_host_ = false;
  std::optional<std::string> placeholder_;
  bool require_tls_identity_ = true;
  InjectionScopes scopes_;
  ViolationAction on_violation_ = ViolationAction::kUnset;
};

// The plain-struct form (Go-style names as the same data).
struct SecretEntry {
  std::string env_var;
  SecretValue value;
  std::vector<std::string> allow_hosts;
  std::vector<std::string> allow_host_patterns;
  std::string placeholder;                 // empty: the default `$MSB_<env var>`
  std::optional<bool> require_tls;         // unset: true
  ViolationAction on_violation = ViolationAction::kUnset;
  bool allow_any_host_dangerous = false;
  InjectionScopes inject;
  SecretBinding bind() const;              // validates like SecretBuilder::build
};

struct SecretEnvOptions {
  std::vector<std::string> allow_hosts;
  std::vector<std::string> allow_host_patterns;
  std::string placeholder;
  std::optional<bool> require_tls;
  ViolationAction on_violation = ViolationAction::kUnset;
};

struct Secret {
  static SecretEntry env(std::string_view env_var, std::string_view value,
                         SecretEnvOptions options = {});
};

// Checks the rules across secrets: no shared placeholder, no placeholder inside another,
// no env var bound twice. Throws ConfigError naming both secrets.
void validate_secret_set(const std::vector<SecretBinding>& secrets);

// §4: the last non-empty per-secret action wins over the network's; then the runtime default.
ViolationAction effective_violation_action(const std::vector<SecretBinding>& secrets,
                                           ViolationAction network_action) noexcept;

inline constexpr std::size_t kDefaultMaxBodyBytes = 16u << 20;

struct UpstreamCa {
  std::optional<HostPattern> for_hosts;    // nullopt: trusted for every host
  std::string pem_file;
};

struct NetworkConfig {
  ViolationAction on_secret_violation = ViolationAction::kUnset;
  std::vector<std::uint16_t> intercept_ports{443};
  std::vector<HostPattern> tls_bypass;     // spliced as opaque bytes: no substitution, no detection
  std::vector<UpstreamCa> upstream_cas;
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;
  // Egress rules in their one-line form (`allow@api.example.com:tcp:443`, `deny@private`; the
  // syntax is in policy/rule.hpp), first match wins; the defaults (allow public TCP, DNS to the
  // gateway, deny the rest) follow them. Checked where the config is loaded.
  std::vector<std::string> egress;
};

class NetworkBuilder {
 public:
  NetworkBuilder& on_secret_violation(ViolationAction action);
  NetworkBuilder& intercept_port(std::uint16_t port);   // adds to the default 443
  NetworkBuilder& bypass_tls(std::string_view host_pattern);
  NetworkBuilder& upstream_ca_file(std::string pem_file, std::optional<std::string_view> for_hosts = {});
  NetworkBuilder& max_body_bytes(std::size_t bytes);
  NetworkConfig& config() noexcept { return config_; }

 private:
  NetworkConfig config_;
};

struct SandboxConfig {
  std::vector<SecretBinding> secrets;
  NetworkConfig network;
  // §4 resolved: what the runtime applies network-wide.
  ViolationAction violation_action() const noexcept {
    return effective_violation_action(secrets, network.on_secret_violation);
  }
};

class SandboxBuilder {
 public:
  SandboxBuilder& secret(const std::function<SecretBuilder&(SecretBuilder&)>& configure);
  SandboxBuilder& secret(SecretEntry entry);
  SandboxBuilder& secret_env(std::string_view env_var, std::string_view value, std::string_view host);
  SandboxBuilder& network(const std::function<NetworkBuilder&(NetworkBuilder&)>& configure);
  // Validates every secret and the set; throws ConfigError.
  SandboxConfig build();

 private:
  std::vector<SecretBinding> secrets_;
  NetworkBuilder network_;
};

}  // namespace airlock
