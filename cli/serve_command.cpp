// `airlock serve --control-fd N`: the machine interface the SDKs drive (docs/machine-interface.md).
//
// On the inherited descriptor N (a Unix stream socket the SDK made with socketpair) the SDK
// writes the spec, one JSON line holding the secrets' values (so they never sit on a command
// line, in an environment or in a file), then run and stop requests; airlock answers with
// events (started, warning, violation, exited, error, stopped), one JSON line each.
//
// One long-lived sandbox per serve: its command is the command agent (agent/command_agent.c),
// which runs each request's command in that same sandbox, one after another, so they share its
// /tmp, workspace and background processes the way a user of CreateSandbox then Run expects.
// What the agent sends back is untrusted (it lives in the sandbox): frames are bounded, and a
// broken frame ends the sandbox.
#include "cli/commands.hpp"
#include "cli/network_services.hpp"
#include "cli/serve.hpp"

#include "machine/protocol.hpp"
#include "machine/spec.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

namespace airlock::cli {
namespace {

using machine::Event;

// Writes all of `bytes` to a blocking descriptor; false when the reader is gone.
bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Events to the client. Answers (started, exited, error, stopped) are written at once, blocking:
// the client waits for them. Violations come from the guest, at its pace: they are queued and
// written as the socket takes them, and past kMaxQueuedBytes dropped and counted, so a guest
// looping on violations while the client reads nothing never blocks this loop (and with it the
// audit pipe and the gateway threads that write to it).
class EventSink {
 public:
  explicit EventSink(int fd) : fd_(fd) {}
  void send(const Event& e) {
    out_ += machine::encode_event(e);
    flush(true);
  }
  void send_droppable(const Event& e) {
    if (out_.size() > kMaxQueuedBytes) {
      ++dropped_;
      return;
    }
    if (dropped_ > 0) {
      out_ += machine::encode_event(machine::WarningEvent{
          std::to_string(dropped_) + " violation events were dropped (the client did not read them; the audit log has them)"});
      dropped_ = 0;
    }
    out_ += machine::encode_event(e);
    flush(false);
  }
  // Writes what is queued; without `block`, only what the socket takes now.
  void flush(bool block) {
    while (!out_.empty() && !gone_) {
      const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL | (block ? 0 : MSG_DONTWAIT));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && !block && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        gone_ = true;
        out_.clear();
        return;
      }
      out_.erase(0, static_cast<std::size_t>(n));
    }
  }
  bool pending() const noexcept { return !out_.empty(); }
  bool gone() const noexcept { return gone_; }

 private:
  static constexpr std::size_t kMaxQueuedBytes = 1u << 20;
  int fd_;
  std::string out_;
  std::uint64_t dropped_ = 0;
  bool gone_ = false;
};

// Newline-delimited messages from a descriptor, each at most kMaxMessageBytes. The buffer is
// reserved once, so no reallocation leaves a copy of the spec (it holds values) in freed memory,
// and consumed bytes are wiped.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) { buffer_.reserve(machine::kMaxMessageBytes + kChunk); }
  ~LineReader() { machine::wipe(buffer_); }
  // A whole line (without "\n") if one is buffered.
  std::optional<std::string> take_line() {
    const std::size_t nl = buffer_.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string line = buffer_.substr(0, nl);
    std::memset(buffer_.data(), 0, nl + 1);
    buffer_.erase(0, nl + 1);
    return line;
  }
  // Reads once; false at end of file or error. Throws when a line is too long.
  bool fill() {
    const std::size_t old = buffer_.size();
    buffer_.resize(old + kChunk);
    ssize_t n;
    do {
      n = ::read(fd_, buffer_.data() + old, kChunk);
    } while (n < 0 && errno == EINTR);
    buffer_.resize(old + static_cast<std::size_t>(n > 0 ? n : 0));
    if (buffer_.size() > machine::kMaxMessageBytes && buffer_.find('\n') == std::string::npos) {
      throw ConfigError("a control message is longer than " + std::to_string(machine::kMaxMessageBytes) + " bytes");
    }
    return n > 0;
  }

 private:
  static constexpr std::size_t kChunk = 64u << 10;
  int fd_;
  std::string buffer_;
};

