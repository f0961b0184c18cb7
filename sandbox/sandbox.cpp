// The host side of the sandbox: the gateway namespace, the guest's creation, its link, limits,
// waiting, termination and teardown.
#include "sandbox/internal.hpp"

#include <fcntl.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/capability.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include <atomic>
#include <sys/ioctl.h>
#include <termios.h>

namespace airlock::sandbox {

using detail::Fd;
using detail::throw_errno;

namespace {

struct CloneArgs {  // struct clone_args of <linux/sched.h>
  std::uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
      set_tid, set_tid_size, cgroup;
};

std::string random_id() {
  unsigned char bytes[4];
  if (::getrandom(bytes, sizeof bytes, 0) != sizeof bytes) throw_errno("getrandom");
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (unsigned char b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

// Runs `fn` on a short-lived thread that has joined the network namespace `netns_fd` (or a new
// one when -1), so the calling thread's namespace never changes.
template <typename Fn>
void in_netns_thread(int netns_fd, Fn&& fn) {
  std::string error;
  std::thread t([&] {
    try {
      if (netns_fd < 0) {
        if (::unshare(CLONE_NEWNET) != 0) throw_errno("unshare(CLONE_NEWNET)");
      } else if (::setns(netns_fd, CLONE_NEWNET) != 0) {
        throw_errno("setns");
      }
      fn();
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  t.join();
  if (!error.empty()) throw SandboxError(error);
}

int open_socket(int family, int type, std::uint16_t port) {
  Fd fd(::socket(family, type | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (family == AF_INET) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_any;
    rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) throw_errno("bind port " + std::to_string(port));
  if (type == SOCK_STREAM && ::listen(fd.get(), 1024) != 0) throw_errno("listen");
  return fd.release();
}

// AIRLOCK_TIMING=1: setup phases on stderr (labels and milliseconds only).
void trace(const char* label) {
  static const bool on = std::getenv("AIRLOCK_TIMING") != nullptr;
  static const auto start = std::chrono::steady_clock::now();
  if (on) {
    std::fprintf(stderr, "airlock: timing: sandbox %s %.1f ms\n", label,
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
}

}  // namespace

std::vector<std::string> host_interface_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (a->ifa_addr->sa_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
      out.push_back(std::string(buf) + "/32");
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, buf, sizeof buf);
      out.push_back(std::string(buf) + "/128");
    }
  }
  ::freeifaddrs(list);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

struct Sandbox::Impl {
  SandboxOptions options;
  std::string id;
  std::string state_dir;
  std::vector<std::string> env;
  std::vector<SecretBinding> secrets_for_env;  // to rebuild env in trust_ca(); never enters the guest
  std::vector<std::string> warnings;

  Fd gateway_netns;
  GatewaySockets sockets;
  std::thread rules_loader;
  std::string rules_error;
  std::unique_ptr<detail::CgroupLimits> cgroups;
  std::unique_ptr<detail::IdLease> lease;   // this sandbox's host ids
  detail::ViewPlan view;                     // what the guest sees (decided in start())
  std::vector<Fd> mount_fds;                 // detached trees until the guest attached them
  Fd root_layers, etc_layers;                // tmpfs holding overlay layers
  std::vector<Fd> share_layers;
  std::vector<std::pair<std::pair<std::uint64_t, std::uint64_t>, Fd>> idmaps;
  // The system's certificates for the guest's trust stores (~1 ms), read meanwhile.
  std::future<detail::SystemTrust> system_trust;

  Fd pidfd;
  pid_t pid = 0;
  bool reaped = false;
  Fd tty_master;
  Fd status_r;                 // the guest's report pipe (read end)
  std::string status_pending;  // read past 'R' before the guest ended
  std::thread tty_pump;
  std::unique_ptr<detail::StdioRelay> stdio_relay;
  std::atomic<bool> tty_stop{false};
  std::atomic<bool> tty_done{false};
  bool tty_raw = false;
  termios tty_saved{};

  std::mutex mu;
  bool terminated = false;
  bool timed_out = false;
  std::string terminate_reason;

  ~Impl() { teardown(); }

  void write_cgroups_record(const std::vector<std::string>& paths) {
    std::string list;
    for (const std::string& path : paths) list += path + "\n";
    detail::write_file(state_dir + "/cgroups", list);
  }

  void create_state_dir() {
    ::mkdir(options.state_root.c_str(), 0711);
    ::chmod(options.state_root.c_str(), 0711);
    state_dir = options.state_root + "/" + id;
    if (::mkdir(state_dir.c_str(), 0711) != 0) throw_errno("mkdir " + state_dir);
    detail::write_file(state_dir + "/owner", std::to_string(::getpid()) + " " +
                                                 std::to_string(detail::process_start_time(::getpid())) +
                                                 "\n");
    if (::mkdir((state_dir + "/stage").c_str(), 0755) != 0) throw_errno("mkdir stage");
  }

  // The namespace and the gateway's sockets now; the nftables rules on a helper thread, so the
  // caller can build the gateway meanwhile (start() waits for them: no guest before the rules).
  void create_gateway_netns() {
    int fd = -1;
    in_netns_thread(-1, [&] {
      fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw_errno("open netns");
      gateway_netns.reset(fd);
      // Forwarding is off in a new namespace; say so anyway, the design depends on it.
      detail::write_file("/proc/sys/net/ipv4/ip_forward", "0\n");
      detail::write_file("/proc/sys/net/ipv6/conf/all/forwarding", "0\n");
      sockets.transparent.push_back(open_socket(AF_INET, SOCK_STREAM, kTransparentPort));
      sockets.transparent.push_back(open_socket(AF_INET6, SOCK_STREAM, kTransparentPort));
      sockets.dns_udp.push_back(open_socket(AF_INET, SOCK_DGRAM, kDnsPort));
      sockets.dns_udp.push_back(open_socket(AF_INET6, SOCK_DGRAM, kDnsPort));
      sockets.dns_tcp.push_back(open_socket(AF_INET, SOCK_STREAM, kDnsPort));
      sockets.dns_tcp.push_back(open_socket(AF_INET6, SOCK_STREAM, kDnsPort));
    });
    std::vector<std::string> blocked;
    if (options.blocked_destinations) {
      blocked = *options.blocked_destinations;
    } else {
      blocked = default_blocked_destinations();
      for (std::string& a : with_ipv4_embeddings(host_interface_addresses())) blocked.push_back(std::move(a));
    }
    std::string rules = gateway_ruleset(kTransparentPort, kDnsPort, blocked);  // may throw
    rules_loader = std::thread([this, rules = std::move(rules)] {
      try {
        detail::run_tool({detail::find_tool("nft"), "-f", "-"}, rules, gateway_netns.get());
      } catch (const std::exception& e) {
        rules_error = e.what();
      }
    });
  }

  void wait_for_rules() {
    if (rules_loader.joinable()) rules_loader.join();
    if (!rules_error.empty()) throw SandboxError("gateway namespace rules: " + rules_error);
  }

  void configure_link() {
    Fd guest_ns(::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!guest_ns) throw_errno("open guest netns");
    detail::configure_link(gateway_netns.get(), guest_ns.get());
  }

  // Guest ids 0..65535 are this sandbox's own slot of the pool (leased in start()).
  void write_id_maps() {
    const std::string base = "/proc/" + std::to_string(pid);
    const std::string map = "0 " + std::to_string(lease->range().first) + " " +
                            std::to_string(kIdsPerSandbox) + "\n";
    detail::write_file(base + "/uid_map", map);
    detail::write_file(base + "/setgroups", "deny\n");
    detail::write_file(base + "/gid_map", map);
  }

  static int check(long rc, const std::string& what) {
    if (rc < 0) throw_errno(what);
    return static_cast<int>(rc);
  }

  // A detached tmpfs, as host root (the guest cannot write what it holds unless told so).
  static Fd new_tmpfs(const char* mode, unsigned attrs) {
    Fd ctx(check(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC), "fsopen tmpfs"));
    check(::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_SET_STRING, "mode", mode, 0), "fsconfig tmpfs");
    check(::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0), "create tmpfs");
    return Fd(check(::syscall(SYS_fsmount, ctx.get(), FSMOUNT_CLOEXEC, attrs), "fsmount tmpfs"));
  }

  // An overlay of `lower` with upper/ and work/ under `layers` (a tmpfs, filled by the caller
  // beforehand, which the overlay keeps alive).
  static Fd new_overlay(const std::string& lower, const std::string& layers, unsigned attrs) {
    Fd ctx(check(::syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC), "fsopen overlay"));
    for (const auto& [key, value] : {std::pair<const char*, std::string>{"lowerdir", lower},
                                     {"upperdir", layers + "/upper"}, {"workdir", layers + "/work"}}) {
      check(::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0), "fsconfig overlay");
    }
    check(::syscall(SYS_fsconfig, ctx.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0),
          "overlay of " + lower);
    return Fd(check(::syscall(SYS_fsmount, ctx.get(), FSMOUNT_CLOEXEC, attrs), "fsmount overlay"));
  }

  static std::string fd_path(const Fd& fd) { return "/proc/self/fd/" + std::to_string(fd.get()); }

  static void make_dirs(const std::string& path, mode_t mode = 0755) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec) throw SandboxError("mkdir " + path + ": " + ec.message());
    ::chmod(path.c_str(), mode);
  }

