#include "cli/command_value.hpp"

#include <airlock/errors.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace airlock::cli {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> split_command(std::string_view text, const std::string& named) {
  static constexpr std::string_view kRefused = "\"'`$\\*?[]{}~;&|<>()#";
  if (text.find_first_of(kRefused) != std::string_view::npos || text.find_first_of("\r\n") != std::string_view::npos) {
    throw ConfigError(named + "value_from \"cmd:...\" is split on spaces only, without a shell: quotes, $, globs, "
                              "redirections and the like are not interpreted (put the command in a script)");
  }
  std::vector<std::string> argv;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    std::size_t end = i;
    while (end < text.size() && text[end] != ' ' && text[end] != '\t') ++end;
    if (end > i) argv.emplace_back(text.substr(i, end - i));
    i = end;
  }
  if (argv.empty()) throw ConfigError(named + "value_from \"cmd:\" needs a command after cmd:");
  if (argv[0].find('\0') != std::string::npos) throw ConfigError(named + "value_from \"cmd:...\" must not contain NUL");
  return argv;
}

bool hidden(std::string_view entry, const std::vector<std::string>& names) {
  const std::size_t eq = entry.find('=');
  const std::string_view name = entry.substr(0, eq);
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

SecretValue read_command_value(std::string_view env_var, std::string_view command, const std::string& base_dir,
                               const std::vector<std::string>& hidden_env, const CommandLimits& limits) {
  const std::string named = "secret " + quote_for_message(env_var) + ": ";
  std::vector<std::string> argv = split_command(command, named);
  if (argv[0].find('/') != std::string::npos && argv[0].front() != '/' && !base_dir.empty()) argv[0] = base_dir + "/" + argv[0];
  const std::string source = named + "value_from \"cmd:\" command " + quote_for_message(argv[0]);

  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!hidden(*e, hidden_env)) env.push_back(*e);
  }
  env.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw ConfigError(source + ": pipe: " + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  // Nothing else of this process: not the gateway's sockets (asio does not mark them close-on-exec).
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);  // the gateway blocks SIGTERM/SIGHUP: the command must not
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: a timeout kills what it started too
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  const int spawned = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(out[1]);
  if (spawned != 0) {
    ::close(out[0]);
    throw ConfigError(source + ": cannot run: " + std::strerror(spawned));
  }

  const Clock::time_point deadline = Clock::now() + limits.timeout;
  std::string buffer(limits.max_bytes + 1, '\0');
  std::size_t used = 0;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = ::read(out[0], buffer.data() + used, buffer.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += static_cast<std::size_t>(n);
    if (used == buffer.size()) break;  // over the cap: stop reading
  }
  ::close(out[0]);
  int status = 0;
  bool exited = false;
  while (!timed_out) {  // the output is complete (or over the cap): wait for the exit within the deadline
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      exited = true;
      break;
    }
    if (done < 0 && errno != EINTR) break;
    if (Clock::now() >= deadline || used > limits.max_bytes) {
      timed_out = used <= limits.max_bytes;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!exited) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  auto fail = [&](const std::string& why) -> SecretValue {
    SecretValue::take(buffer);  // wipes what was read
    throw ConfigError(source + ": " + why);
  };
  if (used > limits.max_bytes) return fail("printed more than " + std::to_string(limits.max_bytes / 1024) + " KiB");
  if (timed_out) return fail("did not finish within " + std::to_string(limits.timeout.count()) + " ms (killed)");
  if (WIFSIGNALED(status)) return fail(std::string("was killed by signal ") + std::to_string(WTERMSIG(status)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 127) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return fail("cannot run (exit status 127: not found?)");
    return fail("did not exit normally");
  }
  if (WEXITSTATUS(status) != 0) return fail("exited with status " + std::to_string(WEXITSTATUS(status)));
  std::size_t size = used;
  if (size > 0 && buffer[size - 1] == '\n') {
    --size;
    if (size > 0 && buffer[size - 1] == '\r') --size;
  }
  if (size == 0) return fail("printed nothing");
  SecretValue value(std::string_view(buffer.data(), size));
  SecretValue::take(buffer);
  return value;
}

}  // namespace airlock::cli