// SIGTERM and SIGHUP stop the sandbox (read from a signalfd). Blocked before any thread starts so
// that every thread inherits the mask; the sandbox's processes start with a clean one.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

sandbox::SandboxOptions sandbox_options(const machine::Spec& spec) {
  sandbox::SandboxOptions options;
  // The agent is this process's fd 0 when the sandbox starts (see start_agent).
  options.command = {"/proc/self/fd/0"};
  options.env.set = spec.env;
  for (const machine::Mount& m : spec.mounts) options.volumes.push_back({m.host, m.guest, m.read_only});
  options.rootfs = spec.rootfs;
  options.workdir = spec.workspace.dir;
  switch (spec.workspace.mode) {
    case machine::Workspace::Mode::kReadWrite: options.workspace = sandbox::SandboxOptions::Workspace::kReadWrite; break;
    case machine::Workspace::Mode::kOverlay: options.workspace = sandbox::SandboxOptions::Workspace::kOverlay; break;
    case machine::Workspace::Mode::kNone: options.workspace = sandbox::SandboxOptions::Workspace::kNone; break;
  }
  options.cwd = spec.workdir;
  if (spec.limits.timeout_ms) options.limits.timeout = std::chrono::milliseconds(*spec.limits.timeout_ms);
  options.limits.memory_bytes = spec.limits.memory_bytes;
  options.limits.cpus = spec.limits.cpus;
  options.limits.pids = spec.limits.pids;
  return options;
}

// The serve session after the spec: one sandbox, its agent, the request queue.
class Session {
 public:
  Session(int control, machine::Spec spec, LineReader& reader)
      : control_(control), events_(control), reader_(reader), spec_(std::move(spec)) {}
  ~Session() {
    if (waiter_.joinable()) {  // an exception left the loop
      box_->terminate("airlock serve failed");
      waiter_.join();
    }
  }

