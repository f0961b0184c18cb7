// The sandbox for real: needs root (user, network and mount namespaces, nftables), as in CI.
#include "sandbox/sandbox.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sched.h>
#include <cstring>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>
#include <sstream>
#include <sys/stat.h>

namespace airlock::sandbox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kFakeValue = "sk-airlock-test-fake-4d1f0c";

struct Outcome {
  ExitStatus status;
  std::string out;
  std::vector<std::string> warnings;
};

std::string read_fd(int fd) {
  std::string out;
  ::lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// Runs the sandbox with stdout (and stderr) captured: the guest inherits fds 1 and 2.
Outcome run(SandboxOptions options, const std::vector<SecretBinding>& secrets = {},
        const std::function<void(Sandbox&)>& with_sandbox = {},
        const std::function<void(Sandbox&)>& before_start = {}) {
  const int capture = ::memfd_create("out", 0);
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  std::fflush(stdout);
  ::dup2(capture, 1);
  ::dup2(capture, 2);
  Outcome r;
  try {
    Sandbox sandbox(std::move(options), secrets);
    if (before_start) before_start(sandbox);
    sandbox.start();
    if (with_sandbox) with_sandbox(sandbox);
    r.status = sandbox.wait();
    r.warnings = sandbox.warnings();
  } catch (...) {
    ::dup2(saved_out, 1);
    ::dup2(saved_err, 2);
    ::close(saved_out);
    ::close(saved_err);
    std::cerr << read_fd(capture);
    ::close(capture);
    throw;
  }
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  ::close(saved_out);
  ::close(saved_err);
  r.out = read_fd(capture);
  ::close(capture);
  return r;
}

SandboxOptions sh(const std::string& script) {
  SandboxOptions o;
  o.command = {"/bin/sh", "-c", script};
  return o;
}

std::vector<SecretBinding> one_secret() {
  std::vector<SecretBinding> s;
  s.push_back(SecretBuilder().env("API_KEY").value(kFakeValue).allow_host("api.example.com").build());
  return s;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/airlock-sandbox-test.XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void write(const std::string& path, const std::string& text, int mode = 0644) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), static_cast<mode_t>(mode));
}

// A read-write volume at /ctl through which a test and its guest wait for each other instead of
// sleeping a fixed time: the guest touches /ctl/ready, the test creates /ctl/go. Both sides
// wait with a bounded deadline (30 s), long enough for a loaded machine.
class Handshake {
 public:
  static inline const std::string kSayReady = "touch /ctl/ready";
  static inline const std::string kAwaitGo =
      "i=0; while [ ! -e /ctl/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; test -e /ctl/go";

  Handshake() { (void)!::chown(dir_.path().c_str(), 4242, 4242); }  // a volume's owner is never root
  SandboxOptions mount(SandboxOptions o) const {
    o.volumes.push_back({dir_.path(), "/ctl", false});
    return o;
  }
  bool wait_ready() const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!std::filesystem::exists(dir_.path() + "/ready")) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  void go() const { std::ofstream(dir_.path() + "/go") << "go\n"; }

 private:
  TempDir dir_;
};

TEST(Sandbox, ExitStatusPassesThrough) {
  EXPECT_EQ(run(sh("exit 0")).status.code, 0);
  EXPECT_EQ(run(sh("exit 7")).status.code, 7);
  const Outcome killed = run(sh("kill -TERM $$"));
  EXPECT_EQ(killed.status.code, 128 + SIGTERM);
  EXPECT_EQ(killed.status.kind, ExitStatus::Kind::kExited);
}

TEST(Sandbox, CommandNotFoundIs127) {
  SandboxOptions o;
  o.command = {"no-such-command-airlock"};
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.status.code, kExitNotFound);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0], "cannot run 'no-such-command-airlock': No such file or directory");
}

TEST(Sandbox, EnvironmentIsCleanAndHoldsPlaceholders) {
  ::setenv("AIRLOCK_TEST_HOST_ONLY", "host-only", 1);
  SandboxOptions o = sh("env | sort");
  o.ca_pem = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n";
  const Outcome r = run(std::move(o), one_secret());
  EXPECT_EQ(r.status.code, 0);
  EXPECT_THAT(r.out, HasSubstr("API_KEY=$MSB_API_KEY\n"));
  EXPECT_THAT(r.out, HasSubstr("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"));
  EXPECT_THAT(r.out, Not(HasSubstr(kFakeValue)));
  EXPECT_THAT(r.out, Not(HasSubstr("AIRLOCK_TEST_HOST_ONLY")));
}

