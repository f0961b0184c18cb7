// `airlock gc`: removes what a sandbox whose owner died left behind.
#include "sandbox/internal.hpp"

#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

namespace airlock::sandbox {
namespace {

// Is the process recorded in `owner` ("<pid> <starttime>") still the one that wrote it?
bool owner_alive(const std::string& state_dir) {
  const auto text = detail::read_small_file(state_dir + "/owner", 256);
  if (!text) return false;
  std::istringstream in(*text);
  long pid = 0;
  unsigned long long start = 0;
  if (!(in >> pid >> start) || pid <= 0) return false;
  const unsigned long long now = detail::process_start_time(static_cast<pid_t>(pid));
  return now != 0 && now == start;
}

// `airlock-` and the 8 lower-case hex digits of a sandbox id.
bool is_sandbox_name(const std::string& name) {
  if (name.size() != 16 || name.rfind("airlock-", 0) != 0) return false;
  return std::all_of(name.begin() + 8, name.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace

std::vector<std::string> collect_garbage(const std::string& state_root) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  std::error_code ec;
  std::vector<std::string> live_ids;
  for (const auto& entry : fs::directory_iterator(state_root, ec)) {
    const std::string dir = entry.path().string();
    const std::string id = entry.path().filename().string();
    if (!is_sandbox_name("airlock-" + id)) continue;
    if (owner_alive(dir)) {
      live_ids.push_back(id);
      continue;
    }
    if (const auto cgroups = detail::read_small_file(dir + "/cgroups", 65536)) {
      std::istringstream in(*cgroups);
      std::string path;
      while (std::getline(in, path)) {
        if (path.rfind("/sys/fs/cgroup/", 0) != 0 || path.find("/airlock-") == std::string::npos) {
          continue;  // only what this tool creates
        }
        detail::remove_cgroup_dir(path);
        removed.push_back("cgroup " + path);
      }
    }
    ::umount2((dir + "/stage").c_str(), MNT_DETACH);  // never mounted on the host; be sure
    fs::remove_all(dir, ec);
    removed.push_back("state " + dir);
  }
  for (std::string& line : detail::collect_stale_leases(state_root)) removed.push_back(std::move(line));
  // cgroups whose state directory is gone (rmdir only succeeds on an empty cgroup).
  for (const char* base : {"/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu",
                           "/sys/fs/cgroup/pids"}) {
    for (const auto& entry : fs::directory_iterator(base, ec)) {
      const std::string name = entry.path().filename().string();
      if (!is_sandbox_name(name) || !entry.is_directory(ec)) continue;
      if (std::find(live_ids.begin(), live_ids.end(), name.substr(8)) != live_ids.end()) continue;
      if (::rmdir(entry.path().c_str()) == 0) removed.push_back("cgroup " + entry.path().string());
    }
  }
  // Named network namespaces (from tools or older versions that named them airlock-<id>).
  for (const auto& entry : fs::directory_iterator("/run/netns", ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_sandbox_name(name)) continue;  // airlock-<8 hex>: never another tool's namespace
    const std::string id = name.substr(8);
    if (std::find(live_ids.begin(), live_ids.end(), id) != live_ids.end()) continue;
    try {
      detail::run_tool({detail::find_tool("ip"), "netns", "delete", name}, "", -1);
      removed.push_back("netns " + name);
    } catch (const SandboxError&) {
    }
  }
  return removed;
}

}  // namespace airlock::sandbox
