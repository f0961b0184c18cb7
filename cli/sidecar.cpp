#include "cli/sidecar.hpp"

#include "common/concat.hpp"

#include <airlock/errors.hpp>

#include <CLI/CLI.hpp>

#include <asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <iostream>
#include <stdexcept>

extern char** environ;

namespace airlock::cli {
namespace {

std::string find_nft() {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    const std::string path = std::string(dir) + "nft";
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  throw std::runtime_error("nft not found (install the nftables package)");
}

bool parse_number(std::string_view text, std::uint32_t& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

void apply_nft(const std::string& script) {
  const std::string nft = find_nft();
  int in[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    throw std::runtime_error("pipe: " + std::string(std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawn_file_actions_adddup2(&actions, err[1], 1);
  char* argv[] = {const_cast<char*>(nft.c_str()), const_cast<char*>("-f"), const_cast<char*>("-"), nullptr};
  char* envp[] = {nullptr};  // nft needs nothing of ours (and gets no secret by accident)
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, nft.c_str(), &actions, nullptr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(err[1]);
  if (spawned != 0) {
    ::close(in[1]);
    ::close(err[0]);
    throw std::runtime_error("cannot run " + nft + ": " + std::strerror(spawned));
  }
  // The script is a few hundred bytes: it fits the pipe, so writing before reading cannot block.
  const ssize_t wrote = ::write(in[1], script.data(), script.size());
  ::close(in[1]);
  std::string message;
  char buf[512];
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0 && message.size() < 4096;) message.append(buf, static_cast<std::size_t>(n));
  ::close(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (wrote != static_cast<ssize_t>(script.size()) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    throw std::runtime_error("nft failed (the redirect needs CAP_NET_ADMIN in this network namespace): " +
                             (message.empty() ? std::string("no message") : message));
  }
}

UserIds parse_user_ids(const std::string& text) {
  const std::size_t colon = text.find(':');
  std::uint32_t uid = 0, gid = 0;
  const std::string_view u = std::string_view(text).substr(0, colon);
  const bool ok = parse_number(u, uid) &&
                  (colon == std::string::npos ? (gid = uid, true) : parse_number(std::string_view(text).substr(colon + 1), gid));
  if (!ok) throw ConfigError("--user " + quote_for_message(text) + ": expected UID or UID:GID (numbers)");
  if (uid == 0) throw ConfigError("--user 0: the gateway's traffic is told apart by its uid; give it a uid of its own (e.g. 1337)");
  return {static_cast<uid_t>(uid), static_cast<gid_t>(gid)};
}

int run_with_redirect(const SidecarRedirect& redirect, UserIds user, const std::function<int()>& gateway) {
  if (redirect.gateway_uid != user.uid) throw ConfigError("the redirect must exclude the uid the gateway runs as");
  apply_nft(sidecar_ruleset(redirect));
  // Signals are taken here synchronously; the child unblocks them (the gateway blocks its own).
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  sigset_t old;
  ::pthread_sigmask(SIG_BLOCK, &signals, &old);
  const pid_t child = ::fork();
  if (child < 0) {
    const int e = errno;
    apply_nft(sidecar_remove_script());
    throw std::runtime_error(std::string("fork: ") + std::strerror(e));
  }
  if (child == 0) {
    const pid_t keeper = ::getppid();
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(user.gid, user.gid, user.gid) != 0 ||
        ::setresuid(user.uid, user.uid, user.uid) != 0 || ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      std::cerr << "airlock gateway: error: cannot drop to uid " << user.uid << ": " << std::strerror(errno) << "\n";
      std::_Exit(2);
    }
    // The keeper gone: stop too (the redirect stays, closed). After the uid change, which clears
    // it; a keeper that died before this line is seen by getppid.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != keeper) std::_Exit(2);
    ::prctl(PR_SET_DUMPABLE, 0);  // a uid change re-evaluates it: the values stay out of core dumps and ptrace
    int status = 2;
    try {
      status = gateway();
    } catch (const CLI::RuntimeError& e) {
      status = e.get_exit_code();
    } catch (const std::exception& e) {
      std::cerr << "airlock: error: " << e.what() << "\n";
    }
    std::cout.flush();
    std::_Exit(status);
  }
  int status = 0;
  for (;;) {
    siginfo_t info{};
    const int sig = ::sigwaitinfo(&signals, &info);
    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) ::kill(child, sig);
    const pid_t done = ::waitpid(child, &status, WNOHANG);
    if (done == child) break;
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code == 0) {
    apply_nft(sidecar_remove_script());
  } else {
    std::cerr << "airlock gateway: the gateway exited with status " << code
              << "; the redirect stays in place so the workload's traffic fails closed "
                 "(airlock gateway init-redirect --remove removes it)\n";
  }
  return code;
}

bool loopback_v6_available() {
  const int fd = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

asio::ip::udp::endpoint parse_resolver(const std::string& text, const std::string& flag) {
  std::string host = text;
  std::uint32_t port = 53;
  bool ok = true;
  const std::size_t close = text.rfind(']');
  const std::size_t colon = text.rfind(':');
  if (text.starts_with("[") && close != std::string::npos) {
    host = text.substr(1, close - 1);
    if (close + 1 < text.size()) ok = text[close + 1] == ':' && parse_number(std::string_view(text).substr(close + 2), port);
  } else if (colon != std::string::npos && text.find(':') == colon) {
    host = text.substr(0, colon);
    ok = parse_number(std::string_view(text).substr(colon + 1), port);
  }
  std::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (!ok || ec || port == 0 || port > 65535) throw ConfigError(flag + " " + quote_for_message(text) + ": expected IP[:PORT]");
  return {address, static_cast<std::uint16_t>(port)};
}

SidecarDns::SidecarDns(std::uint16_t port, const std::vector<std::string>& upstreams, const policy::Policy& policy,
                       const std::string& audit_log, gateway::LogLevel level)
    : pins_([] { return dns::PinClock::now(); }), logger_(level), audit_(audit_log) {
  dns::ForwarderOptions options;
  for (const std::string& u : upstreams) options.upstreams.push_back(parse_resolver(u, "--dns-server"));
  options.on_refused = [this](std::string_view name, dns::Outcome outcome) { record_refusal(name, outcome); };
  forwarder_ = std::make_unique<dns::Forwarder>(io_.get_executor(), options, pins_, policy);
  std::vector<asio::ip::address> addresses{asio::ip::make_address("127.0.0.1")};
  if (loopback_v6_available()) addresses.push_back(asio::ip::make_address("::1"));
  for (const auto& address : addresses) {
    std::uint16_t bound = 0;
    if (const std::error_code ec = forwarder_->listen(address, port, bound)) {
      throw ConfigError("DNS listener " + address.to_string() + " port " + std::to_string(port) + ": " + ec.message());
    }
    endpoints_.push_back(address.is_v6() ? concat("[", address.to_string(), "]:", std::to_string(bound))
                                         : concat(address.to_string(), ":", std::to_string(bound)));
  }
  thread_ = std::thread([this] { io_.run(); });
}

SidecarDns::~SidecarDns() {
  forwarder_->stop();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void record_dns_refusal(gateway::AuditLog& audit, gateway::Logger& logger, std::string_view name,
                        dns::Outcome outcome) {
  nlohmann::ordered_json r;
  r["event"] = "dns_refused";
  r["name"] = name;
  r["reason"] = dns::to_string(outcome);
  audit.write(r);
  logger.log(gateway::LogLevel::kWarn, "DNS " + std::string(name) + ": NXDOMAIN, " +
                                           (outcome == dns::Outcome::kRebinding
                                                ? "the answer pointed into private, loopback, link-local, metadata or host space"
                                                : "denied by the egress policy"));
}

void SidecarDns::record_refusal(std::string_view name, dns::Outcome outcome) {
  record_dns_refusal(audit_, logger_, name, outcome);
}

}  // namespace airlock::cli