  static void whiteout(const std::string& path) {
    make_dirs(std::filesystem::path(path).parent_path().string());
    if (::mknod(path.c_str(), S_IFCHR | 0000, ::makedev(0, 0)) != 0 && errno != EEXIST) {
      throw_errno("hide " + path);
    }
  }

  // The files airlock writes in the guest's /etc (under `etc`, a directory of an upper layer).
  void write_etc_files(const std::string& etc, const std::string& lower_root) {
    make_dirs(etc);
    detail::write_file(etc + "/resolv.conf", std::string("nameserver ") + LinkAddresses::kGatewayV4 +
                                                 "\nnameserver " + LinkAddresses::kGatewayV6 + "\n");
    detail::write_file(etc + "/hosts",
                       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tairlock\n");
    detail::write_file(etc + "/hostname", "airlock\n");
    if (options.ca_pem.empty()) return;
    const detail::SystemTrust system =
        system_trust.valid() ? system_trust.get() : detail::read_system_trust(lower_root);
    for (const detail::TrustFile& f : detail::guest_trust_files(system, options.ca_pem)) {
      const std::string path = etc + f.path.substr(4);  // below /etc
      make_dirs(std::filesystem::path(path).parent_path().string());
      detail::write_file(path, f.content);
    }
  }

  static bool under(const std::string& path, const std::string& dir) {
    return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
  }

  // A mount point for a share in the tree at `top` (the guest's root): its directories, and an
  // empty file for a file share. Skipped under what the guest mounts itself (it creates them
  // there) and under the read-only system directories (the target must exist in them).
  void add_mount_point(const std::string& top, const std::string& guest, bool directory) {
    for (const char* own : {"/tmp", "/run", "/root", "/dev", "/proc", "/sys"}) {
      if (under(guest, own)) return;
    }
    for (const std::string& d : view.system_dirs) {
      if (under(guest, d)) return;
    }
    const std::string path = top + guest;
    if (directory) {
      make_dirs(path);
    } else {
      make_dirs(std::filesystem::path(path).parent_path().string());
      if (!std::filesystem::exists(path)) detail::write_file(path, "");
    }
  }

  // The guest's root. Without --rootfs: an empty tmpfs holding only mount points and the system
  // symlinks; the system directories and /etc are bound on it by the guest (binds()). With
  // --rootfs: that tree, read-only under a discarded overlay, as before.
  // Built here as host root with the new mount API, detached; the guest attaches it in its own
  // namespace (inside the user namespace the host's mounts could not be used: they are locked).
  Fd build_root_mount(detail::ChildPlan& plan) {
    const unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (!options.rootfs.empty()) {
      root_layers = new_tmpfs("0755", 0);
      const std::string top = fd_path(root_layers);
      make_dirs(top + "/upper");
      make_dirs(top + "/work");
      const std::string upper = top + "/upper";
      for (const char* d : {"/proc", "/sys", "/dev", "/tmp", "/root", "/run"}) make_dirs(upper + d);
      write_etc_files(upper + "/etc", options.rootfs);
      for (const std::string& h : view.root_hidden) whiteout(upper + h);
      for (const detail::Share& s : view.shares) add_mount_point(upper, s.guest, s.directory);
      return new_overlay(options.rootfs, top, 0);
    }
    Fd root = new_tmpfs("0755", attrs);
    const std::string top = fd_path(root);
    for (const char* d : {"/proc", "/sys", "/dev", "/tmp", "/root", "/run", "/etc", "/var"}) make_dirs(top + d);
    make_dirs(top + "/var/tmp", 01777);
    for (const std::string& d : view.system_dirs) make_dirs(top + d);
    for (const auto& l : view.system_links) {
      if (::symlink(l.target.c_str(), (top + l.path).c_str()) != 0) throw_errno("symlink " + l.path);
    }
    for (const detail::Share& s : view.shares) {
      if (!under(s.guest, "/etc")) add_mount_point(top, s.guest, s.directory);
    }

    // /etc: the host's, read-only, under an overlay that adds airlock's files and whites out
    // the host's credentials and the secrets' source files.
    etc_layers = new_tmpfs("0755", 0);
    const std::string layers = fd_path(etc_layers);
    make_dirs(layers + "/work");
    write_etc_files(layers + "/upper", "/");
    for (const std::string& h : view.etc_hidden) whiteout(layers + "/upper/" + h);
    for (const detail::Share& s : view.shares) {
      if (under(s.guest, "/etc")) add_mount_point(layers + "/upper", s.guest.substr(4), s.directory);
    }
    Fd etc = new_overlay("/etc", layers, MOUNT_ATTR_RDONLY | attrs);
    add_bind(plan, std::move(etc), plan.root + "/etc", true, true);
    for (const std::string& d : view.system_dirs) {
      Fd tree(check(::syscall(SYS_open_tree, AT_FDCWD, d.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE),
                    "open_tree " + d));
      set_attrs(tree, MOUNT_ATTR_RDONLY | attrs, -1, d);
      add_bind(plan, std::move(tree), plan.root + d, true, true);
    }
    return root;
  }

  static bool set_attrs(const Fd& tree, std::uint64_t set, int userns, const std::string& what,
                        bool may_fail = false) {
    mount_attr attr{};
    attr.attr_set = set;
    if (userns >= 0) {
      attr.attr_set |= MOUNT_ATTR_IDMAP;
      attr.userns_fd = static_cast<std::uint64_t>(userns);
    }
    if (::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) == 0) {
      return true;
    }
    if (may_fail) return false;
    throw_errno(what + ": mount attributes");
  }

