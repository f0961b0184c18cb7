// airlock::Sandbox: the C++ client of `airlock serve` (docs/machine-interface.md).
#include <airlock/sandbox.hpp>

#include "machine/protocol.hpp"
#include "machine/spec.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern char** environ;

namespace airlock {

namespace {

[[noreturn]] void fail(const std::string& what) { throw SandboxError("airlock: " + what); }

// The variables airlock uses; nothing else of the caller's environment (which often holds
// credentials) is passed on, and none that holds a secret's value.
std::vector<std::string> child_env(const std::vector<SecretBinding>& secrets) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const std::string_view name = kv.substr(0, kv.find('='));
    const bool used = name == "PATH" || name == "HOME" || name == "TMPDIR" || name == "LANG" || name == "TERM" ||
                      name.starts_with("LC_") || name.starts_with("AIRLOCK_");
    if (!used) continue;
    bool holds = false;
    for (const SecretBinding& s : secrets) {
      const std::string_view v = s.value().expose();
      holds = holds || (!v.empty() && kv.find(v) != std::string_view::npos);
    }
    if (!holds) out.emplace_back(kv);
  }
  return out;
}

std::string airlock_binary(const SandboxSettings& settings) {
  if (!settings.airlock_binary.empty()) return settings.airlock_binary;
  if (const char* b = std::getenv("AIRLOCK_BIN"); b != nullptr && *b != '\0') return b;
  return "airlock";
}

}  // namespace

struct Sandbox::Impl {
  static constexpr std::size_t kMaxViolationsKept = 1000;
  pid_t pid = -1;
  int control = -1;
  std::string buffer;  // bytes read from airlock, not yet a whole line
  std::string id;
  std::vector<std::pair<std::string, std::string>> placeholders;
  std::vector<std::string> violations;
  std::vector<SecretBinding> secrets;  // to check requests before they are sent
  bool stopped = false;
  std::string stop_reason;
  int stop_code = 0;
  std::uint64_t next_id = 0;

  ~Impl() { shut_down(); }