  int run() {
    int audit_pipe[2];
    if (::pipe2(audit_pipe, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
    audit_read_ = audit_pipe[0];
    GatewaySettings settings;
    settings.home = spec_.gateway.home;
    settings.log_level = spec_.gateway.log_level;
    // The gateway's audit records come to this process through a pipe: violations become
    // events, and the records go on to the spec's audit log, if any.
    settings.audit_log = "/proc/self/fd/" + std::to_string(audit_pipe[1]);
    if (!spec_.gateway.audit_log.empty()) {
      user_audit_ = ::open(spec_.gateway.audit_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
      if (user_audit_ < 0) {
        throw ConfigError("gateway.audit_log " + quote_for_message(spec_.gateway.audit_log) + ": " + std::strerror(errno));
      }
    }
    sandbox_ = make_sandbox_with_network(sandbox_options(spec_), spec_.config.secrets,
                                                           spec_.config.network, settings, {}, spec_.dns_servers,
                                         sandbox_budget(settings, spec_.limits.memory_bytes));
    ::close(audit_pipe[1]);  // the gateway and the DNS forwarder opened their own
    box_ = sandbox_.box.get();
    start_agent(*box_);
    for (const std::string& w : box_->warnings()) events_.send(machine::WarningEvent{w});

    wake_ = ::eventfd(0, EFD_CLOEXEC);
    const sigset_t stopping = stop_signals();
    signals_ = ::signalfd(-1, &stopping, SFD_CLOEXEC | SFD_NONBLOCK);
    waiter_ = std::thread([this] {
      status_ = box_->wait();
      const std::uint64_t one = 1;
      (void)!::write(wake_, &one, sizeof one);
    });
    const int code = loop();
    if (waiter_.joinable()) {
      box_->terminate("stopped");
      waiter_.join();
    }
    sandbox_.services.reset();
    drain_audit();
    ::close(wake_);
    ::close(signals_);
    ::close(agent_);
    if (audit_read_ >= 0) ::close(audit_read_);
    if (user_audit_ >= 0) ::close(user_audit_);
    return code;
  }

 private:
  // The sandbox's command is the agent: this process's fd 0 is the agent's memfd and fd 1 the
  // agent's end of a socket pair while the sandbox starts; both go back to /dev/null after.
  void start_agent(sandbox::Sandbox& box) {
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
      throw std::runtime_error("socketpair: " + std::string(std::strerror(errno)));
    }
    agent_ = pair[0];
    const int image = command_agent_memfd();
    const bool ok = ::dup2(image, 0) == 0 && ::dup2(pair[1], 1) == 1;
    ::close(image);
    ::close(pair[1]);
    if (!ok) throw std::runtime_error("dup2: " + std::string(std::strerror(errno)));
    try {
      box.start();
    } catch (...) {
      restore_stdio();
      throw;
    }
    restore_stdio();
    ::fcntl(agent_, F_SETFL, O_NONBLOCK);
  }
  static void restore_stdio() {
    const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::close(null);
  }

  int loop() {
    bool control_open = true;
    for (;;) {
      while (control_open) {
        std::optional<std::string> line = reader_.take_line();
        if (!line) break;
        handle_request(*line);
        if (stop_requested_) break;
      }
      if (stop_requested_ || events_.gone()) {
        finish_run_with_error("the sandbox was stopped");
        events_.send(machine::StoppedEvent{0, ""});
        return 0;
      }
      send_next_run();
      const short control_events = static_cast<short>(POLLIN | (events_.pending() ? POLLOUT : 0));
      pollfd fds[5] = {{control_open ? control_ : -1, control_events, 0},
                       {agent_, static_cast<short>(POLLIN | (agent_out_.empty() ? 0 : POLLOUT)), 0},
                       {audit_read_, POLLIN, 0},
                       {wake_, POLLIN, 0},
                       {signals_, POLLIN, 0}};
      if (::poll(fds, 5, -1) < 0 && errno != EINTR) throw std::runtime_error("poll failed");
      if (fds[4].revents) {
        // SIGTERM or SIGHUP: stop as if asked, and say so.
        signalfd_siginfo info{};
        (void)!::read(signals_, &info, sizeof info);
        const int sig = static_cast<int>(info.ssi_signo);
        finish_run_with_error("airlock serve received signal " + std::to_string(sig));
        events_.send(machine::StoppedEvent{128 + sig, "airlock serve received signal " + std::to_string(sig)});
        return 128 + sig;
      }
      if (fds[2].revents && !read_audit()) audit_read_done();
      if (fds[1].revents & POLLOUT) write_agent();
      if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!read_agent()) return sandbox_ended();
      }
      if (fds[3].revents) return sandbox_ended();
      if (fds[0].revents & POLLOUT) events_.flush(false);
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        try {
          if (!reader_.fill()) {
            // The SDK is gone (its process ended or it closed the channel): so is the sandbox.
            control_open = false;
            stop_requested_ = true;
          }
        } catch (const ConfigError& e) {
          events_.send(machine::ErrorEvent{std::nullopt, e.what()});
          stop_requested_ = true;
        }
      }
    }
  }

  void handle_request(const std::string& line) {
    machine::Request request;
    try {
      request = machine::parse_request(line);
    } catch (const ConfigError& e) {
      events_.send(machine::ErrorEvent{std::nullopt, e.what()});
      return;
    }
    if (std::holds_alternative<machine::StopRequest>(request)) {
      stop_requested_ = true;
      return;
    }
    if (const auto* cancel = std::get_if<machine::CancelRequest>(&request)) {
      if (current_ && current_->id == cancel->id) {
        agent_out_ += machine::encode_kill_frame();  // its exit is reported as usual
        write_agent();
        return;
      }
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->id == cancel->id) {
          events_.send(machine::ErrorEvent{cancel->id, "cancelled before it ran"});
          queue_.erase(it);
          return;
        }
      }
      return;  // already ended: nothing to cancel
    }
    machine::RunRequest& run = std::get<machine::RunRequest>(request);
    try {
      machine::check_run_request(run, spec_.config.secrets);
    } catch (const ConfigError& e) {
      events_.send(machine::ErrorEvent{run.id, e.what()});
      return;
    }
    queue_.push_back(std::move(run));
  }

  void send_next_run() {
    if (current_ || !agent_ready_ || queue_.empty()) return;
    current_.emplace();
    current_->id = queue_.front().id;
    agent_out_ += machine::encode_run_frame(queue_.front());
    queue_.pop_front();
    write_agent();
  }

  void write_agent() {
    while (!agent_out_.empty()) {
      const ssize_t n = ::send(agent_, agent_out_.data(), agent_out_.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // EAGAIN: poll says when; an error shows as POLLERR/HUP on read
      agent_out_.erase(0, static_cast<std::size_t>(n));
    }
  }

  // False when the agent is gone or broke the protocol (the sandbox is then terminated).
  bool read_agent() {
    char buf[64 << 10];
    const ssize_t n = ::read(agent_, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (n <= 0) {
      box_->terminate("the command agent ended");
      return false;
    }
    frames_.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    while (auto frame = frames_.next()) {
      if (!handle_frame(*frame)) {
        box_->terminate("the command agent broke the protocol");
        return false;
      }
    }
    if (!frames_.error().empty()) {
      box_->terminate("the command agent broke the protocol: " + frames_.error());
      return false;
    }
    return true;
  }

  bool handle_frame(const machine::AgentFrame& frame) {
    if (frame.type == 'H') {
      if (agent_ready_) return false;
      agent_ready_ = true;
      std::vector<std::pair<std::string, std::string>> placeholders;
      for (const SecretBinding& s : spec_.config.secrets) placeholders.emplace_back(s.env_var(), s.placeholder());
      events_.send(machine::StartedEvent{box_->id(), std::move(placeholders)});
      run_spec_command();
      return true;
    }
    if (!current_) return false;  // output or an exit with no command running
    if (frame.type == 'O' || frame.type == 'E') {
      std::string& out = frame.type == 'O' ? current_->stdout_bytes : current_->stderr_bytes;
      bool& truncated = frame.type == 'O' ? current_->stdout_truncated : current_->stderr_truncated;
      const std::size_t room = machine::kMaxOutputBytes - std::min(out.size(), machine::kMaxOutputBytes);
      if (frame.payload.size() > room) truncated = true;
      out.append(frame.payload, 0, std::min(room, frame.payload.size()));
      return true;
    }
    const std::optional<machine::AgentExit> exit = machine::parse_exit_payload(frame.payload);
    if (!exit) return false;
    current_->code = exit->code;
    current_->timed_out = exit->timed_out;
    events_.send(*current_);
    current_.reset();
    if (one_shot_) stop_requested_ = true;
    return true;
  }

  // A spec with a command: run it once, as request 0, then stop (like `airlock run`).
  void run_spec_command() {
    if (spec_.command.empty()) return;
    machine::RunRequest r;
    r.argv = spec_.command;
    queue_.push_front(std::move(r));
    one_shot_ = true;
  }

  void finish_run_with_error(const std::string& why) {
    if (current_) events_.send(machine::ErrorEvent{current_->id, "the command did not finish: " + why});
    current_.reset();
    for (const machine::RunRequest& r : queue_) events_.send(machine::ErrorEvent{r.id, "not run: " + why});
    queue_.clear();
  }

  // The sandbox ended (its timeout, block-and-terminate, or the agent died): report why.
  int sandbox_ended() {
    box_->terminate("the command agent ended");  // a no-op when it already ended
    waiter_.join();
    drain_audit_until_quiet();  // a block-and-terminate violation's record comes before "stopped"
    std::string reason = status_.reason;
    int code = status_.code;
    if (status_.kind == sandbox::ExitStatus::Kind::kTimedOut) reason = "the sandbox's timeout elapsed";
    if (!agent_ready_ && status_.kind == sandbox::ExitStatus::Kind::kExited) {
      reason = "the command agent could not start in the sandbox (exit status " + std::to_string(code) + ")";
    }
    if (code == 0) code = sandbox::kExitTerminated;  // the agent never exits 0 on its own
    finish_run_with_error(reason.empty() ? "the sandbox ended" : reason);
    events_.send(machine::StoppedEvent{code, reason});
    return code;
  }

  // False at the end of the pipe (every writer closed it) or when nothing could be read.
  bool read_audit() {
    char buf[16 << 10];
    const ssize_t n = ::read(audit_read_, buf, sizeof buf);
    if (n <= 0) return false;
    audit_.append(buf, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = audit_.find('\n')) != std::string::npos) {
      const std::string line = audit_.substr(0, nl);
      audit_.erase(0, nl + 1);
      if (user_audit_ >= 0) (void)write_all(user_audit_, line + "\n");
      if (line.find("\"event\":\"violation\"") != std::string::npos) events_.send_droppable(machine::ViolationEvent{line});
    }
    if (audit_.size() > (1u << 20)) audit_.clear();  // one absurd record: dropped, not grown
    return true;
  }
  // The pipe's writers are gone (they never are while the gateway runs): stop polling it.
  void audit_read_done() {
    ::close(audit_read_);
    audit_read_ = -1;
  }
  void drain_audit_until_quiet() {
    if (audit_read_ < 0) return;
    pollfd p{audit_read_, POLLIN, 0};
    while (::poll(&p, 1, 20) == 1 && (p.revents & (POLLIN | POLLHUP)) && read_audit()) {
    }
  }
  void drain_audit() {
    if (audit_read_ < 0) return;
    ::fcntl(audit_read_, F_SETFL, O_NONBLOCK);
    drain_audit_until_quiet();
  }

  int control_;
  int signals_ = -1;
  EventSink events_;
  LineReader& reader_;
  machine::Spec spec_;
  SandboxWithNetwork sandbox_;
  sandbox::Sandbox* box_ = nullptr;
  int agent_ = -1;
  int audit_read_ = -1;
  int user_audit_ = -1;
  int wake_ = -1;
  std::thread waiter_;             // box_->wait(), then wakes the loop
  sandbox::ExitStatus status_;     // set by waiter_ before it wakes the loop
  bool agent_ready_ = false;
  bool stop_requested_ = false;
  bool one_shot_ = false;
  std::string agent_out_;
  machine::AgentFrameReader frames_;
  std::deque<machine::RunRequest> queue_;
  std::optional<machine::ExitedEvent> current_;
  std::string audit_;
};