  void add_bind(detail::ChildPlan& plan, Fd tree, const std::string& target, bool directory, bool early) {
    detail::ChildPlan::Bind b;
    b.tree_fd = tree.get();
    b.target = target;
    b.directory = directory;
    b.early = early;
    plan.keep_fds.push_back(tree.get());
    plan.volumes.push_back(std::move(b));
    mount_fds.push_back(std::move(tree));
  }

  // The user namespace that maps `uid`/`gid` on disk to the guest's root (one per owner).
  int idmap_for(std::uint64_t uid, std::uint64_t gid) {
    for (const auto& [key, fd] : idmaps) {
      if (key == std::make_pair(uid, gid)) return fd.get();
    }
    idmaps.emplace_back(std::make_pair(uid, gid), detail::make_idmap_userns(uid, gid, lease->range().first));
    return idmaps.back().second.get();
  }

  // The workspace and the volumes: nosuid, nodev, id-mapped so that what the guest's root
  // creates belongs to the share's owner on the host (never an id of the guest's range).
  void add_shares(detail::ChildPlan& plan) {
    const unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    std::vector<const detail::Share*> order;
    for (const detail::Share& s : view.shares) order.push_back(&s);
    std::stable_sort(order.begin(), order.end(), [](const detail::Share* a, const detail::Share* b) {
      return a->guest.size() < b->guest.size();  // parents before what is mounted inside them
    });
    for (const detail::Share* s : order) {
      const std::string what = s->workspace ? "workspace " + s->host : "--volume " + s->host;
      Fd tree(static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, s->host.c_str(),
                                         OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)));
      if (!tree) throw_errno(what);
      const std::uint64_t set = attrs | (s->read_only ? MOUNT_ATTR_RDONLY : 0);
      if (!set_attrs(tree, set, idmap_for(s->disk_uid, s->disk_gid), what, true)) {
        if (!s->read_only) {
          throw SandboxError(what + ": the file system cannot map ids (" + std::strerror(errno) +
                             "), so what the guest writes there would belong to its own ids; "
                             "share it read-only (:ro) or from another file system");
        }
        set_attrs(tree, set, -1, what);
        warnings.push_back(what + ": the file system cannot map ids; the guest sees its owners as nobody");
      }
      if (s->overlay) {
        // The id-mapped tree is the lower layer; the writes go to a tmpfs dropped at exit.
        share_layers.push_back(new_tmpfs("0755", 0));
        const std::string layers = fd_path(share_layers.back());
        make_dirs(layers + "/upper");
        make_dirs(layers + "/work");
        // The merged top directory takes the upper one's owner and mode: the guest's root, as
        // the workspace's own top directory shows through the id map.
        struct stat top {};
        const auto root_id = static_cast<uid_t>(lease->range().first);
        if (::stat(s->host.c_str(), &top) != 0 || ::chmod((layers + "/upper").c_str(), top.st_mode & 07777) != 0 ||
            (top.st_uid == s->disk_uid && ::chown((layers + "/upper").c_str(), root_id, root_id) != 0)) {
          throw_errno(what + ": overlay");
        }
        Fd overlay = new_overlay(fd_path(tree), layers, attrs);
        mount_fds.push_back(std::move(tree));
        tree = std::move(overlay);
      }
      add_bind(plan, std::move(tree), plan.root + s->guest, s->directory, false);
    }
    for (std::size_t i = 0; i < view.covers.size(); ++i) {
      const detail::ViewPlan::Cover& c = view.covers[i];
      plan.covers.push_back({plan.tmp_dir + "/.airlock-cover-" + std::to_string(i), plan.root + c.guest,
                             c.content, c.mode});
      warnings.push_back("the guest sees " + c.guest + (c.content.empty() ? " empty: " : " with placeholders: ") +
                         c.why + " (the host file is unchanged)");
    }
  }

  detail::ChildPlan make_plan() {
    detail::ChildPlan plan;
    plan.root = state_dir + "/stage";
    const std::string& r = plan.root;

    plan.proc_dir = r + "/proc";
    plan.sys_dir = r + "/sys";
    plan.dev_dir = r + "/dev";
    plan.pts_dir = r + "/dev/pts";
    plan.shm_dir = r + "/dev/shm";
    plan.tmp_dir = r + "/tmp";
    plan.home_dir = r + "/root";
    plan.run_dir = r + "/run";
    for (const char* n : {"null", "zero", "full", "random", "urandom", "tty"}) {
      plan.dev_nodes.push_back({std::string("/dev/") + n, r + "/dev/" + n});
    }
    plan.dev_links = {{"/proc/self/fd", r + "/dev/fd"},
                      {"/proc/self/fd/0", r + "/dev/stdin"},
                      {"/proc/self/fd/1", r + "/dev/stdout"},
                      {"/proc/self/fd/2", r + "/dev/stderr"},
                      {"pts/ptmx", r + "/dev/ptmx"}};
    add_shares(plan);
    trace("shares");

    plan.hostname = "airlock";
    plan.cwd = view.cwd.empty() ? "/root" : view.cwd;
    plan.argv_storage = options.command;
    plan.env_storage = env;
    for (std::string& a : plan.argv_storage) plan.argv.push_back(a.data());
    plan.argv.push_back(nullptr);
    for (std::string& e : plan.env_storage) plan.envp.push_back(e.data());
    plan.envp.push_back(nullptr);
    plan.seccomp = detail::embedded_seccomp_program();

    const auto kept = detail::kept_capabilities();
    int last = CAP_LAST_CAP;
    if (auto text = detail::read_small_file("/proc/sys/kernel/cap_last_cap", 64)) {
      last = std::atoi(text->c_str());
    }
    for (int cap = 0; cap <= last; ++cap) {
      if (std::find(kept.begin(), kept.end(), cap) == kept.end()) plan.drop_caps.push_back(cap);
    }
    return plan;
  }

  void start() {
    if (pid != 0) throw SandboxError("the sandbox was already started");
    wait_for_rules();
    trace("start");
    view = detail::plan_view(options, secrets_for_env, warnings);
    trace("view");
    std::vector<std::uint64_t> owners;
    for (const detail::Share& s : view.shares) owners.push_back(s.disk_uid), owners.push_back(s.disk_gid);
    lease = detail::IdLease::acquire(options.state_root, options.id_pool, owners);
    trace("id lease");
    detail::ChildPlan plan = make_plan();
    trace("plan");
    Fd root_mount = build_root_mount(plan);
    trace("root mount");
    plan.root_mount_fd = root_mount.get();
    plan.keep_fds.push_back(root_mount.get());

    int sync[2], status[2];
    if (::pipe2(sync, O_CLOEXEC) != 0) throw_errno("pipe");
    Fd sync_r(sync[0]), sync_w(sync[1]);
    if (::pipe2(status, O_CLOEXEC) != 0) throw_errno("pipe");
    status_r.reset(status[0]);
    Fd status_w(status[1]);
    Fd exe = detail::guest_init_executable();
    Fd tty_parent, tty_child;
    if (options.tty) {
      int pair[2];
      if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) throw_errno("socketpair");
      tty_parent.reset(pair[0]);
      tty_child.reset(pair[1]);
      plan.tty_socket = tty_child.get();
      plan.keep_fds.push_back(tty_child.get());
    }
    stdio_relay = std::make_unique<detail::StdioRelay>(options.tty);
    for (int i = 0; i < 3; ++i) plan.stdio[i] = stdio_relay->guest_fd(i);
    plan.sync_fd = sync_r.get();
    plan.status_fd = status_w.get();
    plan.exe_fd = exe.get();
    plan.keep_fds.push_back(sync_r.get());
    plan.keep_fds.push_back(status_w.get());
    plan.keep_fds.push_back(exe.get());
    std::sort(plan.keep_fds.begin(), plan.keep_fds.end());

    int child_pidfd = -1;
    CloneArgs args{};
    args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS |
                 CLONE_NEWIPC | CLONE_PIDFD;
    args.pidfd = reinterpret_cast<std::uint64_t>(&child_pidfd);
    args.exit_signal = SIGCHLD;
    // The guest must not inherit this process's supplementary groups (host gid 0 would open
    // group-readable root files). The raw syscall drops them for this thread only, around clone.
    std::vector<gid_t> groups(static_cast<std::size_t>(std::max(0, ::getgroups(0, nullptr))));
    const int ngroups = ::getgroups(static_cast<int>(groups.size()), groups.data());
    if (ngroups < 0 || ::syscall(SYS_setgroups, 0, nullptr) != 0) throw_errno("setgroups");
    const long rc = ::syscall(SYS_clone3, &args, sizeof args);
    if (rc != 0) ::syscall(SYS_setgroups, static_cast<std::size_t>(ngroups), groups.data());
    if (rc == 0) detail::child_main(plan);  // never returns
    if (rc < 0) throw_errno("clone3");
    pid = static_cast<pid_t>(rc);
    trace("cloned");
    pidfd.reset(child_pidfd);
    sync_r.reset();
    status_w.reset();
    tty_child.reset();
    root_mount.reset();
    stdio_relay->close_guest_ends();

    try {
      write_id_maps();
      cgroups = std::make_unique<detail::CgroupLimits>(id, options.limits);
      // Recorded before they exist (and kept while one remains, see teardown): `airlock gc`
      // removes only cgroups its state root records, so none may be made without a record.
      if (cgroups->wanted()) write_cgroups_record(detail::CgroupLimits::candidate_paths(id));
      cgroups->apply(pid, warnings);
      if (cgroups->wanted()) write_cgroups_record(cgroups->paths());
      // The guest builds its file system while the link is configured; it starts the command
      // only after the second byte.
      if (::write(sync_w.get(), "g", 1) != 1) throw_errno("release the guest");
      mount_fds.clear();
      trace("released");
      if (options.network) configure_link();
      trace("link");
      if (::write(sync_w.get(), "n", 1) != 1) throw_errno("release the guest");
      sync_w.reset();
      read_status(status_r.get());
      trace("guest ready");
      if (options.tty) {
        receive_tty_master(tty_parent.get());
        start_tty_pump();
      }
      stdio_relay->start();
    } catch (...) {
      kill_and_reap();
      throw;
    }
  }

  void receive_tty_master(int sock) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) throw SandboxError("the guest's terminal did not arrive");
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) throw_errno("receive the guest's terminal");
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr || c->cmsg_type != SCM_RIGHTS) throw SandboxError("no terminal from the guest");
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    tty_master.reset(fd);
  }

  // -t: the host terminal in raw mode, its bytes copied to and from the guest's pty.
  void start_tty_pump() {
    if (::isatty(0) && ::tcgetattr(0, &tty_saved) == 0) {
      termios raw = tty_saved;
      ::cfmakeraw(&raw);
      tty_raw = ::tcsetattr(0, TCSANOW, &raw) == 0;
    }
    sync_terminal_size();
    tty_pump = std::thread([this] {
      bool stdin_open = true;
      char buf[16384];
      while (!tty_stop) {
        pollfd fds[2] = {{tty_master.get(), POLLIN, 0}, {stdin_open ? 0 : -1, POLLIN, 0}};
        const int r = ::poll(fds, 2, 100);
        if (r <= 0) continue;
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = ::read(tty_master.get(), buf, sizeof buf);
          if (n <= 0) break;  // EIO: every guest process closed the terminal, output drained
          for (ssize_t off = 0; off < n;) {
            const ssize_t w = ::write(1, buf + off, static_cast<std::size_t>(n - off));
            if (w <= 0) break;
            off += w;
          }
        }
        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
          const ssize_t n = ::read(0, buf, sizeof buf);
          if (n <= 0) {
            stdin_open = false;
            continue;
          }
          for (ssize_t off = 0; off < n;) {
            const ssize_t w = ::write(tty_master.get(), buf + off, static_cast<std::size_t>(n - off));
            if (w <= 0) break;
            off += w;
          }
        }
      }
      tty_done = true;
    });
  }

  void sync_terminal_size() {
    winsize ws{};
    if (tty_master && ::ioctl(0, TIOCGWINSZ, &ws) == 0) ::ioctl(tty_master.get(), TIOCSWINSZ, &ws);
  }

  void stop_tty_pump() {
    // Let the pump drain what the guest wrote last; it ends by itself once the pty is closed.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (tty_pump.joinable() && !tty_done && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    tty_stop = true;
    if (tty_pump.joinable()) tty_pump.join();
    if (tty_raw) {
      ::tcsetattr(0, TCSANOW, &tty_saved);
      tty_raw = false;
    }
  }

  // Reads the child's report up to 'R' (the command was forked; the init's own exec is not
  // waited for) or a setup failure. What follows 'R' is read by wait(), once the guest ended.
  void read_status(int fd) {
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (text.empty() || (text[0] == 'S' && text.size() < 4096)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw SandboxError("the sandbox did not finish starting in time");
      pollfd p{fd, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw_errno("poll");
      if (r == 0) continue;
      char buf[1024];
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    if (text.empty()) throw SandboxError("sandbox setup failed: the guest exited during setup");
    if (text[0] == 'S') throw SandboxError("sandbox setup failed: " + text.substr(1));
    status_pending = text.substr(1);
  }

  // After the guest ended: an exec failure of the command ("X<errno>") or a late setup failure.
  void drain_status() {
    if (!status_r) return;
    const int flags = ::fcntl(status_r.get(), F_GETFL);
    ::fcntl(status_r.get(), F_SETFL, flags | O_NONBLOCK);
    char buf[1024];
    ssize_t n;
    while (status_pending.size() < 4096 && (n = ::read(status_r.get(), buf, sizeof buf)) > 0) {
      status_pending.append(buf, static_cast<std::size_t>(n));
    }
    status_r.reset();
    if (status_pending.empty()) return;
    if (status_pending[0] == 'X') {
      const int err = std::atoi(status_pending.c_str() + 1);
      warnings.push_back("cannot run '" + options.command.front() + "': " + std::strerror(err));
    } else if (status_pending[0] == 'S') {
      warnings.push_back("sandbox setup failed: " + status_pending.substr(1));
    }
    status_pending.clear();
  }

  void kill_and_reap() {
    if (pid == 0 || reaped) return;
    ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    siginfo_t info{};
    while (::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED) < 0 && errno == EINTR) {
    }
    reaped = true;
  }

  ExitStatus wait() {
    if (pid == 0) throw SandboxError("the sandbox was not started");
    std::optional<std::chrono::steady_clock::time_point> deadline;
    if (options.limits.timeout) deadline = std::chrono::steady_clock::now() + *options.limits.timeout;
    siginfo_t info{};
    for (;;) {
      int wait_ms = -1;
      if (deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            *deadline - std::chrono::steady_clock::now());
        wait_ms = static_cast<int>(std::clamp<long long>(left.count(), 0, INT_MAX));
      }
      pollfd p{pidfd.get(), POLLIN, 0};
      const int r = ::poll(&p, 1, wait_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) {
        {
          std::lock_guard lock(mu);
          if (!terminated) timed_out = true;
        }
        ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
        deadline.reset();
        continue;
      }
      if (::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED) == 0) break;
      if (errno != EINTR) throw_errno("waitid");
    }
    reaped = true;
    stop_tty_pump();
    if (stdio_relay) stdio_relay->finish(std::chrono::seconds(1));
    drain_status();
    ExitStatus result;
    std::lock_guard lock(mu);
    if (terminated) {
      result.kind = ExitStatus::Kind::kTerminated;
      result.code = kExitTerminated;
      result.reason = terminate_reason;
    } else if (timed_out) {
      result.kind = ExitStatus::Kind::kTimedOut;
      result.code = kExitTimeout;
    } else if (info.si_code == CLD_EXITED) {
      result.code = info.si_status;
    } else {
      result.code = 128 + info.si_status;
    }
    return result;
  }

  void terminate(const std::string& reason) {
    std::lock_guard lock(mu);
    if (!terminated && !timed_out) {
      terminated = true;
      terminate_reason = reason;
    }
    // A pidfd never names a reused pid: after the reap this is a harmless ESRCH.
    if (pid != 0) ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
  }

  void teardown() noexcept {
    if (rules_loader.joinable()) rules_loader.join();
    try {
      kill_and_reap();
    } catch (...) {
    }
    stop_tty_pump();
    stdio_relay.reset();
    for (auto* list : {&sockets.transparent, &sockets.dns_udp, &sockets.dns_tcp}) {
      for (int fd : *list) ::close(fd);
      list->clear();
    }
    gateway_netns.reset();  // the last reference: the namespace and the veth pair go with it
    // A cgroup that cannot be removed yet keeps its record and the owner file: once this process
    // is gone, `airlock gc` finds the dead owner and removes it.
    const bool cgroups_gone = !cgroups || cgroups->remove();
    cgroups.reset();
    lease.reset();  // the guest is gone: its ids are free again
    idmaps.clear();
    root_layers.reset();
    etc_layers.reset();
    share_layers.clear();
    if (!state_dir.empty() && cgroups_gone) {
      ::rmdir((state_dir + "/stage").c_str());
      ::unlink((state_dir + "/cgroups").c_str());
      ::unlink((state_dir + "/owner").c_str());
      ::rmdir(state_dir.c_str());
    }
    trace("teardown done");
  }
};

