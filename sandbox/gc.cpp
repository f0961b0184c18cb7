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

// A cgroup sandbox `id` may have made: airlock-<id> right under one of the cgroup mounts
// (CgroupLimits::candidate_paths). A record naming anything else is not acted on.
bool is_cgroup_of(const std::string& path, const std::string& id) {
  const std::vector<std::string> own = detail::CgroupLimits::candidate_paths(id);
  return std::find(own.begin(), own.end(), path) != own.end();
}

}  // namespace

// Only what sandboxes recorded under `state_root` made, and only once their owner is gone: a
// cgroup or namespace name is never attributed by its name alone, since sandboxes recorded
// under another state root (another checkout's tests, a second airlock installation) use the
// same names. A sandbox records its cgroups before it makes them and keeps the record while one
// remains, so nothing it made is left without a record.
std::vector<std::string> collect_garbage(const std::string& state_root) {
  namespace fs = std::filesystem;
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(state_root, ec)) {
    const std::string dir = entry.path().string();
    const std::string id = entry.path().filename().string();
    if (!is_sandbox_name("airlock-" + id) || owner_alive(dir)) continue;
    bool kept = false;  // a cgroup still busy: the record stays for the next gc
    if (const auto cgroups = detail::read_small_file(dir + "/cgroups", 65536)) {
      std::istringstream in(*cgroups);
      std::string path;
      while (std::getline(in, path)) {
        if (!is_cgroup_of(path, id)) continue;
        const bool existed = fs::exists(path, ec);
        if (!detail::remove_cgroup_dir(path)) kept = true;
        else if (existed) removed.push_back("cgroup " + path);
      }
    }
    // A network namespace named after this sandbox (tools or older versions named them).
    const std::string netns = "/run/netns/airlock-" + id;
    if (fs::exists(netns, ec)) {
      try {
        detail::run_tool({detail::find_tool("ip"), "netns", "delete", "airlock-" + id}, "", -1);
        removed.push_back("netns airlock-" + id);
      } catch (const SandboxError&) {
      }
    }
    if (kept) continue;
    ::umount2((dir + "/stage").c_str(), MNT_DETACH);  // never mounted on the host; be sure
    fs::remove_all(dir, ec);
    removed.push_back("state " + dir);
  }
  for (std::string& line : detail::collect_stale_leases(state_root)) removed.push_back(std::move(line));
  return removed;
}

}  // namespace airlock::sandbox
