// Host ids of a sandbox: a slot of the pool, leased under the state root for the sandbox's
// lifetime, and the user namespaces that id-map the workspace and the volumes.
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace airlock::sandbox::detail {
namespace {

std::string leases_dir(const std::string& state_root) { return state_root + "/ids"; }

// Ids the host already uses: users, groups and the subordinate ranges of /etc/subuid|subgid.
void host_ids_in_use(std::vector<std::uint64_t>& ids, std::vector<IdRange>& ranges) {
  ids = ids_in_passwd(read_small_file("/etc/passwd").value_or(""), true);
  for (std::uint64_t gid : ids_in_passwd(read_small_file("/etc/group").value_or(""), false)) ids.push_back(gid);
  ranges = ranges_in_subid(read_small_file("/etc/subuid").value_or(""));
  for (const IdRange& r : ranges_in_subid(read_small_file("/etc/subgid").value_or(""))) ranges.push_back(r);
}

// flock the lease file; true when this process now holds the lock on the file at `path`
// (not on one another process unlinked after we opened it).
bool try_lock(const std::string& path, Fd& out) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return false;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return false;
  struct stat held {}, now {};
  if (::fstat(fd.get(), &held) != 0 || ::stat(path.c_str(), &now) != 0 || held.st_ino != now.st_ino ||
      held.st_dev != now.st_dev) {
    return false;
  }
  out = std::move(fd);
  return true;
}

int idle_child(void*) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  for (;;) ::syscall(SYS_ppoll, nullptr, 0, nullptr, nullptr, 0);
}

}  // namespace

IdLease::~IdLease() {
  if (lock_) ::unlink(path_.c_str());  // while still locked: nobody else holds this inode
}

std::unique_ptr<IdLease> IdLease::acquire(const std::string& state_root, const IdRange& pool,
                                          const std::vector<std::uint64_t>& also_busy) {
  std::vector<std::uint64_t> ids;
  std::vector<IdRange> ranges;
  host_ids_in_use(ids, ranges);
  ids.insert(ids.end(), also_busy.begin(), also_busy.end());
  const std::vector<IdRange> slots = free_slots(pool, ids, ranges);
  const std::string dir = leases_dir(state_root);
  ::mkdir(dir.c_str(), 0700);
  for (const IdRange& slot : slots) {
    const std::string path = dir + "/" + std::to_string(slot.first);
    Fd lock;
    if (!try_lock(path, lock)) continue;
    auto lease = std::unique_ptr<IdLease>(new IdLease());
    lease->range_ = slot;
    lease->path_ = path;
    lease->lock_ = std::move(lock);
    return lease;
  }
  throw SandboxError("no free id range for the sandbox in " + std::to_string(pool.first) + "-" +
                     std::to_string(pool.end() - 1) + " (" + std::to_string(slots.size()) +
                     " slots free of host users and subordinate ranges, all in use by live sandboxes)");
}

std::vector<std::string> collect_stale_leases(const std::string& state_root) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(leases_dir(state_root), ec)) {
    const std::string path = entry.path().string();
    Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) continue;  // a live sandbox holds it
    if (::unlink(path.c_str()) == 0) removed.push_back("id lease " + path);
  }
  return removed;
}

Fd make_idmap_userns(std::uint64_t disk_uid, std::uint64_t disk_gid, std::uint64_t guest_root) {
  // A child that only waits (sharing our memory: nothing is copied), in a user namespace whose
  // one mapping is disk id -> the guest's root; its namespace outlives it through the fd.
  alignas(16) static thread_local char stack[16384];
  const pid_t pid = ::clone(idle_child, stack + sizeof stack, CLONE_NEWUSER | CLONE_VM | SIGCHLD, nullptr);
  if (pid < 0) throw_errno("clone (id-map user namespace)");
  Fd ns;
  std::string error;
  try {
    const std::string base = "/proc/" + std::to_string(pid);
    write_file(base + "/uid_map", std::to_string(disk_uid) + " " + std::to_string(guest_root) + " 1\n");
    write_file(base + "/gid_map", std::to_string(disk_gid) + " " + std::to_string(guest_root) + " 1\n");
    ns.reset(::open((base + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) throw_errno("open id-map user namespace");
  } catch (const std::exception& e) {
    error = e.what();
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
  }
  if (!error.empty()) throw SandboxError(error);
  return ns;
}

}  // namespace airlock::sandbox::detail
