// The guest's seccomp filter, installed for real in a forked child (no root needed: the child
// sets no_new_privs), then every denied call tried.
#include "sandbox/internal.hpp"

#include <gtest/gtest.h>

#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace airlock::sandbox::detail {
namespace {

bool covered(const std::vector<ValueBlock>& blocks, std::uint32_t v) {
  for (const ValueBlock& b : blocks) {
    if ((v & b.mask) == b.base) return true;
  }
  return false;
}

TEST(BlocksExcept, CoverExactlyTheComplement) {
  EXPECT_EQ(blocks_except({}), (std::vector<ValueBlock>{{0, 0}}));
  EXPECT_EQ(blocks_except({0}).size(), 32u);  // 1, 2-3, 4-7, ..., 2^31-2^32-1
  const std::vector<std::uint32_t> allowed = {0, 1, 2, 10, 16, 0x20000, 0x20008, 0xfffffffe, 0xffffffff};
  const std::vector<ValueBlock> blocks = blocks_except(allowed);
  std::vector<std::uint32_t> probes = {3, 9, 11, 15, 17, 0x1ffff, 0x20001, 0x20007, 0x20009,
                                       0x7fffffff, 0x80000000, 0xfffffffd};
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) probes.push_back(static_cast<std::uint32_t>(rng()));
  for (const std::uint32_t v : allowed) EXPECT_FALSE(covered(blocks, v)) << v;
  for (const std::uint32_t v : probes) {
    const bool is_allowed = std::find(allowed.begin(), allowed.end(), v) != allowed.end();
    EXPECT_EQ(covered(blocks, v), !is_allowed) << v;
  }
  // Aligned and disjoint: each block's base has no bits outside its mask.
  for (const ValueBlock& b : blocks) EXPECT_EQ(b.base & ~b.mask, 0u);
}

TEST(BlocksExcept, StopAtTheEndGiven) {
  const std::vector<ValueBlock> blocks = blocks_except({1, 2, 10, 16}, 64);
  for (std::uint32_t v = 0; v < 200; ++v) {
    const bool denied = v < 64 && v != 1 && v != 2 && v != 10 && v != 16;
    EXPECT_EQ(covered(blocks, v), denied) << v;
  }
  EXPECT_EQ(blocks.size(), 11u);
  EXPECT_EQ(blocks_except({0}, 1).size(), 0u);
}

struct Probe {
  std::string what;
  std::function<long()> call;  // a raw system call: -errno on failure, >= 0 on success
};

long sys(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
  const long r = ::syscall(nr, a, b, c, d, e);
  return r < 0 ? -errno : r;
}

// Runs the probes in a child under the filter; returns each probe's result.
std::vector<long> under_filter(const std::vector<Probe>& probes) {
  std::vector<sock_filter> program = build_seccomp_program();
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    sock_fprog prog{static_cast<unsigned short>(program.size()), program.data()};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
      _exit(99);
    }
    for (const Probe& p : probes) {
      const long r = p.call();
      if (::write(fds[1], &r, sizeof r) != sizeof r) _exit(98);
    }
    _exit(0);
  }
  ::close(fds[1]);
  std::vector<long> results;
  long r = 0;
  while (::read(fds[0], &r, sizeof r) == sizeof r) results.push_back(r);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  return results;
}

constexpr long kHigh = 1L << 32;  // set in the upper half of a register the kernel reads as int

