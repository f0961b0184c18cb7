// Seccomp rules that keep the guest from making set-user-id or set-group-id files, or device
// nodes, anywhere: a file it makes in the workspace or a volume lands on the host with those
// bits (nosuid only protects the guest's own view). Kept apart from the main filter.
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <seccomp.h>
#include <sys/stat.h>

#include <cerrno>

namespace airlock::sandbox::detail {

void add_file_mode_rules(void* filter) {
  auto* ctx = static_cast<scmp_filter_ctx>(filter);
  const auto rule = [&](const char* name, int nr, std::initializer_list<scmp_arg_cmp> args) {
    if (nr == __NR_SCMP_ERROR) return;  // not on this architecture
    if (seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), nr, static_cast<unsigned>(args.size()),
                               args.begin()) != 0) {
      throw SandboxError(std::string("seccomp mode rule for ") + name + " failed");
    }
  };
  const auto nr = [](const char* name) { return seccomp_syscall_resolve_name(name); };
  // fchmodat2 (Linux 6.6) is newer than some libseccomp releases: its number is the same on
  // every architecture.
  const int fchmodat2 = nr("fchmodat2") != __NR_SCMP_ERROR ? nr("fchmodat2") : 452;
  for (const std::uint64_t bit : {std::uint64_t{S_ISUID}, std::uint64_t{S_ISGID}}) {
    rule("chmod", nr("chmod"), {SCMP_A1(SCMP_CMP_MASKED_EQ, bit, bit)});
    rule("fchmod", nr("fchmod"), {SCMP_A1(SCMP_CMP_MASKED_EQ, bit, bit)});
    rule("fchmodat", nr("fchmodat"), {SCMP_A2(SCMP_CMP_MASKED_EQ, bit, bit)});
    rule("fchmodat2", fchmodat2, {SCMP_A2(SCMP_CMP_MASKED_EQ, bit, bit)});
    rule("creat", nr("creat"), {SCMP_A1(SCMP_CMP_MASKED_EQ, bit, bit)});
    rule("mknod", nr("mknod"), {SCMP_A1(SCMP_CMP_MASKED_EQ, bit, bit)});
    rule("mknodat", nr("mknodat"), {SCMP_A2(SCMP_CMP_MASKED_EQ, bit, bit)});
    // The mode of open only counts when a file is created (O_CREAT, or O_TMPFILE).
    for (const std::uint64_t create : {std::uint64_t{O_CREAT}, std::uint64_t{O_TMPFILE}}) {
      rule("open", nr("open"),
           {SCMP_A1(SCMP_CMP_MASKED_EQ, create, create), SCMP_A2(SCMP_CMP_MASKED_EQ, bit, bit)});
      rule("openat", nr("openat"),
           {SCMP_A2(SCMP_CMP_MASKED_EQ, create, create), SCMP_A3(SCMP_CMP_MASKED_EQ, bit, bit)});
    }
  }
  for (const std::uint64_t type : {std::uint64_t{S_IFCHR}, std::uint64_t{S_IFBLK}}) {
    rule("mknod", nr("mknod"), {SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, type)});
    rule("mknodat", nr("mknodat"), {SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, type)});
  }
  // openat2 passes the mode in memory a filter cannot read: ENOSYS, and libc falls back.
  if (nr("openat2") != __NR_SCMP_ERROR) {
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr("openat2"), 0) != 0) {
      throw SandboxError("seccomp rule for openat2 failed");
    }
  }
}

}  // namespace airlock::sandbox::detail