  // The next event; nullopt when airlock closed the channel.
  std::optional<machine::Event> next_event() {
    for (;;) {
      const std::size_t nl = buffer.find('\n');
      if (nl != std::string::npos) {
        const std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        try {
          return machine::parse_event(line);
        } catch (const ConfigError&) {
          continue;  // an event this client does not know: skipped
        }
      }
      char chunk[64 << 10];
      const ssize_t n = ::read(control, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Records what every event says about the sandbox; true for the ones a caller waits for.
  void note(const machine::Event& e) {
    // A guest can loop on violations: the first kMaxViolationsKept are kept (the audit log has all).
    if (const auto* v = std::get_if<machine::ViolationEvent>(&e); v != nullptr && violations.size() < kMaxViolationsKept) {
      violations.push_back(v->record);
    }
    if (const auto* s = std::get_if<machine::StoppedEvent>(&e)) {
      stopped = true;
      stop_code = s->code;
      stop_reason = s->reason;
    }
  }

  void send(const std::string& line) {
    std::string_view rest(line);
    while (!rest.empty()) {
      const ssize_t n = ::send(control, rest.data(), rest.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("the sandbox is gone: " + std::string(std::strerror(errno)));
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void shut_down() {
    if (control >= 0) {
      if (!stopped) {
        try {
          send(machine::encode_request(machine::StopRequest{}));
        } catch (const SandboxError&) {
        }
        while (auto e = next_event()) note(*e);  // until airlock closes the channel
      }
      ::close(control);
      control = -1;
    }
    if (pid > 0) {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      pid = -1;
    }
    stopped = true;
  }
};

Sandbox Sandbox::start(SandboxConfig config, SandboxSettings settings) {
  auto impl = std::make_unique<Impl>();
  machine::Spec spec;
  spec.name = settings.name;
  spec.dns_servers = settings.dns_servers;
  for (const Mount& m : settings.mounts) spec.mounts.push_back({m.host, m.guest, m.read_only});
  spec.rootfs = settings.rootfs;
  spec.workspace.dir = settings.workspace;
  spec.workspace.mode = settings.workspace_mode == SandboxSettings::WorkspaceMode::kOverlay ? machine::Workspace::Mode::kOverlay
                        : settings.workspace_mode == SandboxSettings::WorkspaceMode::kNone  ? machine::Workspace::Mode::kNone
                                                                                           : machine::Workspace::Mode::kReadWrite;
  spec.workdir = settings.workdir;
  spec.env = settings.env;
  if (settings.timeout) spec.limits.timeout_ms = static_cast<std::uint64_t>(settings.timeout->count());
  spec.gateway.home = settings.home;
  spec.gateway.audit_log = settings.audit_log;
  for (const SecretBinding& s : config.secrets) impl->secrets.push_back(s.clone());
  spec.config = std::move(config);

  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) fail("socketpair: " + std::string(std::strerror(errno)));
  impl->control = pair[0];
  // The child's end, above 3 so that dup2 onto 3 clears its close-on-exec flag.
  const int child = ::fcntl(pair[1], F_DUPFD_CLOEXEC, 10);
  ::close(pair[1]);
  if (child < 0) fail("fcntl: " + std::string(std::strerror(errno)));

  const std::string binary = airlock_binary(settings);
  std::vector<std::string> args = {binary, "serve", "--control-fd", "3"};
  std::vector<std::string> env = child_env(impl->secrets);
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  if (settings.log_fd >= 0) {
    posix_spawn_file_actions_adddup2(&actions, settings.log_fd, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, child, 3);
  const int rc = ::posix_spawnp(&impl->pid, binary.c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(child);
  if (rc != 0) {
    impl->pid = -1;
    fail("cannot start " + binary + ": " + std::strerror(rc));
  }

  std::string text = machine::encode_spec(spec);  // holds the values: wiped once sent
  text.push_back('\n');
  try {
    impl->send(text);
  } catch (const SandboxError&) {
    // airlock ended before reading: the events below say why
  }
  machine::wipe(text);

  std::string first_error;
  while (auto e = impl->next_event()) {
    impl->note(*e);
    if (const auto* s = std::get_if<machine::StartedEvent>(&*e)) {
      impl->id = s->sandbox;
      impl->placeholders = s->placeholders;
      return Sandbox(std::move(impl));
    }
    if (const auto* err = std::get_if<machine::ErrorEvent>(&*e)) first_error = err->message;
    if (std::holds_alternative<machine::StoppedEvent>(*e)) break;
  }
  const bool config_error = impl->stopped && impl->stop_code == 2;  // airlock refused the spec
  impl->shut_down();
  if (config_error) throw ConfigError(first_error.starts_with("spec: ") ? first_error.substr(6) : first_error);
  fail(first_error.empty() ? "airlock serve ended before the sandbox started (see its log)" : first_error);
}

Sandbox::Sandbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sandbox::Sandbox(Sandbox&&) noexcept = default;
Sandbox& Sandbox::operator=(Sandbox&&) noexcept = default;
Sandbox::~Sandbox() = default;

RunResult Sandbox::run(std::vector<std::string> argv) {
  Command c;
  c.argv = std::move(argv);
  return run(c);
}

RunResult Sandbox::run(const Command& command) {
  if (!impl_ || impl_->stopped) fail("the sandbox has stopped" + (impl_ ? ": " + impl_->stop_reason : std::string()));
  machine::RunRequest r;
  r.id = ++impl_->next_id;
  r.argv = command.argv;
  r.env = command.env;
  r.workdir = command.workdir;
  r.stdin_bytes = command.stdin_bytes;
  if (command.timeout) r.timeout_ms = static_cast<std::uint64_t>(std::max<long long>(1, command.timeout->count()));
  if (r.argv.empty() || r.argv[0].empty()) throw ConfigError("run: no command");
  machine::check_run_request(r, impl_->secrets);  // airlock checks too; this fails before sending
  impl_->send(machine::encode_request(r));
  while (auto e = impl_->next_event()) {
    impl_->note(*e);
    if (const auto* x = std::get_if<machine::ExitedEvent>(&*e); x != nullptr && x->id == r.id) {
      return RunResult{x->stdout_bytes, x->stderr_bytes, x->code, x->timed_out,
                       x->stdout_truncated || x->stderr_truncated};
    }
    if (const auto* err = std::get_if<machine::ErrorEvent>(&*e); err != nullptr && err->id == r.id) {
      if (err->message.starts_with("run: ")) throw ConfigError(err->message);
      // The sandbox ended under the command: its "stopped" event follows and says why.
      const std::string message = err->message;
      while (!impl_->stopped) {
        auto next = impl_->next_event();
        if (!next) break;
        impl_->note(*next);
      }
      fail(message);
    }
    if (impl_->stopped) fail("the sandbox stopped: " + impl_->stop_reason);
  }
  impl_->stopped = true;
  fail("airlock serve ended");
}

void Sandbox::stop() {
  if (impl_) impl_->shut_down();
}

const std::string& Sandbox::id() const noexcept { return impl_->id; }

std::string Sandbox::placeholder(std::string_view env_var) const {
  for (const auto& [k, v] : impl_->placeholders) {
    if (k == env_var) return v;
  }
  return "";
}

const std::vector<std::string>& Sandbox::violations() const noexcept { return impl_->violations; }
bool Sandbox::stopped() const noexcept { return !impl_ || impl_->stopped; }
const std::string& Sandbox::stop_reason() const noexcept { return impl_->stop_reason; }
int Sandbox::stop_code() const noexcept { return impl_->stop_code; }

}  // namespace airlock
