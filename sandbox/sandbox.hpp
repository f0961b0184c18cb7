#pragma once
// The sandbox of `airlock run`: user, mount, PID, network, UTS, IPC and cgroup namespaces around
// one command, an allow-listed view of the host (the system read-only, the workspace and the
// volumes id-mapped to their owners; or --rootfs), a clean environment with
// placeholders, and a private gateway network namespace whose listening sockets are handed to the
// gateway. Control path: errors throw SandboxError (or ConfigError for bad options).
#include <airlock/errors.hpp>
#include <airlock/secret.hpp>

#include "sandbox/view.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace airlock::sandbox {

// Setting up or running the sandbox failed (not the guest command).
class SandboxError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Exit codes of `airlock run` when the command's own status is not the answer.
inline constexpr int kExitTimeout = 124;     // --timeout elapsed; the sandbox was killed
inline constexpr int kExitTerminated = 125;  // terminate(reason), e.g. block-and-terminate
inline constexpr int kExitCannotRun = 126;   // the command exists but could not be executed
inline constexpr int kExitNotFound = 127;    // the command was not found in the guest's PATH
inline constexpr int kExitSetupFailed = 3;   // the sandbox itself could not be set up

struct Volume {
  std::string host;
  std::string guest;
  bool read_only = false;
  friend bool operator==(const Volume&, const Volume&) = default;
};
// `HOST:GUEST[:ro|:rw]`; both absolute. Throws ConfigError.
Volume parse_volume(std::string_view spec);

// `512M`, `2G`, `1048576`, `64k` (binary units). Throws ConfigError.
std::uint64_t parse_memory_size(std::string_view text);

struct Limits {
  std::optional<std::chrono::milliseconds> timeout;
  std::optional<std::uint64_t> memory_bytes;
  std::optional<double> cpus;
  std::optional<std::uint64_t> pids;
};

struct EnvRequest {
  std::vector<std::pair<std::string, std::string>> set;  // --env K=V
  std::vector<std::string> pass;                          // --env-pass K (host value, if set)
};

// Where the guest finds the merged CA bundle; every CA variable points here.
inline constexpr const char* kGuestCaBundle = "/etc/ssl/certs/ca-certificates.crt";
inline constexpr const char* kGuestCaBundleRhel = "/etc/pki/tls/certs/ca-bundle.crt";
// A PKCS12 trust store of the same certificates (Debian's JDK reads it; JAVA_TOOL_OPTIONS names it).
inline constexpr const char* kGuestJavaTrustStore = "/etc/ssl/certs/java/cacerts";
// The variables that make common clients trust airlock's CA (each one names kGuestCaBundle).
// JAVA_TOOL_OPTIONS is set too (to the trust store, before any options given with --env).
const std::vector<std::string>& ca_env_vars();

// Builds the guest's environment (`K=V` strings, sorted by name): PATH, HOME, TERM, LANG, the CA
// variables, --env-pass (only those set on the host), --env, and each secret's env var set to its
// placeholder. Throws ConfigError when a variable is given twice in conflicting ways, when
// --env/--env-pass names a secret's variable, or when any variable's value equals (or contains) a
// secret's value; the message names the variable and the secret, never the value.
using HostEnv = std::function<std::optional<std::string>(const std::string& name)>;
std::vector<std::string> build_guest_env(const EnvRequest& request,
                                         const std::vector<SecretBinding>& secrets,
                                         const HostEnv& host_env, bool ca_bundle);

// The guest's side of its only link, and the gateway's side (the guest's router and resolver).
// Every sandbox has its own pair of namespaces, so the addresses never collide across sandboxes.
struct LinkAddresses {
  static constexpr const char* kGatewayV4 = "100.96.0.1";
  static constexpr const char* kGuestV4 = "100.96.0.2";
  static constexpr int kPrefixV4 = 30;
  static constexpr const char* kGatewayV6 = "fd00:a1a0::1";
  static constexpr const char* kGuestV6 = "fd00:a1a0::2";
  static constexpr int kPrefixV6 = 64;
};
inline constexpr std::uint16_t kTransparentPort = 15001;
inline constexpr std::uint16_t kDnsPort = 15053;
inline constexpr const char* kGatewayIf = "gw0";
inline constexpr const char* kGuestIf = "eth0";

// The nftables ruleset of the gateway namespace: DNS (UDP and TCP 53, to any address) goes to
// the DNS port; TCP to a `blocked` destination (CIDR text, v4 or v6) is reset right there;
// every other TCP connection goes to the transparent port; everything else is dropped.
std::string gateway_ruleset(std::uint16_t transparent_port, std::uint16_t dns_port,
                            const std::vector<std::string>& blocked = {});