Sandbox::Sandbox(SandboxOptions options, const std::vector<SecretBinding>& secrets)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.options = std::move(options);
  if (s.options.command.empty()) throw ConfigError("no command to run");
  if (::geteuid() != 0) {
    throw SandboxError("the sandbox needs root (namespaces, id maps, nftables); run airlock as root");
  }
  if (!s.options.host_env) {
    s.options.host_env = [](const std::string& name) -> std::optional<std::string> {
      const char* v = ::getenv(name.c_str());
      if (v == nullptr) return std::nullopt;
      return std::string(v);
    };
  }
  if (!s.options.rootfs.empty()) {
    std::error_code ec;
    const auto canonical = std::filesystem::canonical(s.options.rootfs, ec);
    if (ec || !std::filesystem::is_directory(canonical)) {
      throw ConfigError("--rootfs " + s.options.rootfs + ": not a directory");
    }
    s.options.rootfs = canonical.string();
  }
  for (const std::string& arg : s.options.command) {
    for (const SecretBinding& secret : secrets) {
      if (!secret.value().empty() && arg.find(secret.value().expose()) != std::string::npos) {
        throw ConfigError("the command line contains the value of secret " + secret.env_var() +
                          "; refusing to start");
      }
    }
  }
  s.env = build_guest_env(s.options.env, secrets, s.options.host_env, !s.options.ca_pem.empty());
  for (const SecretBinding& secret : secrets) s.secrets_for_env.push_back(secret.clone());
  if (s.options.network || !s.options.ca_pem.empty()) {  // a CA will be trusted
    s.system_trust = std::async(std::launch::async, detail::read_system_trust,
                                s.options.rootfs.empty() ? std::string("/") : s.options.rootfs);
  }
  s.id = random_id();
  s.create_state_dir();
  if (s.options.network) s.create_gateway_netns();
}

