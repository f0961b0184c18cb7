// The seccomp filter of every guest process. It allows by default and denies, with EPERM, what a
// sandboxed command does not need and what widens the kernel's attack surface or reaches past the
// sandbox's namespaces: compared with Docker's and Podman's default profiles it denies the same
// calls and more (io_uring, every socket family but unix, inet, inet6 and netlink route/diag/audit,
// personality flags beyond the safe ones, terminal input injection). docs/security.md has the list
// and the reasons.
#include "sandbox/internal.hpp"

#include <linux/netlink.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace airlock::sandbox::detail {

std::vector<ValueBlock> blocks_except(std::vector<std::uint32_t> allowed, std::uint64_t end) {
  std::sort(allowed.begin(), allowed.end());
  allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
  std::vector<ValueBlock> out;
  // Each gap [lo, hi] between allowed values, split like an address range into CIDR blocks.
  const auto cover = [&](std::uint64_t lo, std::uint64_t hi) {
    while (lo <= hi) {
      std::uint64_t size = 1;
      while (size < (1ull << 32) && lo % (size * 2) == 0 && lo + size * 2 - 1 <= hi) size *= 2;
      out.push_back({static_cast<std::uint32_t>(~(size - 1)), static_cast<std::uint32_t>(lo)});
      lo += size;
    }
  };
  std::uint64_t next = 0;
  for (const std::uint32_t v : allowed) {
    if (v >= end) break;
    if (v > next) cover(next, v - 1ull);
    next = v + 1ull;
  }
  if (next < end) cover(next, end - 1);
  return out;
}

namespace {

// System calls no sandboxed command needs. Docker's and Podman's defaults deny all of these
// (most of them unless the container holds a capability the guest never holds).
constexpr const char* kDenied[] = {
    // The kernel itself: modules, kexec, reboot, swap, accounting, quotas, clocks, the log.
    "init_module", "finit_module", "delete_module", "create_module", "query_module",
    "get_kernel_syms", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct",
    "quotactl", "quotactl_fd", "syslog", "settimeofday", "stime", "clock_settime",
    "clock_adjtime", "_sysctl", "sysfs", "ustat", "uselib", "nfsservctl", "lookup_dcookie",
    "vhangup", "iopl", "ioperm", "vm86", "vm86old",
    // Large attack surface for nothing a command needs: eBPF, perf, userfaultfd, kernel keyrings,
    // io_uring (its operations bypass this filter altogether, so Docker denies it since 2023).
    "bpf", "perf_event_open", "userfaultfd", "add_key", "request_key", "keyctl",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init",
    // Other processes: tracing, their memory, their descriptors (pidfd_getfd would take the
    // init's), comparing their kernel objects, moving their pages.
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "pidfd_getfd", "kcmp",
    "migrate_pages", "move_pages",
    // Opening files by handle walks around the mount view (the "shocker" escape).
    "open_by_handle_at", "name_to_handle_at",
    // Namespace changes and every mount call: the guest's view is fixed once it is set up.
    "setns", "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr"};

// Socket families a command uses (and Docker's default allows all but AF_VSOCK): AF_VSOCK is
// not namespaced (on a VM it reaches the hypervisor's host), the rest are kernel code nobody here
// needs (packet, alg, key, xdp, bluetooth, can, tipc, rds, ...).
constexpr std::uint32_t kAllowedFamilies[] = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK};
// The kernel itself refuses a family >= AF_MAX (46 today) and a netlink protocol >= MAX_LINKS
// (32): the rules cover the values below these bounds, fewer rules for libseccomp to compile.
constexpr std::uint64_t kFamiliesEnd = 64;
constexpr std::uint64_t kNetlinkEnd = 32;
// Netlink: routes and addresses (getifaddrs, ip), socket diagnostics (ss), audit (the kernel
// refuses it in a user namespace; tools like sudo expect that answer). Not uevents, generic
// netlink, netfilter, xfrm, connector and the others.
constexpr std::uint32_t kAllowedNetlink[] = {NETLINK_ROUTE, NETLINK_SOCK_DIAG, NETLINK_AUDIT};
// personality(2): Linux, 32-bit Linux, the 2.6 uname, both, and the query. Not
// ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, MMAP_PAGE_ZERO and the other flags (Docker's set).
constexpr std::uint32_t kAllowedPersonality[] = {PER_LINUX, PER_LINUX32, UNAME26,
                                                 std::uint32_t{UNAME26} | PER_LINUX32, 0xffffffffu};