int serve(int control) {
  struct stat st{};
  if (::fstat(control, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    throw ConfigError("--control-fd " + std::to_string(control) + ": not an open socket (the SDK passes one end of a socketpair)");
  }
  ::fcntl(control, F_SETFD, FD_CLOEXEC);  // never inherited by anything airlock starts
  ::signal(SIGPIPE, SIG_IGN);
  // A terminal's Ctrl-C reaches every process of its foreground group: the program that started
  // this serve decides what it means (closing the channel stops the sandbox).
  ::signal(SIGINT, SIG_IGN);
  const sigset_t stopping = stop_signals();
  ::pthread_sigmask(SIG_BLOCK, &stopping, nullptr);
  EventSink events(control);
  LineReader reader(control);
  std::optional<std::string> first;
  while (!(first = reader.take_line())) {
    if (!reader.fill()) return 0;  // closed before a spec: nothing to do
  }
  machine::Spec spec;
  try {
    spec = machine::parse_spec(*first);
  } catch (const ConfigError& e) {
    events.send(machine::ErrorEvent{std::nullopt, e.what()});
    events.send(machine::StoppedEvent{2, "invalid spec"});
    return 2;
  }
  try {
    Session session(control, std::move(spec), reader);
    return session.run();
  } catch (const ConfigError& e) {
    events.send(machine::ErrorEvent{std::nullopt, e.what()});
    events.send(machine::StoppedEvent{2, "invalid spec"});
    return 2;
  } catch (const std::exception& e) {
    events.send(machine::ErrorEvent{std::nullopt, std::string("the sandbox could not be set up: ") + e.what()});
    events.send(machine::StoppedEvent{sandbox::kExitSetupFailed, "setup failed"});
    return sandbox::kExitSetupFailed;
  }
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto fd = std::make_shared<int>(-1);
  CLI::App* command = app.add_subcommand(
      "serve", "The machine interface for SDKs: a sandbox from a JSON spec read on an inherited socket");
  command->add_option("--control-fd", *fd, "the inherited socket (spec and requests in, events out)")->required();
  command->footer("Protocol: docs/machine-interface.md (version 1).");
  command->callback([fd] {
    const int code = serve(*fd);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace airlock::cli
