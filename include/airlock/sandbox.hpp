#pragma once
// Starting a sandbox from a program: airlock::Sandbox runs commands in a sandbox built from a
// SandboxConfig (secrets and network) and a few sandbox settings. It drives the airlock binary
// through its machine interface (`airlock serve`, docs/machine-interface.md): the secrets'
// values go over a socket the child inherits, never on a command line, in an environment or in a
// file. Link airlock::airlock (find_package(airlock)). Control path: errors throw.
#include <airlock/errors.hpp>
#include <airlock/secret.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace airlock {

// The sandbox could not be started, or stopped before a command ended.
class SandboxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Mount {
  std::string host;   // absolute
  std::string guest;  // absolute
  bool read_only = false;
};

// Everything about the sandbox besides its secrets and network.
struct SandboxSettings {
  std::string name = "sandbox";
  std::string rootfs;   // a local directory with a root file system; empty: the host's, read-only
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<Mount> mounts;
  // The workspace: a host directory the sandbox sees at the same path (empty: the current
  // directory); kOverlay discards what the sandbox writes there, kNone gives it none.
  enum class WorkspaceMode : std::uint8_t { kReadWrite, kOverlay, kNone };
  std::string workspace;
  WorkspaceMode workspace_mode = WorkspaceMode::kReadWrite;
  std::string workdir;  // where commands start; empty: the workspace
  std::optional<std::chrono::milliseconds> timeout;  // the sandbox's whole life
  std::vector<std::string> dns_servers;              // "IP[:PORT]"; empty: the host's resolver
  std::string airlock_binary;  // empty: $AIRLOCK_BIN, else "airlock" on PATH
  std::string home;            // airlock's state directory (its CA); empty: $AIRLOCK_HOME or ~/.airlock
  std::string audit_log;       // a file for the gateway's audit records; empty: none
  int log_fd = 2;              // airlock's own log lines (never a value) go here; -1: discarded
};

struct Command {
  std::vector<std::string> argv;  // argv[0] is looked up in the sandbox's PATH
  std::vector<std::pair<std::string, std::string>> env;
  std::string workdir;
  std::string stdin_bytes;
  std::optional<std::chrono::milliseconds> timeout;
};

struct RunResult {
  std::string stdout_bytes;
  std::string stderr_bytes;
  int exit_code = 0;
  bool timed_out = false;
  bool truncated = false;  // more than 8 MiB on a stream was dropped
};

// A started sandbox. Commands run in it one after another and share its state (/tmp, the
// workspace, background processes). Not thread-safe: use it from one thread at a time.
class Sandbox {
 public:
  // Starts the sandbox and returns once it can run commands. The config's values are sent to
  // airlock and wiped from the message buffer. Throws ConfigError for a rule airlock refuses,
  // SandboxError when it cannot start.
  static Sandbox start(SandboxConfig config, SandboxSettings settings = {});

  Sandbox(Sandbox&&) noexcept;
  Sandbox& operator=(Sandbox&&) noexcept;
  ~Sandbox();  // stop()

  // Runs a command and waits for it. A non-zero exit is a result; throws ConfigError when the
  // request is refused (e.g. it holds a secret's value) and SandboxError when the sandbox stopped.
  RunResult run(const Command& command);
  RunResult run(std::vector<std::string> argv);

  // Stops the sandbox (whatever still runs in it is killed) and waits for airlock. Idempotent.
  void stop();

  const std::string& id() const noexcept;
  // What the sandbox sees in env_var instead of the value ("" if no such secret).
  std::string placeholder(std::string_view env_var) const;
  // The gateway's audit records of violations so far (JSON objects; never a value): the first
  // 1000, as a guest can loop on violations (the audit log has every one).
  const std::vector<std::string>& violations() const noexcept;
  bool stopped() const noexcept;
  // Why it stopped ("" after stop()), and airlock's exit status (125 block-and-terminate).
  const std::string& stop_reason() const noexcept;
  int stop_code() const noexcept;

  struct Impl;

 private:
  explicit Sandbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock
