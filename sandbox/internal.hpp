#pragma once
// Internals of the sandbox module shared by its .cpp files. Not an API.
#include "sandbox/sandbox.hpp"
#include "tls/trust_store.hpp"

#include <linux/filter.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::sandbox::detail {

// An owned file descriptor.
class Fd {
 public:
  Fd() noexcept = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// "<what>: <strerror(errno)>"
[[noreturn]] void throw_errno(const std::string& what);

// Absolute path of a tool (ip, nft) in the usual sbin/bin directories; throws when missing.
std::string find_tool(const std::string& name);

// Runs argv (argv[0] absolute) with `input` on stdin, inside the network namespace `netns_fd`
// when >= 0. Throws SandboxError with the tool's stderr when it fails or outlives `timeout`.
void run_tool(const std::vector<std::string>& argv, std::string_view input, int netns_fd,
              std::chrono::milliseconds timeout = std::chrono::seconds(10));

void write_file(const std::string& path, std::string_view content, int mode = 0644);
// Whole file, up to `limit` bytes; nullopt when it cannot be opened.
std::optional<std::string> read_small_file(const std::string& path, std::size_t limit = 8u << 20);

// Creates the veth pair (gateway side in `gateway_netns`, eth0 in `guest_netns`), addresses on
// both ends and the guest's default routes, over rtnetlink. Throws SandboxError.
void configure_link(int gateway_netns, int guest_netns);

// A slot of the id pool, held (flock on state_root/ids/<first id>) while the object lives.
class IdLease {
 public:
  // The first slot of `pool` free of host users, groups, subordinate ranges, `also_busy` ids
  // and live sandboxes. Throws SandboxError when none is left.
  static std::unique_ptr<IdLease> acquire(const std::string& state_root, const IdRange& pool,
                                          const std::vector<std::uint64_t>& also_busy);
  ~IdLease();
  const IdRange& range() const noexcept { return range_; }

 private:
  IdLease() = default;
  IdRange range_;
  std::string path_;
  Fd lock_;
};
// Removes lease files no live sandbox holds (for `airlock gc`).
std::vector<std::string> collect_stale_leases(const std::string& state_root);

// A user namespace whose one mapping is host `disk_uid`/`disk_gid` <-> host `guest_root`: an
// id-mapped mount made with it shows disk_uid's files as the guest's root's, and what the
// guest's root creates is written as disk_uid. Every other id shows as nobody and cannot be
// written.
Fd make_idmap_userns(std::uint64_t disk_uid, std::uint64_t disk_gid, std::uint64_t guest_root);

// A host path the guest sees: the workspace or a volume.
struct Share {
  std::string host;   // canonical
  std::string guest;  // absolute
  bool read_only = false;
  bool workspace = false;
  bool overlay = false;  // the workspace in a discarded layer
  bool directory = true;
  std::uint64_t disk_uid = 0, disk_gid = 0;  // who owns what the guest's root creates there
};

// What the guest sees of the host, decided before start (also printed by describe_view).
struct ViewPlan {
  std::vector<std::string> system_dirs;  // host dirs bound read-only at the same path
  struct Link {
    std::string path, target;
  };
  std::vector<Link> system_links;        // /bin -> usr/bin and the like
  std::vector<std::string> etc_hidden;   // paths under /etc (relative) that are whited out
  std::vector<std::string> root_hidden;  // --rootfs: guest paths whited out in its overlay
  std::vector<Share> shares;             // the workspace first, then the volumes
  struct Cover {
    std::string guest;    // a file shown with `content` instead of its own
    std::string content;  // the placeholder-rewritten copy, or empty (a secret's source)
    unsigned mode = 0600;
    std::string why;      // for stderr and describe_view: names the secrets, never a value
  };
  std::vector<Cover> covers;
  std::string cwd;
  std::vector<std::string> notes;  // the scan's figures and bounds
};
// Resolves the workspace, the owners and the system entries, and scans the workspace and the
// volumes for the secrets' values. Throws ConfigError for a workspace that cannot be shared.
ViewPlan plan_view(const SandboxOptions& options, const std::vector<SecretBinding>& secrets,
                   std::vector<std::string>& warnings);

// Adds to a libseccomp filter (scmp_filter_ctx) the rules against set-id files and device nodes
// (mode_rules.cpp).
void add_file_mode_rules(void* filter);

// The seccomp filter of every guest process, compiled to classic BPF by libseccomp (seccomp.cpp;
// docs/security.md says what it denies and what stays allowed, and why).
std::vector<sock_filter> build_seccomp_program();
// The same program, compiled at build time and embedded (seccomp_image.cpp): what guests get.
std::vector<sock_filter> embedded_seccomp_program();

// A set of 32-bit values as aligned blocks: value v is in block (mask, base) when
// (v & mask) == base. seccomp compares one argument once per rule, so "anything but these
// values" becomes one rule per block of the complement.
struct ValueBlock {
  std::uint32_t mask = 0;
  std::uint32_t base = 0;
  friend bool operator==(const ValueBlock&, const ValueBlock&) = default;
};
// The fewest aligned blocks covering every value in [0, end) not in `allowed`.
std::vector<ValueBlock> blocks_except(std::vector<std::uint32_t> allowed, std::uint64_t end = 1ull << 32);

// Capabilities a guest root keeps in its bounding set (Docker's default set); all others go.
std::vector<int> kept_capabilities();

// Starttime (field 22 of /proc/PID/stat), to tell a live owner from a reused pid; 0 if gone.
unsigned long long process_start_time(pid_t pid);

// cgroup limits for one sandbox. apply() puts `pid` in a cgroup with the limits (v2, or v1
// controllers as a fallback); when neither is available it adds a warning and does nothing.
class CgroupLimits {
 public:
  CgroupLimits(const std::string& id, const Limits& limits);
  ~CgroupLimits();  // removes the cgroups (the processes must be gone)
  // Every cgroup a sandbox `id` may make (airlock-<id> under the v2 root and the v1 controllers):
  // what the sandbox records before apply() and the only paths `airlock gc` removes for it.
  static std::vector<std::string> candidate_paths(const std::string& id);
  // Whether apply() may make any (a limit is set).
  bool wanted() const noexcept { return limits_.memory_bytes || limits_.cpus || limits_.pids; }
  void apply(pid_t pid, std::vector<std::string>& warnings);
  // Removes the cgroups made so far; false when one is still there (its processes did not leave).
  bool remove();
  const std::vector<std::string>& paths() const noexcept { return paths_; }

 private:
  std::string id_;
  Limits limits_;
  std::vector<std::string> paths_;
};
// True when the cgroup directory is gone (removed, or it was not there).
bool remove_cgroup_dir(const std::string& path);

// Host terminals stay outside (stdio_relay.cpp): each of the host's fds 0..2 that is a terminal
// reaches the guest as a pipe this relay copies to and from it (or as /dev/null with -t, where
// the command gets its own pty). Bounded: one 64 KiB buffer per direction, one thread, no polling
// tick.
class StdioRelay {
 public:
  explicit StdioRelay(bool own_pty);
  ~StdioRelay();
  StdioRelay(const StdioRelay&) = delete;
  StdioRelay& operator=(const StdioRelay&) = delete;

  // What the guest gets as fd i (>= 3, for the child to dup2), or -1: it inherits the host's.
  int guest_fd(int i) const noexcept;
  void close_guest_ends() noexcept;  // the parent's copies, once the child has its own
  void start();
  // After the guest ended: stops reading the host's stdin, copies what is left of the guest's
  // output until EOF or `drain`, and joins the relay.
  void finish(std::chrono::milliseconds drain);

 private:
  struct Channel {
    bool to_guest = false;  // host fd 0 -> pipe; else pipe -> host fd 1 or 2
    int host_fd = -1;
    Fd pipe;                // the relay's end
    std::array<char, 65536> buffer{};
    std::size_t offset = 0, length = 0;
    bool done = false;
  };
  void run();

  Fd guest_ends_[3];
  std::vector<Channel> channels_;
  Fd stop_;
  int drain_ms_ = 0;
  std::thread thread_;
};

// Everything the guest's first process needs, prepared by the parent so that the child runs
// only system calls between clone and exec (the parent may have other threads).
struct ChildPlan {
  int sync_fd = -1;    // read: one byte 'g' when the parent finished (maps, network, cgroup)
  int status_fd = -1;  // write, close-on-exec: "S<message>" setup failure, "X<errno>" exec failure
  int exe_fd = -1;     // guest_init_executable(), executed as the guest's init
  std::vector<int> keep_fds;  // ascending; everything else is closed in the child

  int root_mount_fd = -1;      // the detached root the parent built (tmpfs, or --rootfs overlay)
  std::string root;           // host dir (in the child's private mount ns) it is attached on

  struct Bind {
    int tree_fd = -1;         // detached mount (open_tree, or an overlay) made by the parent
    std::string target;       // absolute, under root
    bool directory = true;
    bool early = false;       // system directories and /etc: before the guest's own tmpfs mounts
  };
  std::vector<Bind> volumes;  // the system binds, then the workspace and volumes, parents first
  struct Cover {
    std::string staging;  // in the guest's /tmp: written, bound on target, then unlinked
    std::string target;   // absolute, under root: a file shown with `content` instead
    std::string content;
    unsigned mode = 0600;
  };
  std::vector<Cover> covers;

  std::string proc_dir, sys_dir, dev_dir, pts_dir, shm_dir, tmp_dir, home_dir, run_dir;
  struct DevNode {
    std::string host;    // /dev/null
    std::string target;  // root/dev/null
  };
  std::vector<DevNode> dev_nodes;
  struct Link {
    std::string target;
    std::string path;
  };
  std::vector<Link> dev_links;

  std::string hostname;
  std::string cwd;
  std::vector<std::string> argv_storage, env_storage;
  std::vector<char*> argv, envp;  // null-terminated views of the storage
  std::vector<sock_filter> seccomp;
  std::vector<int> drop_caps;
  int stdio[3] = {-1, -1, -1};  // dup2'd onto 0..2 first (StdioRelay::guest_fd), -1: inherited
  int tty_socket = -1;  // -t: the pty is made in the guest's devpts; its master goes back here
  int tty_slave = -1;   // (child only) the command's terminal
};

// The system's certificates under `lower_root` (trust.cpp): the PEM bundle, and its certificates
// wrapped for the Java trust store (~1 ms, so the Sandbox reads them on a thread from the start).
struct TrustFile {
  std::string path;  // in the guest, under /etc
  std::string content;
};
struct SystemTrust {
  std::string lower_root;
  std::string bundle;
  tls::TrustedBags java;
};
SystemTrust read_system_trust(const std::string& lower_root);
// The guest's trust files for `ca_pem` (the gateway's CA and --ca-cert): the PEM bundles (the
// system's plus ca_pem), OpenSSL hash-directory entries, and the Java trust store. Empty when
// ca_pem is.
std::vector<TrustFile> guest_trust_files(const SystemTrust& system, const std::string& ca_pem);

// The executable of the guest's init: a sealed memfd holding the small init (init.c), or this
// binary (/proc/self/exe, whose constructor runs the same init) where no memfd can be executed.
Fd guest_init_executable();

// The child side of clone3: sets up the guest, forks the command, becomes its init.
[[noreturn]] void child_main(ChildPlan& plan);

}  // namespace airlock::sandbox::detail