// Destinations no guest connection may reach through the gateway, whatever it asks: loopback,
// private, CGNAT (the sandbox link itself), link-local (cloud metadata), multicast, reserved,
// ULA, site-local, IPv4-mapped IPv6, and every IPv6 form of those IPv4 ranges
// (with_ipv4_embeddings; NAT64 local-use 64:ff9b:1::/48 and Teredo 2001::/32 whole) — plus, in
// the sandbox, every address of the host's interfaces and their IPv6 forms.
std::vector<std::string> default_blocked_destinations();
// `cidrs`, then for each IPv4 network among them the IPv6 networks that embed it at a fixed
// place: IPv4-mapped (::ffff:a.b.c.d/96+n), IPv4-compatible, NAT64 64:ff9b::/96 and 6to4
// (policy::embedding_networks). Entries that are not CIDRs are kept as they are.
std::vector<std::string> with_ipv4_embeddings(std::vector<std::string> cidrs);
// The host's own interface addresses (as /32 and /128 CIDRs).
std::vector<std::string> host_interface_addresses();

struct SandboxOptions {
  std::vector<std::string> command;  // argv; argv[0] looked up in the guest's PATH
  EnvRequest env;
  std::vector<Volume> volumes;
  std::string rootfs;        // empty: the host's system directories, read-only (see view)
  // The workspace: a host directory the guest sees at the same path, read-write, as its
  // working directory. Empty: the current directory (unless it is / or a system or shared
  // scratch directory: then none, with a warning).
  std::string workdir;
  enum class Workspace : std::uint8_t { kReadWrite, kOverlay, kNone };
  Workspace workspace = Workspace::kReadWrite;  // kOverlay: writes go to a discarded layer
  std::string cwd;           // empty: the workspace, else HOME
  // Host files secrets were read from (--secret-file, value_from = "file:..."): never
  // visible in the guest, wherever they lie.
  std::vector<std::string> secret_files;
  ScanLimits scan;           // the scan of the workspace and volumes for secret values
  IdRange id_pool = kDefaultIdPool;  // host ids reserved for airlock's sandboxes
  bool tty = false;          // -t: a pseudo-terminal for the command
  std::string ca_pem;        // airlock's CA certificate (PEM, public); empty: no CA trust added
  Limits limits;
  bool network = true;       // false: a guest netns with loopback only (no gateway)
  // TCP destinations reset in the gateway namespace before they reach the gateway.
  // Default: default_blocked_destinations() and host_interface_addresses().
  std::optional<std::vector<std::string>> blocked_destinations;
  std::string state_root = "/run/airlock";
  HostEnv host_env;          // lookup for --env-pass, TERM and LANG; default: getenv
};

// The sockets the gateway serves, opened inside the gateway namespace. The caller takes
// ownership (close them, or hand them to the gateway which does).
struct GatewaySockets {
  std::vector<int> transparent;  // TCP listeners (v4, v6) on kTransparentPort
  std::vector<int> dns_udp;      // UDP sockets (v4, v6) on kDnsPort
  std::vector<int> dns_tcp;      // TCP listeners (v4, v6) on kDnsPort
};

struct ExitStatus {
  enum class Kind : std::uint8_t { kExited, kTimedOut, kTerminated };
  Kind kind = Kind::kExited;
  int code = 0;          // what `airlock run` exits with
  std::string reason;    // kTerminated: the reason given to terminate()
};

class Sandbox {
 public:
  // Validates the options, builds the environment (may throw ConfigError), creates the gateway
  // namespace with its nftables rules and listening sockets. The command does not run yet.
  Sandbox(SandboxOptions options, const std::vector<SecretBinding>& secrets);
  ~Sandbox();  // tears everything down; kills the guest if it still runs
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  const std::string& id() const noexcept;
  // The sockets for the gateway (only before start(); empty when network is off).
  GatewaySockets take_gateway_sockets();
  // An fd of the gateway namespace (owned by the sandbox), -1 when network is off.
  int gateway_netns_fd() const noexcept;

  // The gateway's CA certificate (PEM): merged into the guest's CA bundle, and the CA variables
  // are set. Before start() only.
  void trust_ca(const std::string& pem);

  // Creates the guest and starts the command. Throws SandboxError on setup failure; a command
  // that cannot be found or executed is reported by wait() as 126/127 with a message on stderr.
  void start();
  // Waits for the command (or the timeout), then returns how `airlock run` should exit.
  ExitStatus wait();
  // Thread-safe, idempotent: kills every process in the sandbox; wait() reports kTerminated.
  void terminate(const std::string& reason);
  // Thread-safe: forwards a signal to the guest's init, which passes it to the command.
  void forward_signal(int signo);
  // -t: copies the host terminal's window size to the guest's (call on SIGWINCH).
  void sync_terminal_size();
  // Host pid of the guest's init (0 before start()).
  pid_t init_pid() const noexcept;

  // Warnings collected during setup (e.g. limits not available); printed by the caller.
  const std::vector<std::string>& warnings() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// What the guest would see with these options (mounts, the workspace and its owner, hidden
// and rewritten files, the scan's figures), one line each; runs the scan, starts nothing.
std::string describe_view(const SandboxOptions& options, const std::vector<SecretBinding>& secrets);

// Removes what sandboxes recorded under state_root whose owner process is gone left behind:
// their state directories, id leases, the cgroups their records name (airlock-<id> only) and
// network namespaces named airlock-<id>. Never what another state root's sandboxes made: a name
// alone does not say whose it is. Returns one line per removal.
std::vector<std::string> collect_garbage(const std::string& state_root = "/run/airlock");

}  // namespace airlock::sandbox
