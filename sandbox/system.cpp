// Small system helpers of the sandbox: fds, tools run by argument vector (never a shell),
// files. (The seccomp program is in seccomp.cpp.)
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace airlock::sandbox::detail {

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

void throw_errno(const std::string& what) {
  throw SandboxError(what + ": " + std::strerror(errno));
}

std::string find_tool(const std::string& name) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    std::string path = std::string(dir) + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  throw SandboxError("the '" + name + "' command is needed and was not found");
}

void run_tool(const std::vector<std::string>& argv, std::string_view input, int netns_fd,
              std::chrono::milliseconds timeout) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char* const empty_env[] = {nullptr};

  int in[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw_errno("pipe");
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    throw_errno("pipe");
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec: the parent may have threads.
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) _exit(126);
    ::dup2(in[0], 0);
    ::dup2(err[1], 1);
    ::dup2(err[1], 2);
    ::execve(args[0], args.data(), empty_env);
    _exit(127);
  }
  ::close(in[0]);
  ::close(err[1]);
  Fd in_w(in[1]), err_r(err[0]);
  if (pid < 0) throw_errno("fork");

  // Small inputs fit the pipe buffer; write all, then read stderr until EOF or the deadline.
  std::size_t off = 0;
  while (off < input.size()) {
    const ssize_t n = ::write(in_w.get(), input.data() + off, input.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  in_w.reset();
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{err_r.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(err_r.get(), buf, sizeof buf);
    if (n <= 0) break;
    if (output.size() < 16384) output.append(buf, static_cast<std::size_t>(n));
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) throw SandboxError(argv[0] + " did not finish in time");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
    throw SandboxError(argv[0] + " failed (status " + std::to_string(status) + "): " + output);
  }
}

void write_file(const std::string& path, std::string_view content, int mode) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) throw_errno("open " + path);
  std::size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd.get(), content.data() + off, content.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno("write " + path);
    off += static_cast<std::size_t>(n);
  }
}

std::optional<std::string> read_small_file(const std::string& path, std::size_t limit) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > limit) return std::nullopt;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

unsigned long long process_start_time(pid_t pid) {
  const auto stat = read_small_file("/proc/" + std::to_string(pid) + "/stat", 65536);
  if (!stat) return 0;
  // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
  const std::size_t close = stat->rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat->substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

std::vector<int> kept_capabilities() {
  return {CAP_CHOWN,   CAP_DAC_OVERRIDE,     CAP_FOWNER,  CAP_FSETID,       CAP_KILL,
          CAP_SETGID,  CAP_SETUID,           CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_NET_RAW,
          CAP_SYS_CHROOT, CAP_MKNOD,         CAP_AUDIT_WRITE};  // not SETFCAP: no file capabilities
                                                                  // can be written to the workspace
}

}  // namespace airlock::sandbox::detail