Sandbox::~Sandbox() = default;

const std::string& Sandbox::id() const noexcept { return impl_->id; }

GatewaySockets Sandbox::take_gateway_sockets() { return std::exchange(impl_->sockets, {}); }

int Sandbox::gateway_netns_fd() const noexcept { return impl_->gateway_netns.get(); }

void Sandbox::trust_ca(const std::string& pem) {
  if (impl_->pid != 0) throw SandboxError("trust_ca() after start()");
  // Added to what the guest already trusts (--ca-cert), once.
  std::string& trusted = impl_->options.ca_pem;
  if (!pem.empty() && trusted.find(pem) == std::string::npos) {
    if (!trusted.empty() && trusted.back() != '\n') trusted += '\n';
    trusted += pem;
  }
  impl_->env = build_guest_env(impl_->options.env, impl_->secrets_for_env, impl_->options.host_env,
                               !trusted.empty());
}

void Sandbox::start() { impl_->start(); }

ExitStatus Sandbox::wait() { return impl_->wait(); }

void Sandbox::terminate(const std::string& reason) { impl_->terminate(reason); }

void Sandbox::forward_signal(int signo) {
  std::lock_guard lock(impl_->mu);
  if (impl_->pid != 0) {
    ::syscall(SYS_pidfd_send_signal, impl_->pidfd.get(), signo, nullptr, 0);
  }
}

void Sandbox::sync_terminal_size() { impl_->sync_terminal_size(); }

pid_t Sandbox::init_pid() const noexcept { return impl_->pid; }

const std::vector<std::string>& Sandbox::warnings() const noexcept { return impl_->warnings; }

}  // namespace airlock::sandbox
