// The guest's view, decided on the host before start: the system entries, the workspace and
// its owner, the volumes, and the scan that hides secret sources and rewrites files holding a
// secret's value (see docs/security.md, "What the guest sees").
#include "sandbox/internal.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

namespace airlock::sandbox::detail {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kNobody = 65534;

// Bound read-only at the same path when they are directories; replicated when symlinks.
constexpr const char* kSystemEntries[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};

// Under /etc: credentials and keys of the host, never shown (whited out when they exist).
constexpr const char* kEtcSecrets[] = {
    "shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssl/private",
    "security/opasswd", "krb5.keytab", "ipsec.secrets", "ppp/chap-secrets", "ppp/pap-secrets",
    "NetworkManager/system-connections", "wireguard", "credstore", "credstore.encrypted",
    "letsencrypt", "docker/key.json", "ssh/ssh_host_*_key", ".pwd.lock", "subuid-", "subgid-"};

// Directories that are not a project: the workspace is never one of them (nor / itself).
constexpr const char* kNotAWorkspace[] = {"/tmp", "/var/tmp", "/dev/shm", "/run", "/var", "/home"};
// Nor the system, nor under it.
constexpr const char* kSystemTrees[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                        "/etc", "/proc", "/sys", "/dev", "/boot"};

bool is_under(const std::string& path, const std::string& dir) {
  if (dir == "/") return true;
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string relative(const std::string& path, const std::string& dir) {
  return path.size() == dir.size() ? "" : path.substr(dir == "/" ? 1 : dir.size() + 1);
}

std::string join(const std::string& dir, const std::string& rel) {
  if (rel.empty()) return dir;
  return dir == "/" ? "/" + rel : dir + "/" + rel;
}

// Why `dir` (canonical) cannot be the workspace, or empty when it can.
std::string unshareable(const std::string& dir) {
  if (dir == "/") return "it is the host's root";
  for (const char* s : kSystemTrees) {
    if (is_under(dir, s) || is_under(s, dir)) return "it holds or is part of the system (" + std::string(s) + ")";
  }
  for (const char* s : kNotAWorkspace) {
    if (dir == s) return "it is shared by the host's users and services";
  }
  if (is_under(dir, "/run/airlock") || is_under("/run/airlock", dir)) return "it holds airlock's state";
  return {};
}

// A home directory of /etc/passwd (or /root): never shared by default.
bool is_home_directory(const std::string& dir) {
  if (dir == "/root") return true;
  std::istringstream passwd(read_small_file("/etc/passwd").value_or(""));
  for (std::string line; std::getline(passwd, line);) {
    std::istringstream fields(line);
    std::string field;
    for (int i = 0; i <= 5 && std::getline(fields, field, ':'); ++i) {
      if (i == 5 && field == dir) return true;
    }
  }
  return false;
}

std::string canonical_or_throw(const std::string& path, const std::string& what) {
  std::error_code ec;
  const fs::path c = fs::canonical(path, ec);
  if (ec) throw ConfigError(what + " " + path + ": " + ec.message());
  return c.string();
}

// Pseudo file systems the scan does not read (reading some of their files has effects).
bool pseudo_fs(int dir_fd) {
  struct statfs s {};
  if (::fstatfs(dir_fd, &s) != 0) return true;
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0x9fa0:      // proc
    case 0x62656572:  // sysfs
    case 0x63677270:  // cgroup2
    case 0x27e0eb:    // cgroup
    case 0x64626720:  // debugfs
    case 0x74726163:  // tracefs
    case 0x73636673:  // securityfs
    case 0x1cd1:      // devpts
    case 0xcafe4a11:  // bpf
    case 0x62656570:  // configfs
    case 0x65735543:  // fusectl
    case 0xde5e81e4:  // efivarfs
      return true;
    default:
      return false;
  }
}

struct Scan {
  const std::vector<ValueReplacement>& values;
  const std::vector<std::string>& names;  // env var of each value
  const std::set<std::pair<dev_t, ino_t>>& sources;
  const ScanLimits& limits;
  std::chrono::steady_clock::time_point deadline;
  std::size_t files = 0;
  std::uint64_t bytes = 0;
  std::uint64_t copied = 0;  // bytes of rewritten copies
  std::string stopped;  // why the scan stopped early, empty when it did not
  std::vector<ViewPlan::Cover> covers;
  std::string buffer;

