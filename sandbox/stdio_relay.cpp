// The guest never holds a descriptor of a host terminal: a process that holds one can make it its
// controlling terminal and queue input for the host (TIOCSTI), read what the user types, or change
// its modes. Each of the host's fds 0..2 that is a terminal is given to the guest as a pipe whose
// other end this relay copies to and from the terminal; with -t the command has its own pty (the
// parent's tty pump) and the guest's init gets /dev/null there.
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace airlock::sandbox::detail {
namespace {

// Above 0..2, so the child's dup2 onto 0..2 never overwrites a descriptor it still has to copy.
Fd high_fd(int fd) {
  if (fd < 0) throw_errno("stdio relay");
  Fd owned(fd);
  Fd high(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!high) throw_errno("stdio relay: dup");
  return high;
}

}  // namespace

StdioRelay::StdioRelay(bool own_pty) {
  for (int i = 0; i < 3; ++i) {
    if (::isatty(i) != 1) continue;
    if (own_pty) {
      guest_ends_[i] = high_fd(::open("/dev/null", O_RDWR | O_CLOEXEC));
      continue;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("stdio relay: pipe");
    Fd read_end = high_fd(p[0]), write_end = high_fd(p[1]);
    Channel c;
    c.to_guest = i == 0;
    c.host_fd = i;
    c.pipe = c.to_guest ? std::move(write_end) : std::move(read_end);
    guest_ends_[i] = c.to_guest ? std::move(read_end) : std::move(write_end);
    // Only the relay's own pipe ends are non-blocking; the host's terminal keeps its flags (they
    // belong to the file description the shell shares).
    ::fcntl(c.pipe.get(), F_SETFL, ::fcntl(c.pipe.get(), F_GETFL) | O_NONBLOCK);
    channels_.push_back(std::move(c));
  }
}

StdioRelay::~StdioRelay() { finish(std::chrono::milliseconds(0)); }

int StdioRelay::guest_fd(int i) const noexcept { return guest_ends_[i].get(); }

void StdioRelay::close_guest_ends() noexcept {
  for (Fd& fd : guest_ends_) fd.reset();
}

void StdioRelay::start() {
  if (channels_.empty() || thread_.joinable()) return;
  stop_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!stop_) throw_errno("stdio relay: eventfd");
  thread_ = std::thread([this] { run(); });
}

void StdioRelay::finish(std::chrono::milliseconds drain) {
  if (!thread_.joinable()) return;
  drain_ms_ = static_cast<int>(drain.count());
  const std::uint64_t one = 1;
  (void)!::write(stop_.get(), &one, sizeof one);
  thread_.join();
}

// One thread, one poll over every channel: a channel reads only when its buffer is empty and
// writes only what it holds, so memory is one buffer per channel and a slow side stalls only its
// own direction. No timeouts while running; after stop, outputs drain until EOF or the deadline.
void StdioRelay::run() {
  // A guest that closed its stdin makes the write fail with EPIPE, not kill airlock.
  sigset_t pipe_signal;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, nullptr);

  std::optional<std::chrono::steady_clock::time_point> deadline;
  const auto close_channel = [](Channel& c) {
    c.done = true;
    c.pipe.reset();  // to the guest: EOF on its stdin; from it: EPIPE on its next write
  };
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<std::pair<Channel*, bool>> owners;  // channel, polled for writing
    for (Channel& c : channels_) {
      if (c.done) continue;
      const bool writing = c.length > 0;
      const int src = c.to_guest ? c.host_fd : c.pipe.get();
      const int dst = c.to_guest ? c.pipe.get() : c.host_fd;
      fds.push_back({writing ? dst : src, static_cast<short>(writing ? POLLOUT : POLLIN), 0});
      owners.emplace_back(&c, writing);
    }
    if (fds.empty()) return;
    if (!deadline) fds.push_back({stop_.get(), POLLIN, 0});
    int timeout = -1;
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return;
      timeout = static_cast<int>(left.count());
    }
    const int r = ::poll(fds.data(), fds.size(), timeout);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return;
    if (r == 0) return;  // the drain deadline passed
    if (!deadline && fds.back().revents != 0) {
      // The guest ended: nothing more goes to it; what it wrote last still comes out.
      deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(drain_ms_);
      for (Channel& c : channels_) {
        if (c.to_guest) close_channel(c);
      }
      continue;
    }
    for (std::size_t i = 0; i < owners.size(); ++i) {
      auto [c, writing] = owners[i];
      if (fds[i].revents == 0 || c->done) continue;
      if (writing) {
        const int dst = c->to_guest ? c->pipe.get() : c->host_fd;
        const ssize_t n = ::write(dst, c->buffer.data() + c->offset, c->length);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
          close_channel(*c);  // the guest closed its stdin, or the host terminal went away
          continue;
        }
        c->offset += static_cast<std::size_t>(n);
        c->length -= static_cast<std::size_t>(n);
        if (c->length == 0) c->offset = 0;
      } else {
        const int src = c->to_guest ? c->host_fd : c->pipe.get();
        const ssize_t n = ::read(src, c->buffer.data(), c->buffer.size());
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) {
          close_channel(*c);  // EOF (^D on the terminal, or every guest writer gone) or EIO
          continue;
        }
        c->length = static_cast<std::size_t>(n);
        c->offset = 0;
      }
    }
  }
}

}  // namespace airlock::sandbox::detail