TEST(Sandbox, GuestSeesOnlyItsOwnProcesses) {
  const Outcome r = run(sh("ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; echo; cat /proc/1/cmdline | tr '\\0' ' '"));
  EXPECT_EQ(r.status.code, 0);
  // init (1), the shell (2), and the pipeline's children: all small numbers.
  EXPECT_THAT(r.out, ::testing::StartsWith("1 2 "));
  EXPECT_THAT(r.out, HasSubstr("airlock-sandbox-init 2"));
}

TEST(Sandbox, GuestInitMapsNothingOfAirlock) {
  // PID 1 is the small freestanding init: none of this process's code or libraries (nor the
  // memory that held secret values) is mapped in it.
  const Outcome r = run(sh("cat /proc/1/maps"));
  EXPECT_EQ(r.status.code, 0);
  EXPECT_THAT(r.out, HasSubstr("memfd:airlock-sandbox-init"));
  EXPECT_THAT(r.out, Not(HasSubstr("libc.so")));
  EXPECT_THAT(r.out, Not(HasSubstr("libcrypto")));
  EXPECT_THAT(r.out, Not(HasSubstr("[heap]")));
}

TEST(Sandbox, SecretValueIsInNoProcEnvironOrCmdline) {
  const Outcome r = run(sh("cat /proc/*/environ /proc/*/cmdline 2>/dev/null | tr '\\0' '\\n'; echo END"),
                    one_secret());
  EXPECT_EQ(r.status.code, 0);
  EXPECT_THAT(r.out, HasSubstr("API_KEY=$MSB_API_KEY"));
  EXPECT_THAT(r.out, HasSubstr("END"));
  EXPECT_THAT(r.out, Not(HasSubstr(kFakeValue)));
}

