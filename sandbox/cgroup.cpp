// Memory, CPU and PID limits: cgroup v2 when /sys/fs/cgroup is a cgroup2 mount, else the v1
// memory/cpu/pids controllers; with neither, a warning and no limits.
#include "sandbox/internal.hpp"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <thread>

namespace airlock::sandbox::detail {
namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

bool is_fs(const std::string& path, long magic) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && static_cast<long>(st.f_type) == magic;
}

bool writable_dir(const std::string& path) { return ::access(path.c_str(), W_OK) == 0; }

}  // namespace

bool remove_cgroup_dir(const std::string& path) {
  // The guest's processes may take a moment to leave after init is reaped.
  for (int i = 0; i < 100; ++i) {
    if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return true;
    if (errno != EBUSY) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

CgroupLimits::CgroupLimits(const std::string& id, const Limits& limits)
    : id_(id), limits_(limits) {}

CgroupLimits::~CgroupLimits() { remove(); }

std::vector<std::string> CgroupLimits::candidate_paths(const std::string& id) {
  const std::string name = "/airlock-" + id;
  return {std::string(kCgroupRoot) + name, std::string(kCgroupRoot) + "/memory" + name,
          std::string(kCgroupRoot) + "/cpu" + name, std::string(kCgroupRoot) + "/pids" + name};
}

bool CgroupLimits::remove() {
  bool gone = true;
  for (auto it = paths_.rbegin(); it != paths_.rend(); ++it) gone = remove_cgroup_dir(*it) && gone;
  if (gone) paths_.clear();
  return gone;
}

void CgroupLimits::apply(pid_t pid, std::vector<std::string>& warnings) {
  if (!limits_.memory_bytes && !limits_.cpus && !limits_.pids) return;
  const std::string name = "airlock-" + id_;
  const std::string procs_pid = std::to_string(pid) + "\n";
  const long long quota_us =
      limits_.cpus ? std::max(1000ll, std::llround(*limits_.cpus * 100000.0)) : 0;

  if (is_fs(kCgroupRoot, CGROUP2_SUPER_MAGIC) && writable_dir(kCgroupRoot)) {
    const std::string dir = std::string(kCgroupRoot) + "/" + name;
    try {
      write_file(std::string(kCgroupRoot) + "/cgroup.subtree_control", "+memory +cpu +pids\n");
    } catch (const SandboxError&) {
      // Already enabled, or not delegated: the writes below say which.
    }
    if (::mkdir(dir.c_str(), 0755) != 0) throw_errno("mkdir " + dir);
    paths_.push_back(dir);
    if (limits_.memory_bytes) {
      write_file(dir + "/memory.max", std::to_string(*limits_.memory_bytes) + "\n");
      try {
        write_file(dir + "/memory.swap.max", "0\n");
      } catch (const SandboxError&) {
      }
    }
    if (limits_.cpus) write_file(dir + "/cpu.max", std::to_string(quota_us) + " 100000\n");
    if (limits_.pids) write_file(dir + "/pids.max", std::to_string(*limits_.pids) + "\n");
    write_file(dir + "/cgroup.procs", procs_pid);
    return;
  }

  // cgroup v1: one hierarchy per controller.
  struct Want {
    const char* controller;
    bool wanted;
  };
  const Want wants[] = {{"memory", limits_.memory_bytes.has_value()},
                        {"cpu", limits_.cpus.has_value()},
                        {"pids", limits_.pids.has_value()}};
  for (const Want& w : wants) {
    if (!w.wanted) continue;
    const std::string mount = std::string(kCgroupRoot) + "/" + w.controller;
    if (!is_fs(mount, CGROUP_SUPER_MAGIC) || !writable_dir(mount)) {
      warnings.push_back(std::string("no writable cgroup ") + w.controller +
                         " controller; the " + w.controller + " limit is not applied");
      continue;
    }
    const std::string dir = mount + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0) throw_errno("mkdir " + dir);
    paths_.push_back(dir);
    if (std::string_view(w.controller) == "memory") {
      write_file(dir + "/memory.limit_in_bytes", std::to_string(*limits_.memory_bytes) + "\n");
      try {
        write_file(dir + "/memory.memsw.limit_in_bytes",
                   std::to_string(*limits_.memory_bytes) + "\n");
      } catch (const SandboxError&) {
        // No swap accounting on this kernel: memory alone is limited.
      }
    } else if (std::string_view(w.controller) == "cpu") {
      write_file(dir + "/cpu.cfs_period_us", "100000\n");
      write_file(dir + "/cpu.cfs_quota_us", std::to_string(quota_us) + "\n");
    } else {
      write_file(dir + "/pids.max", std::to_string(*limits_.pids) + "\n");
    }
    write_file(dir + "/cgroup.procs", procs_pid);
  }
}

}  // namespace airlock::sandbox::detail