  // Can the guest's root read (or, for a directory, search) a file with this stat through
  // the share? Its own files (disk_uid) always; others by their group or other bits.
  static bool guest_may(const struct stat& st, const Share& share, mode_t grp, mode_t oth) {
    if (st.st_uid == share.disk_uid) return true;
    if (st.st_gid == share.disk_gid && (st.st_mode & grp)) return true;
    return (st.st_mode & oth) != 0;
  }

  bool out_of_bounds() {
    if (!stopped.empty()) return true;
    if (files >= limits.max_files) {
      stopped = "after " + std::to_string(files) + " files";
    } else if ((files & 63) == 0 && std::chrono::steady_clock::now() > deadline) {
      stopped = "after " + std::to_string(limits.max_time.count()) + " ms";
    }
    return !stopped.empty();
  }

  void file(int dir_fd, const char* name, const struct stat& st, const Share& share, const std::string& guest) {
    if (sources.count({st.st_dev, st.st_ino})) {
      covers.push_back({guest, "", 0600, "it is a secret's source file"});
      return;
    }
    if (st.st_size == 0 || static_cast<std::uint64_t>(st.st_size) > limits.max_file_bytes) return;
    if (!guest_may(st, share, S_IRGRP, S_IROTH)) return;  // the guest cannot read it anyway
    if (out_of_bounds()) return;
    ++files;
    Fd fd(::openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd) return;
    buffer.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < buffer.size()) {
      const ssize_t n = ::read(fd.get(), buffer.data() + got, buffer.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    bytes += got;
    std::vector<std::size_t> found;
    auto rewritten = replace_values(std::string_view(buffer.data(), got), values, &found);
    if (!rewritten) return;
    std::string why = "it holds the value of ";
    for (std::size_t i = 0; i < found.size(); ++i) why += (i ? ", " : "") + names[found[i]];
    if (copied + rewritten->size() > limits.max_copy_bytes) {
      rewritten->clear();
      why += " (shown empty: the rewritten copies reached their bound)";
    } else if (rewritten->empty()) {
      why += " (shown empty: replacing left a value)";
    }
    copied += rewritten->size();
    covers.push_back({guest, std::move(*rewritten), static_cast<unsigned>(st.st_mode & 0777), why});
  }

  void dir(int dir_fd, const Share& share, const std::string& guest, int depth) {
    if (depth > 64 || pseudo_fs(dir_fd)) return;
    DIR* d = ::fdopendir(dir_fd);
    if (d == nullptr) {
      ::close(dir_fd);
      return;
    }
    while (const dirent* e = ::readdir(d)) {
      if (out_of_bounds()) break;
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      if (e->d_type != DT_DIR && e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
      struct stat st {};
      if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      const std::string child = join(guest, name);
      if (S_ISREG(st.st_mode)) {
        file(::dirfd(d), e->d_name, st, share, child);
      } else if (S_ISDIR(st.st_mode) && guest_may(st, share, S_IXGRP, S_IXOTH) &&
                 !(name == "objects" && guest.size() >= 5 && guest.compare(guest.size() - 5, 5, "/.git") == 0)) {
        // (git's object store is zlib-compressed: a raw value cannot occur in it)
        const int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) dir(sub, share, child, depth + 1);
      }
    }
    ::closedir(d);
  }
};

void resolve_workspace(const SandboxOptions& options, ViewPlan& plan, std::vector<std::string>& warnings) {
  if (options.workspace == SandboxOptions::Workspace::kNone) return;
  std::string dir;
  if (!options.workdir.empty()) {
    dir = canonical_or_throw(options.workdir, "--workdir");
    if (!fs::is_directory(dir)) throw ConfigError("--workdir " + options.workdir + ": not a directory");
    if (const std::string why = unshareable(dir); !why.empty()) {
      throw ConfigError("--workdir " + options.workdir + " cannot be the workspace: " + why);
    }
  } else {
    char buf[PATH_MAX];
    if (::getcwd(buf, sizeof buf) == nullptr) {
      warnings.push_back("the current directory is gone; the guest has no workspace");
      return;
    }
    dir = canonical_or_throw(buf, "the current directory");
    std::string why = unshareable(dir);
    if (why.empty() && is_home_directory(dir)) {
      why = "it is a home directory, with the user's keys and history; a project inside it is shared by default";
    }
    if (!why.empty()) {
      warnings.push_back("the current directory " + dir + " is not shared with the guest (" + why +
                         "); pass --workdir DIR, or --no-workdir to say so");
      return;
    }
  }
  Share w;
  w.host = dir;
  w.guest = dir;
  w.workspace = true;
  w.overlay = options.workspace == SandboxOptions::Workspace::kOverlay;
  plan.shares.push_back(std::move(w));
}

// Who owns what the guest's root creates in a share: the owner of the shared directory (the
// user whose project or data it is; airlock runs as root, so its own uid says nothing, and
// SUDO_UID is unreliable: kept by `sudo -i`, absent under su, systemd or CI). Root only for a
// workspace root owns itself (e.g. /root/project); never for a volume (there: nobody, and the
// guest can write nothing in it).
void resolve_owners(ViewPlan& plan) {
  for (Share& s : plan.shares) {
    struct stat st {};
    if (::stat(s.host.c_str(), &st) == 0 && (st.st_uid != 0 || s.workspace)) {
      s.disk_uid = st.st_uid;
      s.disk_gid = st.st_uid == 0 ? 0 : st.st_gid;
    } else {
      s.disk_uid = kNobody;
      s.disk_gid = kNobody;
    }
  }
}

void add_system_entries(const SandboxOptions& options, ViewPlan& plan) {
  if (!options.rootfs.empty()) return;  // the rootfs is the whole root
  for (const char* path : kSystemEntries) {
    struct stat st {};
    if (::lstat(path, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      std::error_code ec;
      const fs::path target = fs::read_symlink(path, ec);
      if (!ec) plan.system_links.push_back({path, target.string()});
    } else if (S_ISDIR(st.st_mode)) {
      plan.system_dirs.push_back(path);
    }
  }
  for (const char* pattern : kEtcSecrets) {
    glob_t g{};
    if (::glob((std::string("/etc/") + pattern).c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
      for (std::size_t i = 0; i < g.gl_pathc; ++i) plan.etc_hidden.push_back(g.gl_pathv[i] + 5);
    }
    ::globfree(&g);
  }
}

// A secret's source file: hidden wherever the guest could see it.
void hide_source(const SandboxOptions& options, const std::string& path, ViewPlan& plan) {
  const std::string why = "it is a secret's source file";
  if (!options.rootfs.empty()) {
    if (is_under(path, options.rootfs)) plan.root_hidden.push_back("/" + relative(path, options.rootfs));
  } else if (is_under(path, "/etc")) {
    plan.etc_hidden.push_back(relative(path, "/etc"));
  } else {
    for (const std::string& dir : plan.system_dirs) {
      if (is_under(path, dir)) plan.covers.push_back({path, "", 0600, why});
    }
  }
  for (const Share& s : plan.shares) {
    if (is_under(path, s.host)) plan.covers.push_back({join(s.guest, relative(path, s.host)), "", 0600, why});
  }
}

}  // namespace

ViewPlan plan_view(const SandboxOptions& options, const std::vector<SecretBinding>& secrets,
                   std::vector<std::string>& warnings) {
  ViewPlan plan;
  resolve_workspace(options, plan, warnings);
  for (const Volume& v : options.volumes) {
    Share s;
    std::error_code ec;
    const fs::path c = fs::canonical(v.host, ec);
    if (ec) throw SandboxError("--volume " + v.host + ": " + ec.message());
    s.host = c.string();
    s.guest = v.guest;
    s.read_only = v.read_only;
    s.directory = fs::is_directory(c, ec);
    plan.shares.push_back(std::move(s));
  }
  resolve_owners(plan);
  add_system_entries(options, plan);

  std::set<std::pair<dev_t, ino_t>> sources;
  for (const std::string& file : options.secret_files) {
    std::error_code ec;
    const fs::path c = fs::canonical(file, ec);
    if (ec) continue;
    struct stat st {};
    if (::stat(c.c_str(), &st) == 0) sources.insert({st.st_dev, st.st_ino});
    hide_source(options, c.string(), plan);
  }

  if (!plan.shares.empty() && plan.shares.front().workspace) plan.cwd = plan.shares.front().guest;
  if (!options.cwd.empty()) plan.cwd = options.cwd;

  std::vector<ValueReplacement> values;
  std::vector<std::string> names;
  for (const SecretBinding& s : secrets) {
    if (s.value().empty()) continue;
    values.push_back({s.value().expose(), s.placeholder()});
    names.push_back(s.env_var());
  }
  if (values.empty() && sources.empty()) return plan;

  const auto begin = std::chrono::steady_clock::now();
  Scan scan{values, names, sources, options.scan, begin + options.scan.max_time, 0, 0, 0, {}, {}, {}};
  for (const Share& s : plan.shares) {
    if (!s.directory) {
      const std::string parent = fs::path(s.host).parent_path().string();
      Fd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      struct stat st {};
      if (dir && ::stat(s.host.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        scan.file(dir.get(), fs::path(s.host).filename().c_str(), st, s, s.guest);
      }
      continue;
    }
    const int fd = ::open(s.host.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) scan.dir(fd, s, s.guest, 0);
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - begin).count();
  plan.notes.push_back("scan: " + std::to_string(scan.files) + " files, " + std::to_string(scan.bytes) +
                       " bytes read in " + std::to_string(static_cast<long long>(ms)) + " ms (bounds: files up to " +
                       std::to_string(options.scan.max_file_bytes) + " bytes, " +
                       std::to_string(options.scan.max_files) + " files, " +
                       std::to_string(options.scan.max_time.count()) + " ms)");
  if (!scan.stopped.empty() && !values.empty()) {
    warnings.push_back("the scan for secret values stopped " + scan.stopped +
                       "; files beyond were not checked (the guest sees them as they are)");
  }
  for (ViewPlan::Cover& c : scan.covers) plan.covers.push_back(std::move(c));
  // One cover per path (a source found by the scan and by its path alike).
  std::stable_sort(plan.covers.begin(), plan.covers.end(),
                   [](const ViewPlan::Cover& a, const ViewPlan::Cover& b) { return a.guest < b.guest; });
  plan.covers.erase(std::unique(plan.covers.begin(), plan.covers.end(),
                                [](const ViewPlan::Cover& a, const ViewPlan::Cover& b) { return a.guest == b.guest; }),
                    plan.covers.end());
  return plan;
}

}  // namespace airlock::sandbox::detail

namespace airlock::sandbox {

std::string describe_view(const SandboxOptions& options, const std::vector<SecretBinding>& secrets) {
  std::vector<std::string> warnings;
  const detail::ViewPlan plan = detail::plan_view(options, secrets, warnings);
  std::string out;
  const auto line = [&](const std::string& path, const std::string& what) {
    out += path;
    out += std::string(path.size() < 24 ? 24 - path.size() : 1, ' ');
    out += what + "\n";
  };
  if (!options.rootfs.empty()) {
    line("/", "--rootfs " + options.rootfs + ", read-only, writes in a discarded layer");
  } else {
    line("/", "empty, read-only (nothing of the host's root but what follows)");
    for (const std::string& d : plan.system_dirs) line(d, "host " + d + ", read-only, nosuid, nodev");
    for (const auto& l : plan.system_links) line(l.path, "symlink to " + l.target);
    std::string hidden;
    for (const std::string& h : plan.etc_hidden) hidden += " " + h;
    line("/etc", "host /etc, read-only; airlock's resolv.conf, hosts, hostname, CA bundle; hidden:" +
                     (hidden.empty() ? std::string(" nothing") : hidden));
  }
  line("/proc", "the sandbox's own processes");
  line("/sys", "read-only sysfs of the sandbox's network namespace");
  line("/dev", "null zero full random urandom tty, private pts and shm");
  line("/tmp", "private, empty (tmpfs)");
  line("/run", "private, empty (tmpfs)");
  line("/root", "HOME: private, empty (tmpfs)");
  for (const std::string& h : plan.root_hidden) line(h, "hidden (a secret's source file)");
  for (const detail::Share& s : plan.shares) {
    std::string what = s.workspace ? "workspace: host " + s.host : "volume: host " + s.host;
    what += s.read_only ? ", read-only" : s.overlay ? ", writes in a discarded layer" : ", read-write";
    what += ", nosuid, nodev; host uid " + std::to_string(s.disk_uid) + " gid " + std::to_string(s.disk_gid) +
            " is the guest's root, other owners show as nobody";
    line(s.guest, what);
  }
  for (const auto& c : plan.covers) {
    line(c.guest, c.content.empty() ? "shown empty: " + c.why : "shown with placeholders: " + c.why);
  }
  line("cwd", plan.cwd.empty() ? std::string("/root (HOME)") : plan.cwd);
  line("ids", "guest 0-65535 map to a free slot of host ids " + std::to_string(options.id_pool.first) + "-" +
                  std::to_string(options.id_pool.end() - 1) + ", leased for the sandbox's lifetime");
  for (const std::string& n : plan.notes) out += n + "\n";
  for (const std::string& w : warnings) out += "warning: " + w + "\n";
  return out;
}

}  // namespace airlock::sandbox
