#pragma once
// The airlock configuration file (TOML): secrets, network settings and gateway settings.
// Values are never written in the file: each secret names where to read it (`value_from`).
#include <airlock/secret.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace airlock::cli {

// The standalone gateway's own settings; an empty string means "not set: use the default".
struct GatewaySettings {
  std::string transparent_listen;  // e.g. "127.0.0.1:15001"
  std::string proxy_listen;        // explicit HTTP CONNECT proxy, e.g. "127.0.0.1:3128"
  std::string audit_log;           // file path
  std::string home;                // airlock's state directory (CA, caches)
  std::string log_level;           // "trace", "debug", "info", "warn" or "error"
  bool resolve_pins_with_host_dns = false;
  // Budgets (unset: the gateway's defaults; see docs/security.md). Sizes in bytes.
  std::optional<std::uint64_t> memory_budget;         // all clients ("1G" or bytes)
  std::optional<std::uint64_t> client_memory_budget;  // one client (source address)
  std::optional<std::uint64_t> max_connections;       // open connections, all clients
  std::optional<std::uint64_t> max_client_connections;
  bool audit_fail_open = false;  // a failing audit log: go on substituting (default: block them)
};

// The `[sandbox]` table: how sandboxes are built on this host.
struct ViewSettings {
  std::string id_range;  // "FIRST-LAST": host ids reserved for sandboxes; empty: the default
};

struct AirlockConfig {
  SandboxConfig sandbox;
  GatewaySettings gateway;
  ViewSettings view;
  std::vector<std::string> secret_files;  // the `file:` sources of the secrets (never shown to a guest)
};

// Reads and validates a config file: every rule of secrets-spec §1/§2, unknown keys, types,
// and the values themselves (read from their `value_from` source now, never at first use).
// Throws ConfigError "PATH:LINE: ..." (the line when known); a message never holds a value.
// Relative `file:` sources and CA files are resolved against the config file's directory.
AirlockConfig load_config(const std::string& path);

// The same from TOML text; `origin` names it in errors and `base_dir` resolves relative paths.
AirlockConfig parse_config(std::string_view toml_text, const std::string& origin, const std::string& base_dir);

// Reads a `value_from` reference ("env:NAME", "file:PATH" or "cmd:PROGRAM ARG...", see
// cli/command_value.hpp) for the secret `env_var`. A file or command value has one trailing
// newline ("\n" or "\r\n") removed; over 64 KiB is refused. A command's environment lacks the
// variables `hidden_env` names (every secret's env var and env: source, so it sees no other value).
SecretValue read_value_from(std::string_view env_var, std::string_view value_from, const std::string& base_dir,
                            const std::vector<std::string>& hidden_env = {});

}  // namespace airlock::cli

namespace airlock::cli {

// A human-readable summary of a loaded config (what `airlock check` prints): each secret's env
// var, placeholder, hosts, scopes, TLS requirement and violation action, then the network and
// gateway settings. Never a value.
std::string summarize_config(const AirlockConfig& config);

}  // namespace airlock::cli