// Terminal ioctls that reach past the guest: queue input as if typed (TIOCSTI), the console's
// selection and keyboard (TIOCLINUX), take the console's output (TIOCCONS).
constexpr std::uint32_t kDeniedIoctls[] = {TIOCSTI, TIOCLINUX, TIOCCONS};

// The kernel reads these arguments as 32-bit ints, whatever the upper half of the register holds:
// every comparison masks to the low 32 bits, or 0x1_00005412 would pass as TIOCSTI.
scmp_arg_cmp low32_in(unsigned arg, const ValueBlock& b) {
  return SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, b.mask, b.base);
}
scmp_arg_cmp low32_is(unsigned arg, std::uint32_t value) {
  return SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, 0xffffffffu, value);
}

class Filter {
 public:
  Filter() : ctx_(seccomp_init(SCMP_ACT_ALLOW)) {
    if (ctx_ == nullptr) throw SandboxError("seccomp_init failed");
  }
  ~Filter() { seccomp_release(ctx_); }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  // A call absent on this architecture is skipped.
  void deny(const char* name, std::uint32_t action, std::vector<scmp_arg_cmp> args = {}) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) return;
    if (seccomp_rule_add_array(ctx_, action, nr, static_cast<unsigned>(args.size()), args.data()) != 0) {
      throw SandboxError(std::string("seccomp rule for ") + name + " failed");
    }
  }
  void deny(const char* name, std::vector<scmp_arg_cmp> args = {}) {
    deny(name, SCMP_ACT_ERRNO(EPERM), std::move(args));
  }

  scmp_filter_ctx context() const noexcept { return ctx_; }

  std::vector<sock_filter> program() const {
    Fd mem(::memfd_create("airlock-seccomp", MFD_CLOEXEC));
    if (!mem) throw_errno("memfd_create");
    if (seccomp_export_bpf(ctx_, mem.get()) != 0) throw SandboxError("seccomp_export_bpf failed");
    const off_t size = ::lseek(mem.get(), 0, SEEK_END);
    if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
      throw SandboxError("seccomp program has an odd size");
    }
    std::vector<sock_filter> out(static_cast<std::size_t>(size) / sizeof(sock_filter));
    if (::pread(mem.get(), out.data(), static_cast<std::size_t>(size), 0) != size) {
      throw_errno("read seccomp program");
    }
    return out;
  }

 private:
  scmp_filter_ctx ctx_;
};

}  // namespace

std::vector<sock_filter> build_seccomp_program() {
  Filter f;
  for (const char* name : kDenied) f.deny(name);

  // unshare and clone with any namespace flag. clone3 passes its flags in memory a filter
  // cannot read, so it reports ENOSYS and libc falls back to clone.
  for (const std::uint64_t flag : {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                                   CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP}) {
    f.deny("unshare", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)});
    f.deny("clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)});
  }
  constexpr std::uint64_t kNewTime = 0x00000080;  // CLONE_NEWTIME: unshare only
  f.deny("unshare", {SCMP_A0(SCMP_CMP_MASKED_EQ, kNewTime, kNewTime)});
  f.deny("clone3", SCMP_ACT_ERRNO(ENOSYS));

  const std::vector<std::uint32_t> families(std::begin(kAllowedFamilies), std::end(kAllowedFamilies));
  for (const ValueBlock& b : blocks_except(families, kFamiliesEnd)) {
    f.deny("socket", {low32_in(0, b)});
    f.deny("socketpair", {low32_in(0, b)});
  }
  const std::vector<std::uint32_t> netlink(std::begin(kAllowedNetlink), std::end(kAllowedNetlink));
  for (const ValueBlock& b : blocks_except(netlink, kNetlinkEnd)) {
    f.deny("socket", {low32_is(0, AF_NETLINK), low32_in(2, b)});
  }
  const std::vector<std::uint32_t> personas(std::begin(kAllowedPersonality), std::end(kAllowedPersonality));
  for (const ValueBlock& b : blocks_except(personas)) f.deny("personality", {low32_in(0, b)});
  for (const std::uint32_t request : kDeniedIoctls) f.deny("ioctl", {low32_is(1, request)});
  add_file_mode_rules(f.context());  // no set-id file or device node through any mount
  return f.program();
}

}  // namespace airlock::sandbox::detail