TEST(SeccompFilter, DeniedCallsFailWithEpermWhateverTheUpperBitsOfTheirArguments) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const long pipe_fd = pipe_fds[0];
  char byte = 'x';
  const long byte_ptr = reinterpret_cast<long>(&byte);
  const std::vector<Probe> denied = {
      {"io_uring_setup", [] { return sys(SYS_io_uring_setup, 8, 0); }},
      {"io_uring_enter", [] { return sys(SYS_io_uring_enter, 0, 0, 0, 0, 0); }},
      {"io_uring_register", [] { return sys(SYS_io_uring_register, 0, 0, 0, 0); }},
      {"bpf", [] { return sys(SYS_bpf, 0, 0, 0); }},
      {"perf_event_open", [] { return sys(SYS_perf_event_open, 0, 0, -1, -1, 0); }},
      {"userfaultfd", [] { return sys(SYS_userfaultfd, 0); }},
      {"keyctl", [] { return sys(SYS_keyctl, 0, 0); }},
      {"add_key", [] { return sys(SYS_add_key, 0, 0, 0, 0, 0); }},
      {"request_key", [] { return sys(SYS_request_key, 0, 0, 0, 0); }},
      {"kexec_load", [] { return sys(SYS_kexec_load, 0, 0, 0, 0); }},
      {"open_by_handle_at", [] { return sys(SYS_open_by_handle_at, -1, 0, 0); }},
      {"name_to_handle_at", [] { return sys(SYS_name_to_handle_at, -1, 0, 0, 0, 0); }},
      {"pidfd_getfd", [] { return sys(SYS_pidfd_getfd, -1, 0, 0); }},
      {"kcmp", [] { return sys(SYS_kcmp, 1, 1, 0, 0, 0); }},
      {"process_madvise", [] { return sys(SYS_process_madvise, -1, 0, 0, 0, 0); }},
      {"fsopen", [] { return sys(SYS_fsopen, 0, 0); }},
      {"open_tree", [] { return sys(SYS_open_tree, -1, 0, 0); }},
      {"mount_setattr", [] { return sys(SYS_mount_setattr, -1, 0, 0, 0, 0); }},
      {"setns", [] { return sys(SYS_setns, -1, 0); }},
      {"ptrace", [] { return sys(SYS_ptrace, 0, 0, 0, 0); }},
      {"unshare(CLONE_NEWUSER)", [] { return sys(SYS_unshare, CLONE_NEWUSER); }},
      {"socket(AF_VSOCK)", [] { return sys(SYS_socket, 40, SOCK_STREAM, 0); }},
      {"socket(AF_VSOCK | high bits)", [] { return sys(SYS_socket, kHigh | 40, SOCK_STREAM, 0); }},
      {"socket(AF_PACKET)", [] { return sys(SYS_socket, AF_PACKET, SOCK_RAW, 0); }},
      {"socket(AF_ALG)", [] { return sys(SYS_socket, AF_ALG, SOCK_SEQPACKET, 0); }},
      {"socket(AF_KEY)", [] { return sys(SYS_socket, AF_KEY, SOCK_RAW, 2); }},
      {"socket(AF_BLUETOOTH)", [] { return sys(SYS_socket, AF_BLUETOOTH, SOCK_RAW, 0); }},
      {"socket(AF_NETLINK, KOBJECT_UEVENT)",
       [] { return sys(SYS_socket, AF_NETLINK, SOCK_DGRAM, NETLINK_KOBJECT_UEVENT); }},
      {"socket(AF_NETLINK, GENERIC)", [] { return sys(SYS_socket, AF_NETLINK, SOCK_DGRAM, NETLINK_GENERIC); }},
      {"socket(AF_NETLINK, NETFILTER | high bits)",
       [] { return sys(SYS_socket, AF_NETLINK, SOCK_DGRAM, kHigh | NETLINK_NETFILTER); }},
      {"socketpair(AF_VSOCK)", [] { return sys(SYS_socketpair, 40, SOCK_STREAM, 0, 0); }},
      {"personality(ADDR_NO_RANDOMIZE)", [] { return sys(SYS_personality, ADDR_NO_RANDOMIZE); }},
      {"personality(READ_IMPLIES_EXEC)", [] { return sys(SYS_personality, READ_IMPLIES_EXEC); }},
      {"personality(MMAP_PAGE_ZERO | high bits)", [] { return sys(SYS_personality, kHigh | MMAP_PAGE_ZERO); }},
      {"personality(0x7fffffff)", [] { return sys(SYS_personality, 0x7fffffff); }},
      {"ioctl(TIOCSTI)", [=] { return sys(SYS_ioctl, pipe_fd, TIOCSTI, byte_ptr); }},
      {"ioctl(TIOCSTI | high bits)", [=] { return sys(SYS_ioctl, pipe_fd, kHigh | TIOCSTI, byte_ptr); }},
      {"ioctl(TIOCLINUX)", [=] { return sys(SYS_ioctl, pipe_fd, TIOCLINUX, byte_ptr); }},
      {"ioctl(TIOCCONS)", [=] { return sys(SYS_ioctl, pipe_fd, TIOCCONS, 0); }},
  };
  const std::vector<long> results = under_filter(denied);
  ASSERT_EQ(results.size(), denied.size());
  for (std::size_t i = 0; i < denied.size(); ++i) {
    EXPECT_EQ(results[i], -EPERM) << denied[i].what << ": " << std::strerror(static_cast<int>(-results[i]));
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(SeccompFilter, WhatCommandsUseStaysAllowed) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const long pipe_fd = pipe_fds[0];
  const std::vector<Probe> allowed = {
      {"socket(AF_UNIX)", [] { return sys(SYS_socket, AF_UNIX, SOCK_STREAM, 0); }},
      {"socket(AF_INET)", [] { return sys(SYS_socket, AF_INET, SOCK_STREAM, 0); }},
      {"socket(AF_INET6)", [] { return sys(SYS_socket, AF_INET6, SOCK_DGRAM, 0); }},
      {"socket(AF_NETLINK, ROUTE)", [] { return sys(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_ROUTE); }},
      {"socket(AF_NETLINK, SOCK_DIAG)", [] { return sys(SYS_socket, AF_NETLINK, SOCK_RAW, NETLINK_SOCK_DIAG); }},
      {"socketpair(AF_UNIX)", [] {
         int sv[2];
         return sys(SYS_socketpair, AF_UNIX, SOCK_STREAM, 0, reinterpret_cast<long>(sv));
       }},
      {"personality(query)", [] { return sys(SYS_personality, 0xffffffff); }},
      {"personality(PER_LINUX32)", [] { return sys(SYS_personality, PER_LINUX32); }},
      {"personality(PER_LINUX)", [] { return sys(SYS_personality, PER_LINUX); }},
      // An ordinary terminal ioctl reaches the kernel (a pipe is not a terminal: ENOTTY).
      {"ioctl(TIOCGWINSZ)", [=] {
         winsize ws{};
         const long r = sys(SYS_ioctl, pipe_fd, TIOCGWINSZ, reinterpret_cast<long>(&ws));
         return r == -ENOTTY ? 0 : r;
       }},
      {"unshare(CLONE_FILES)", [] { return sys(SYS_unshare, CLONE_FILES); }},
  };
  const std::vector<long> results = under_filter(allowed);
  ASSERT_EQ(results.size(), allowed.size());
  for (std::size_t i = 0; i < allowed.size(); ++i) {
    EXPECT_GE(results[i], 0) << allowed[i].what << ": " << std::strerror(static_cast<int>(-results[i]));
  }
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

// Another system call ABI would see none of the rules: the filter kills the process instead.
int signal_of_call_under_filter(void (*call)()) {
  std::vector<sock_filter> program = build_seccomp_program();
  const pid_t pid = ::fork();
  if (pid == 0) {
    sock_fprog prog{static_cast<unsigned short>(program.size()), program.data()};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
      _exit(99);
    }
    call();
    _exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) ? WTERMSIG(status) : -WEXITSTATUS(status);
}