TEST(Sandbox, IdentityAndIsolation) {
  const Outcome r = run(sh("id -u; hostname; cat /etc/resolv.conf; ip -o addr show eth0 | awk '{print $4}';"
                       "test -w /usr && echo usr-writable; touch /tmp/x && echo tmp-ok;"
                       "echo hi > /etc/airlock-probe && echo etc-write-ok;"
                       "ls /dev | tr '\\n' ' '"));
  EXPECT_EQ(r.status.code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::StartsWith("0\nairlock\nnameserver 100.96.0.1\nnameserver fd00:a1a0::1\n"));
  EXPECT_THAT(r.out, HasSubstr("100.96.0.2/30\nfd00:a1a0::2/64\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("usr-writable")));
  EXPECT_THAT(r.out, HasSubstr("tmp-ok"));
  EXPECT_FALSE(std::filesystem::exists("/etc/airlock-probe"));
  EXPECT_THAT(r.out, HasSubstr("null"));
  EXPECT_THAT(r.out, Not(HasSubstr("sda")));
  EXPECT_THAT(r.out, Not(HasSubstr("vda")));
}

TEST(Sandbox, SeccompRefusesNamespaceEscapesAndKernelInterfaces) {
  const Outcome r = run(sh("unshare -n true 2>/dev/null && echo unshare-ok;"
                       "mount -t tmpfs x /mnt 2>/dev/null && echo mount-ok;"
                       "echo done"));
  EXPECT_EQ(r.status.code, 0);
  EXPECT_EQ(r.out, "done\n");
}

TEST(Sandbox, TimeoutKillsAndReports124) {
  SandboxOptions o = sh("sleep 30");
  o.limits.timeout = std::chrono::milliseconds(300);
  const auto t0 = std::chrono::steady_clock::now();
  const Outcome r = run(std::move(o));
  // Not the 30 s sleep; the bound holds the sandbox's setup, which a loaded machine stretches (was 5 s).
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(r.status.kind, ExitStatus::Kind::kTimedOut);
  EXPECT_EQ(r.status.code, kExitTimeout);
}

TEST(Sandbox, TerminateKillsEveryProcess) {
  const Outcome r = run(sh("(sleep 30 &) ; sleep 30"), {}, [](Sandbox& s) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    s.terminate("secret API_KEY sent to evil.example");
  });
  EXPECT_EQ(r.status.kind, ExitStatus::Kind::kTerminated);
  EXPECT_EQ(r.status.code, kExitTerminated);
  EXPECT_EQ(r.status.reason, "secret API_KEY sent to evil.example");
}

TEST(Sandbox, SignalIsForwardedToTheCommand) {
  // The signal goes once the trap is set (a fixed sleep raced the shell's start on a loaded
  // machine: the shell died of the signal, 143, before it ran `trap`).
  Handshake hs;
  SandboxOptions o = hs.mount(sh("trap 'echo got-term; exit 3' TERM; " + Handshake::kSayReady +
                                 "; sleep 10 & wait"));
  const Outcome r = run(std::move(o), {}, [&](Sandbox& s) {
    ASSERT_TRUE(hs.wait_ready()) << "the guest never said ready";
    s.forward_signal(SIGTERM);
  });
  EXPECT_EQ(r.status.code, 3);
  EXPECT_THAT(r.out, HasSubstr("got-term"));
}

// A stand-in for the gateway: answers every connection on the transparent listeners with
// "hello <n>\n" until stopped.
class EchoGateway {
 public:
  explicit EchoGateway(GatewaySockets sockets) : sockets_(std::move(sockets)) {
    thread_ = std::thread([this] { serve(); });
  }
  ~EchoGateway() {
    stop_ = true;
    thread_.join();
    for (auto* list : {&sockets_.transparent, &sockets_.dns_udp, &sockets_.dns_tcp}) {
      for (int fd : *list) ::close(fd);
    }
  }
  int accepted() const { return accepted_; }

 private:
  void serve() {
    while (!stop_) {
      std::vector<pollfd> fds;
      for (int fd : sockets_.transparent) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      for (const pollfd& p : fds) {
        if (!(p.revents & POLLIN)) continue;
        const int c = ::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        const std::string line = "hello " + std::to_string(++accepted_) + "\n";
        (void)!::write(c, line.data(), line.size());
        ::close(c);
      }
    }
  }
  GatewaySockets sockets_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

TEST(Sandbox, PublicTcpEndsAtTheGatewayListenerBlockedTcpIsReset) {
  std::string script = "for a in 203.0.113.7 10.0.0.1 169.254.169.254 100.96.0.1 127.0.0.1 '[2001:db8::1]' '[fd00::1]'";
  for (const std::string& host : host_interface_addresses()) {
    if (host.find(':') == std::string::npos) script += " " + host.substr(0, host.find('/'));
  }
  script += "; do exec 3<>/dev/tcp/${a//[\\[\\]]/}/80 2>/dev/null && read line <&3 && echo \"$a $line\" "
            "|| echo \"$a refused\"; exec 3<&-; done";
  SandboxOptions o;
  o.command = {"/bin/bash", "-c", script};
  std::unique_ptr<EchoGateway> gateway;
  const Outcome r = run(std::move(o), {}, {}, [&](Sandbox& s) {
    gateway = std::make_unique<EchoGateway>(s.take_gateway_sockets());
  });
  EXPECT_EQ(r.status.code, 0) << r.out;
  // Public destinations reach the gateway; private, metadata, the link, the host: reset.
  // (127.0.0.1 is the guest's own loopback, where nothing listens.)
  EXPECT_THAT(r.out, ::testing::StartsWith(
                         "203.0.113.7 hello 1\n10.0.0.1 refused\n169.254.169.254 refused\n"
                         "100.96.0.1 refused\n127.0.0.1 refused\n[2001:db8::1] hello 2\n"
                         "[fd00::1] refused\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("hello 3")));
  EXPECT_EQ(gateway->accepted(), 2);
}

TEST(Sandbox, UdpAndIcmpDoNotGetOut) {
  // The gateway namespace drops everything that is not redirected TCP or DNS; with nothing
  // listening on the DNS port, a UDP query to any resolver is answered by nothing at all.
  SandboxOptions o;
  o.command = {"/usr/bin/python3", "-c", R"(
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
s.sendto(b'x', ('203.0.113.9', 9999))
try:
    print('udp-reply', s.recvfrom(10))
except socket.timeout:
    print('udp-no-reply')
try:
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(0.5)
    r.sendto(b'\x08\x00\xf7\xff\x00\x00\x00\x00', ('203.0.113.9', 0))
    print('icmp-reply', r.recvfrom(100))
except socket.timeout:
    print('icmp-no-reply')
except PermissionError:
    print('raw-denied')
)"};
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.status.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("udp-no-reply\n"));
  EXPECT_THAT(r.out, ::testing::AnyOf(HasSubstr("icmp-no-reply\n"), HasSubstr("raw-denied\n")));
}

TEST(Sandbox, VolumesReadWriteAndReadOnly) {
  TempDir rw, ro;
  // A volume is id-mapped to its owner (never root: these directories are root's, so the rw one
  // is given to a user): what the guest's root writes there belongs to that user.
  ASSERT_EQ(::chown(rw.path().c_str(), 4242, 4242), 0);
  ::chmod(ro.path().c_str(), 0755);
  write(ro.path() + "/in.txt", "from-host\n");
  SandboxOptions o = sh("cat /data/in.txt; echo guest > /out/new.txt && echo rw-ok;"
                        "{ echo x > /data/other.txt; } 2>/dev/null || echo ro-refused;"
                        "mkdir -p /tmp/deep && echo tmp-ok");
  o.volumes = {{rw.path(), "/out", false}, {ro.path(), "/data", true}};
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.status.code, 0) << r.out;
  EXPECT_EQ(r.out, "from-host\nrw-ok\nro-refused\ntmp-ok\n");
  std::ifstream in(rw.path() + "/new.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "guest");
  struct stat st {};
  ASSERT_EQ(::stat((rw.path() + "/new.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 4242u);
  EXPECT_EQ(st.st_gid, 4242u);
  EXPECT_FALSE(std::filesystem::exists(ro.path() + "/other.txt"));
}

TEST(Sandbox, VolumeUnderTmpIsMountedOverTheGuestTmpfs) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  write(dir.path() + "/f", "seen\n");
  SandboxOptions o = sh("cat /tmp/shared/f");
  o.volumes = {{dir.path(), "/tmp/shared", true}};
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.out, "seen\n");
}

TEST(Sandbox, CaBundleMergesGuestRootsAndAirlockCa) {
  SandboxOptions o = sh("tail -n 3 /etc/ssl/certs/ca-certificates.crt; "
                        "cmp /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt && echo same;"
                        "grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt");
  o.ca_pem = "-----BEGIN CERTIFICATE-----\nAIRLOCKTESTCA\n-----END CERTIFICATE-----\n";
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.status.code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::StartsWith("-----BEGIN CERTIFICATE-----\nAIRLOCKTESTCA\n"
                                           "-----END CERTIFICATE-----\nsame\n"));
  // The host's own roots are still there (Debian's bundle has many).
  const int count = std::stoi(r.out.substr(r.out.rfind("same\n") + 5));
  EXPECT_GT(count, 10);
  // The host's bundle is untouched.
  const auto host = std::filesystem::file_size("/etc/ssl/certs/ca-certificates.crt");
  EXPECT_EQ(r.out.find("AIRLOCKTESTCA"), r.out.find("AIRLOCKTESTCA"));
  std::ifstream in("/etc/ssl/certs/ca-certificates.crt");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(all.find("AIRLOCKTESTCA"), std::string::npos);
  EXPECT_GT(host, 0u);
}

TEST(Sandbox, WritesToTheRootAreDiscardedAtExit) {
  SandboxOptions o = sh("echo x > /etc/airlock-overlay-probe 2>/dev/null; mkdir /var/tmp/airlock-probe && echo made");
  const Outcome r = run(std::move(o));
  EXPECT_FALSE(std::filesystem::exists("/var/tmp/airlock-probe"));
  EXPECT_FALSE(std::filesystem::exists("/etc/airlock-overlay-probe"));
}

TEST(Sandbox, HostFilesOutsideTheViewAndEtcSecretsAreNotThere) {
  TempDir dir;
  write(dir.path() + "/secret-file", kFakeValue, 0600);
  ::chmod(dir.path().c_str(), 0755);
  const Outcome r = run(sh("cat " + dir.path() + "/secret-file 2>&1; cat /etc/shadow 2>&1 | head -c 200; ls /root 2>&1"));
  EXPECT_THAT(r.out, Not(HasSubstr(kFakeValue)));
  EXPECT_THAT(r.out, HasSubstr("cat: " + dir.path() + "/secret-file: No such file or directory\n"));
  EXPECT_THAT(r.out, HasSubstr("cat: /etc/shadow: No such file or directory\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("root:")));
}

TEST(Sandbox, CapabilitiesAreReducedAndNoNewPrivsIsSet) {
  const Outcome r = run(sh("grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status"));
  // Docker's default set (0x00000000a80425fb) without CAP_SETFCAP (bit 31): no file
  // capabilities can be written through the workspace or a volume.
  EXPECT_THAT(r.out, HasSubstr("CapBnd:\t00000000280425fb\n"));
  EXPECT_THAT(r.out, HasSubstr("NoNewPrivs:\t1\n"));
  EXPECT_THAT(r.out, HasSubstr("Seccomp:\t2\n"));
}

TEST(Sandbox, RootfsDirectoryBecomesTheGuestRoot) {
  TempDir root;
  // A tiny root: the host's /usr and libraries bound in read-only by volume, plus a marker.
  for (const char* d : {"/usr", "/etc"}) std::filesystem::create_directories(root.path() + d);
  for (const char* l : {"bin", "lib", "lib64", "sbin"}) {
    std::filesystem::create_directory_symlink(std::string("usr/") + l, root.path() + "/" + l);
  }
  write(root.path() + "/etc/marker", "custom-root\n");
  SandboxOptions o = sh("cat /etc/marker; ls /");
  o.rootfs = root.path();
  o.workspace = SandboxOptions::Workspace::kNone;  // else its mount point shows in /
  o.volumes = {{"/usr", "/usr", true}};
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.status.code, 0) << r.out;
  EXPECT_THAT(r.out, ::testing::StartsWith("custom-root\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("work")));
}

TEST(Sandbox, NothingIsLeftBehindAfterExit) {
  std::string id;
  run(sh("true"), {}, {}, [&](Sandbox& s) { id = s.id(); });
  EXPECT_FALSE(std::filesystem::exists("/run/airlock/" + id));
}

// collect_garbage(state_root) acts on host-wide places (cgroups named airlock-<id>,
// /run/netns/airlock-<id>), though only for what state_root records. The collection runs in a
// child with a private mount namespace whose cgroup and netns directories are empty, so a test
// can make such names without touching the host's. Returns its lines ({"child failed"} if it
// failed).
// `setup` runs in the child first (it may make cgroups and netns names there); after the
// collection, each of `watch` that still exists adds a line "present <path>".
std::vector<std::string> collect_garbage_alone(const std::string& state_root, const std::function<void()>& setup = {},
                                               const std::vector<std::string>& watch = {}) {
  int out[2];
  if (::pipe(out) != 0) return {"pipe failed"};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/sys/fs/cgroup", "tmpfs", 0, "mode=0755") != 0) {
      _exit(2);
    }
    if (std::filesystem::is_directory("/run/netns") &&
        ::mount("tmpfs", "/run/netns", "tmpfs", 0, "mode=0755") != 0) {
      _exit(3);
    }
    if (setup) setup();
    std::string text;
    for (const std::string& line : collect_garbage(state_root)) text += line + "\n";
    for (const std::string& path : watch)
      if (std::filesystem::exists(path)) text += "present " + path + "\n";
    _exit(::write(out[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()) ? 0 : 4);
  }
  ::close(out[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return {"child failed"};
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The owner line a sandbox of this process writes: its pid and start time (/proc/self/stat field 22).
std::string own_owner_line() {
  std::ifstream stat("/proc/self/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream rest(all.substr(all.rfind(')') + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i) rest >> field;
  return std::to_string(::getpid()) + " " + field + "\n";
}

TEST(CollectGarbage, RemovesStateOfADeadOwnerOnly) {
  TempDir root;
  const std::string dead = root.path() + "/0badc0de", live = root.path() + "/0000beef";
  std::filesystem::create_directories(dead + "/stage");
  std::filesystem::create_directories(live + "/stage");
  write(dead + "/owner", "999999999 1\n");
  write(live + "/owner", own_owner_line());
  const auto removed = collect_garbage_alone(root.path());
  EXPECT_EQ(removed, (std::vector<std::string>{"state " + dead}));
  EXPECT_FALSE(std::filesystem::exists(dead));
  EXPECT_TRUE(std::filesystem::exists(live));
}

// The attack: `airlock gc --state-dir A` removed every airlock-<id> cgroup (and deleted every
// airlock-<id> network namespace name) that no live owner under A claimed, so the cgroup of a
// sandbox recorded under another state root B, live but with an empty cgroup (being set up, or
// between processes), was removed from under it. gc removes only what its own root records.
TEST(CollectGarbage, LeavesWhatAnotherStateRootRecordsAlone) {
  TempDir a, b;
  // B: a live sandbox (this process is its owner) with a cgroup.
  const std::string live = b.path() + "/0000beef";
  std::filesystem::create_directories(live + "/stage");
  write(live + "/owner", own_owner_line());
  write(live + "/cgroups", "/sys/fs/cgroup/airlock-0000beef\n");
  // A: a sandbox whose owner died, with its cgroup recorded, and one listing a cgroup not its own.
  const std::string dead = a.path() + "/0badc0de", forged = a.path() + "/0000dead";
  std::filesystem::create_directories(dead + "/stage");
  write(dead + "/owner", "999999999 1\n");
  write(dead + "/cgroups", "/sys/fs/cgroup/airlock-0badc0de\n");
  std::filesystem::create_directories(forged);
  write(forged + "/owner", "999999999 1\n");
  write(forged + "/cgroups", "/sys/fs/cgroup/airlock-0000beef\n");
  const std::string live_cgroup = "/sys/fs/cgroup/airlock-0000beef", dead_cgroup = "/sys/fs/cgroup/airlock-0badc0de";
  const std::string unrecorded = "/sys/fs/cgroup/airlock-12345678";
  const std::string live_netns = "/run/netns/airlock-0000beef";
  const auto removed = collect_garbage_alone(
      a.path(),
      [&] {
        for (const std::string& d : {live_cgroup, dead_cgroup, unrecorded}) std::filesystem::create_directory(d);
        std::ofstream(live_netns).put('x');
      },
      {live_cgroup, dead_cgroup, unrecorded, live_netns});
  const std::vector<std::string> want = {"cgroup " + dead_cgroup, "state " + dead, "state " + forged,
                                         "present " + live_cgroup, "present " + unrecorded, "present " + live_netns};
  std::vector<std::string> got = removed;
  std::sort(got.begin(), got.end());
  std::vector<std::string> sorted = want;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(got, sorted);
  EXPECT_TRUE(std::filesystem::exists(live));
}

TEST(Sandbox, SecretValueOnTheCommandLineIsRefused) {
  SandboxOptions o;
  o.command = {"/bin/echo", std::string("token=") + kFakeValue};
  try {
    Sandbox box(std::move(o), one_secret());
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "the command line contains the value of secret API_KEY; refusing to start");
  }
}

TEST(Sandbox, MemoryAndPidLimitsHold) {
  SandboxOptions o = sh("python3 -c 'b = bytearray(256 << 20); print(len(b))' >/dev/null 2>&1;"
                        "echo mem=$?; python3 -c '\n"
                        "import os, time\n"
                        "n = 0\n"
                        "try:\n"
                        "    for i in range(100):\n"
                        "        if os.fork() == 0:\n"
                        "            time.sleep(3); os._exit(0)\n"
                        "        n += 1\n"
                        "except OSError:\n"
                        "    pass\n"
                        "print(\"procs=%d\" % n)'");
  o.limits.memory_bytes = 64u << 20;
  o.limits.pids = 24;
  const Outcome r = run(std::move(o));
  ASSERT_TRUE(r.warnings.empty()) << r.warnings.front();
  EXPECT_THAT(r.out, HasSubstr("mem=137\n"));  // SIGKILL from the OOM killer
  const int procs = std::stoi(r.out.substr(r.out.find("procs=") + 6));
  EXPECT_LE(procs, 24);
  EXPECT_GE(procs, 10);
}

TEST(Sandbox, SeccompRefusesEachDeniedSystemCall) {
  // x86-64 numbers; each call's arguments are harmless if it were allowed by mistake.
  SandboxOptions o;
  o.command = {"/usr/bin/python3", "-c", R"(
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
calls = {'ptrace': (101, 0), 'process_vm_readv': (310, 1, 0, 0, 0, 0, 0), 'bpf': (321, 0, 0, 0),
         'perf_event_open': (298, 0, 0, -1, -1, 0), 'add_key': (248, 0, 0, 0, 0, 0),
         'request_key': (249, 0, 0, 0, 0), 'keyctl': (250, 0), 'init_module': (175, 0, 0, 0),
         'finit_module': (313, -1, 0, 0), 'delete_module': (176, 0, 0), 'kexec_load': (246, 0, 0, 0, 0),
         'kexec_file_load': (320, -1, -1, 0, 0, 0), 'open_by_handle_at': (304, -1, 0, 0),
         'userfaultfd': (323, 0), 'iopl': (172, 0), 'ioperm': (173, 0, 0, 0), 'swapon': (167, 0, 0),
         'swapoff': (168, 0), 'reboot': (169, 0, 0, 0, 0), 'setns': (308, -1, 0),
         'unshare_user': (272, 0x10000000), 'unshare_net': (272, 0x40000000),
         'clone_newns': (56, 0x00020000 | 17, 0, 0, 0, 0), 'mount': (165, 0, 0, 0, 0, 0),
         'umount2': (166, 0, 0), 'pivot_root': (155, 0, 0), 'open_tree': (428, -1, 0, 0),
         'fsopen': (430, 0, 0), 'move_mount': (429, -1, 0, -1, 0, 0), 'clone3': (435, 0, 0)}
for name, args in calls.items():
    r = libc.syscall(*[ctypes.c_long(a) for a in args])
    print(name, r, os.strerror(ctypes.get_errno()) if r < 0 else 'ALLOWED')
)"};
  const Outcome r = run(std::move(o));
  EXPECT_EQ(r.status.code, 0) << r.out;
  for (const char* name : {"ptrace", "process_vm_readv", "bpf", "perf_event_open", "add_key",
                           "request_key", "keyctl", "init_module", "finit_module", "delete_module",
                           "kexec_load", "kexec_file_load", "open_by_handle_at", "userfaultfd",
                           "iopl", "ioperm", "swapon", "swapoff", "reboot", "setns",
                           "unshare_user", "unshare_net", "clone_newns", "mount", "umount2",
                           "pivot_root", "open_tree", "fsopen", "move_mount"}) {
    EXPECT_THAT("\n" + r.out, HasSubstr(std::string("\n") + name + " -1 Operation not permitted\n"))
        << name << "\n" << r.out;
  }
  EXPECT_THAT(r.out, HasSubstr("\nclone3 -1 Function not implemented\n"));
  EXPECT_THAT(r.out, Not(HasSubstr("ALLOWED")));
}

TEST(Sandbox, HostUnixSocketsUnderRunAreOutOfReach) {
  // Named after this process: two runs at once (two checkouts) never unlink each other's.
  const std::string path = "/run/airlock-sandbox-test-" + std::to_string(::getpid()) + ".sock";
  ::unlink(path.c_str());
  const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::chmod(path.c_str(), 0666);
  ASSERT_EQ(::listen(s, 4), 0);
  const Outcome r = run(sh("ls -A /run | wc -l; test -e " + path + " && echo visible"));
  ::close(s);
  ::unlink(path.c_str());
  EXPECT_EQ(r.out, "0\n");
}

// Runs `argv` inside the network namespace `netns_fd`; returns its stdout.
std::string in_netns(int netns_fd, std::vector<std::string> argv) {
  int out[2];
  if (::pipe(out) != 0) return "";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    if (::setns(netns_fd, CLONE_NEWNET) != 0) _exit(126);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  const std::string text = read_fd(out[0]);
  ::close(out[0]);
  ::waitpid(pid, nullptr, 0);
  return text;
}

TEST(Sandbox, GatewayNamespaceHasTheRulesNoForwardingAndOnlyTheLink) {
  std::string rules, forward, links;
  // The guest lives until the namespace has been looked at: when it ends, its namespace and the
  // link's other end go, and gw0 with them (a guest of `sleep 0.5` raced the three looks).
  Handshake hs;
  const Outcome r = run(hs.mount(sh(Handshake::kAwaitGo)), {}, [&](Sandbox& s) {
    const int ns = s.gateway_netns_fd();
    rules = in_netns(ns, {"/usr/sbin/nft", "list", "ruleset"});
    forward = in_netns(ns, {"/bin/cat", "/proc/sys/net/ipv4/ip_forward",
                            "/proc/sys/net/ipv6/conf/all/forwarding"});
    links = in_netns(ns, {"/usr/sbin/ip", "-o", "-br", "link"});
    hs.go();
  });
  EXPECT_EQ(r.status.code, 0);
  EXPECT_THAT(rules, HasSubstr("table inet airlock {"));
  EXPECT_THAT(rules, HasSubstr("redirect to :15001"));
  EXPECT_THAT(rules, HasSubstr("ip daddr 169.254.0.0/16 reject with tcp reset"));
  EXPECT_EQ(forward, "0\n0\n");
  EXPECT_THAT(links, ::testing::MatchesRegex("lo +UNKNOWN.*\ngw0@if[0-9]+ +UP.*\n"));
}

}  // namespace
}  // namespace airlock::sandbox
