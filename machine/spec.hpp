#pragma once
// The spec of a sandbox, as an SDK sends it to `airlock serve` (docs/machine-interface.md):
// one JSON object, `"version": 1`, with the secrets (their real values), the network, mounts,
// root file system, environment, limits and an optional command. Pure: no I/O.
#include <airlock/secret.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace airlock::machine {

inline constexpr int kVersion = 1;
// A spec (or any control message) is at most this long; a longer one is refused unread.
inline constexpr std::size_t kMaxMessageBytes = 16u << 20;

struct Mount {
  std::string host;   // absolute
  std::string guest;  // absolute
  bool read_only = false;
  friend bool operator==(const Mount&, const Mount&) = default;
};

// The workspace: a host directory the guest sees at the same path as its working directory.
struct Workspace {
  enum class Mode : std::uint8_t { kReadWrite, kOverlay, kNone };
  std::string dir;  // absolute; empty: airlock serve's current directory
  Mode mode = Mode::kReadWrite;  // kOverlay: writes go to a discarded layer; kNone: no workspace
};

struct Limits {
  std::optional<std::uint64_t> timeout_ms;  // the sandbox's whole life
  std::optional<std::uint64_t> memory_bytes;
  std::optional<double> cpus;
  std::optional<std::uint64_t> pids;
};

struct GatewaySpec {
  std::string home;       // airlock's state directory (CA); empty: the default
  std::string audit_log;  // a file the gateway appends audit records to; empty: none
  std::string log_level;  // error, warn (default), info, debug, trace
};

struct Spec {
  std::string name;                 // informational (the SDKs' sandbox name)
  SandboxConfig config;             // secrets and network, validated by the secret model
  std::vector<std::string> dns_servers;  // IP[:PORT] the DNS forwarder asks; empty: the host's
  std::vector<Mount> mounts;
  std::string rootfs;               // a directory; empty: the host's system, read-only
  Workspace workspace;
  std::string workdir;              // the guest's working directory; empty: the workspace
  std::vector<std::pair<std::string, std::string>> env;  // in the order given
  Limits limits;
  GatewaySpec gateway;
  std::vector<std::string> command;  // empty: a long-lived sandbox that runs what it is asked
};

// Parses and validates a spec. `text` is wiped (it holds secret values) whatever the outcome,
// and so is every intermediate copy the parser makes. Throws ConfigError("spec: ...") naming the
// field and the rule, never a value.
Spec parse_spec(std::string& text);

// The JSON text of a spec (for the C++ client): values included, so the caller wipes it
// after writing it to the channel.
std::string encode_spec(const Spec& spec);

// Wipes a string's bytes (not optimized away), then clears it.
void wipe(std::string& text) noexcept;

}  // namespace airlock::machine