#if defined(__x86_64__)
TEST(SeccompFilter, X32AndI386CallsAreKilledNotLetThrough) {
  // io_uring_setup through the x32 ABI (number | 0x40000000).
  EXPECT_EQ(signal_of_call_under_filter([] { ::syscall(0x40000000L | SYS_io_uring_setup, 8, 0); }), SIGSYS);
  // socketcall(SYS_SOCKET) through int 0x80, the i386 ABI.
  EXPECT_EQ(signal_of_call_under_filter([] {
              long r;
              __asm__ volatile("int $0x80" : "=a"(r) : "a"(102L), "b"(1L), "c"(0L) : "memory");
              (void)r;
            }),
            SIGSYS);
}
#endif

TEST(SeccompFilter, TheEmbeddedProgramIsTheOneTheRulesCompileTo) {
  const std::vector<sock_filter> built = build_seccomp_program();
  const std::vector<sock_filter> embedded = embedded_seccomp_program();
  ASSERT_EQ(embedded.size(), built.size());
  EXPECT_EQ(std::memcmp(embedded.data(), built.data(), built.size() * sizeof(sock_filter)), 0);
}

TEST(SeccompFilter, ProgramFitsTheKernelLimit) {
  EXPECT_LT(build_seccomp_program().size(), 4096u);  // BPF_MAXINSNS
}

}  // namespace
}  // namespace airlock::sandbox::detail
