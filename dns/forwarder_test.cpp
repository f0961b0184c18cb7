// The forwarder against a real DNS server: dnsmasq, started here on a loopback port with test
// names (documentation addresses only). Guests are a small UDP/TCP client built on the codec.
#include "dns/forwarder.hpp"

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <airlock/errors.hpp>

namespace airlock::dns {
namespace {

using namespace std::chrono_literals;

Name name(std::string_view text) { return *Name::from_text(text); }
IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }
HostPattern pat(std::string_view text) { return HostPattern::parse(text); }

constexpr int kSomeRecords = 50;   // > 512 bytes, < 1232
constexpr int kManyRecords = 120;  // > 1232 bytes

std::uint16_t free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string query_wire(std::string_view qname, std::uint16_t qtype = type::kA, std::optional<std::uint16_t> edns = {},
                       std::uint16_t id = 0x4242) {
  Message q;
  q.header.id = id;
  q.header.set_rd(true);
  q.questions.push_back({name(qname), qtype, kClassIn});
  if (edns) {
    Record opt;
    opt.type = type::kOpt;
    opt.klass = *edns;
    q.additional.push_back(opt);
  }
  std::string wire;
  EXPECT_FALSE(build(q, wire));
  return wire;
}

// A blocking guest client with a receive timeout.
std::optional<std::string> udp_exchange(std::uint16_t port, const std::string& wire, std::chrono::milliseconds timeout = 6s) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::sendto(fd, wire.data(), wire.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  std::string buf(65535, '\0');
  const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  ::close(fd);
  if (n < 0) return std::nullopt;
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

bool read_all(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got <= 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

std::optional<std::string> tcp_exchange(std::uint16_t port, const std::string& wire) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{6, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return std::nullopt;
  }
  std::string framed(2, '\0');
  framed[0] = static_cast<char>(wire.size() >> 8);
  framed[1] = static_cast<char>(wire.size() & 0xff);
  framed += wire;
  ::send(fd, framed.data(), framed.size(), MSG_NOSIGNAL);
  unsigned char len[2];
  std::optional<std::string> out;
  if (read_all(fd, reinterpret_cast<char*>(len), 2)) {
    std::string body((std::size_t{len[0]} << 8) | len[1], '\0');
    if (read_all(fd, body.data(), body.size())) out = std::move(body);
  }
  ::close(fd);
  return out;
}

Message parsed(const std::optional<std::string>& wire) {
  Message m;
  EXPECT_TRUE(wire.has_value());
  if (wire) {
    EXPECT_FALSE(parse(*wire, m));
  }
  return m;
}

std::vector<IpAddress> addresses(const Message& m) {
  std::vector<IpAddress> out;
  for (const auto& r : m.answers) {
    if (auto a = r.address()) out.push_back(*a);
  }
  return out;
}

// dnsmasq for the whole suite.
class Upstream {
 public:
  Upstream() {
    dir_ = std::filesystem::temp_directory_path() / ("airlock-dns-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    {
      std::ofstream hosts(dir_ / "hosts");
      for (int i = 1; i <= kSomeRecords; ++i) hosts << "198.51.100." << i << " some.test.example\n";
      for (int i = 1; i <= kManyRecords; ++i) hosts << "203.0.113." << i << " many.test.example\n";
    }
    port_ = free_loopback_port();
    const std::vector<std::string> args = {
        "dnsmasq", "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
        "--addn-hosts=" + (dir_ / "hosts").string(), "--listen-address=127.0.0.1", "--bind-interfaces",
        "--port=" + std::to_string(port_), "--local-ttl=60",
        "--host-record=api.test.example,198.51.100.7,2001:db8::7",
        "--cname=alias.test.example,mid.test.example", "--cname=mid.test.example,api.test.example",
        "--host-record=rebind.test.example,10.0.0.1", "--host-record=meta.test.example,169.254.169.254",
        "--host-record=x.blocked.test.example,198.51.100.66",
        "--cname=front.test.example,x.blocked.test.example"};
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      const int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 2);
      ::execvp("dnsmasq", argv.data());
      ::execv("/usr/sbin/dnsmasq", argv.data());  // not on a non-root PATH
      ::_exit(127);
    }
    // Ready when it answers.
    for (int i = 0; i < 50 && !ready_; ++i) {
      ready_ = udp_exchange(port_, query_wire("api.test.example"), 100ms).has_value();
    }
  }
  ~Upstream() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  std::uint16_t port() const { return port_; }
  bool ready() const { return ready_; }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  bool ready_ = false;
};

Upstream* upstream = nullptr;

class ForwarderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { upstream = new Upstream(); }
  static void TearDownTestSuite() {
    delete upstream;
    upstream = nullptr;
  }

  void start(std::vector<std::string> rules = {}, ForwarderOptions options = {}) {
    ASSERT_TRUE(upstream->ready()) << "dnsmasq (dnsmasq-base, scripts/install-deps) did not start";
    policy_ = std::make_unique<policy::Policy>(policy::Policy::from_text(rules, {ip("192.0.2.53")}));
    if (options.upstreams.empty()) options.upstreams = {{asio::ip::make_address("127.0.0.1"), upstream->port()}};
    forwarder_ = std::make_unique<Forwarder>(io_.get_executor(), options, pins_, *policy_);
    ASSERT_FALSE(forwarder_->listen(asio::ip::make_address("127.0.0.1"), 0, port_));
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    if (forwarder_) forwarder_->stop();
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    forwarder_.reset();
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  PinTime clock_ = PinTime{} + 1000h;
  PinSet pins_{[this] { return clock_; }};
  std::unique_ptr<policy::Policy> policy_;
  std::unique_ptr<Forwarder> forwarder_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

TEST_F(ForwarderTest, AnswersAndPinsOverUdpAndTcp) {
  start();
  const Message a = parsed(udp_exchange(port_, query_wire("api.test.example", type::kA, {}, 0x1111)));
  EXPECT_EQ(a.header.id, 0x1111);
  EXPECT_TRUE(a.header.qr());
  EXPECT_EQ(a.header.rcode(), rcode::kNoError);
  EXPECT_EQ(addresses(a), (std::vector<IpAddress>{ip("198.51.100.7")}));
  EXPECT_TRUE(pins_.pinned_at(ip("198.51.100.7"), pat("api.test.example"), clock_));
  EXPECT_FALSE(pins_.pinned_at(ip("2001:db8::7"), pat("api.test.example"), clock_));

  const Message aaaa = parsed(tcp_exchange(port_, query_wire("api.test.example", type::kAaaa, {}, 0x2222)));
  EXPECT_EQ(aaaa.header.id, 0x2222);
  EXPECT_EQ(addresses(aaaa), (std::vector<IpAddress>{ip("2001:db8::7")}));
  EXPECT_TRUE(pins_.pinned_at(ip("2001:db8::7"), pat("api.test.example"), clock_));
  EXPECT_GE(forwarder_->stats().upstream_tcp.load(), 1u);

  // Held for at least the minimum (5 minutes), although dnsmasq gave a 60 s TTL.
  EXPECT_TRUE(pins_.pinned_at(ip("198.51.100.7"), pat("api.test.example"), clock_ + 299s));
  EXPECT_FALSE(pins_.pinned_at(ip("198.51.100.7"), pat("api.test.example"), clock_ + 301s));
}

TEST_F(ForwarderTest, PinsThroughCnameChainsGoToTheQueryName) {
  start();
  const Message a = parsed(udp_exchange(port_, query_wire("alias.test.example")));
  EXPECT_EQ(a.header.rcode(), rcode::kNoError);
  ASSERT_GE(a.answers.size(), 3u);
  EXPECT_EQ(a.answers[0].type, type::kCname);
  for (const char* n : {"alias.test.example", "*.test.example"}) {
    EXPECT_TRUE(pins_.pinned_at(ip("198.51.100.7"), pat(n), clock_)) << n;
  }
  // The chain's other names were never asked for: only the query name is credited.
  for (const char* n : {"mid.test.example", "api.test.example"}) {
    EXPECT_FALSE(pins_.pinned_at(ip("198.51.100.7"), pat(n), clock_)) << n;
  }
}

TEST_F(ForwarderTest, HardCodedAddressNeverPinned) {
  start();
  parsed(udp_exchange(port_, query_wire("api.test.example")));
  // An address no answer gave, and a given address under a name it was not given for.
  EXPECT_FALSE(pins_.pinned_at(ip("198.51.100.99"), pat("api.test.example"), clock_));
  EXPECT_FALSE(pins_.pinned_at(ip("198.51.100.7"), pat("other.test.example"), clock_));
  EXPECT_EQ(pins_.names_for(ip("198.51.100.7"), clock_), (std::vector<std::string>{"api.test.example"}));
}

TEST_F(ForwarderTest, DomainRuleAllowsOnlyAfterTheLookup) {
  start({"allow@api.test.example:tcp:443"});
  const policy::Flow flow{ip("198.51.100.7"), policy::Protocol::kTcp, 443, "api.test.example"};
  // A hard-coded address with a matching SNI: not pinned, so the domain rule does not match.
  EXPECT_EQ(policy_->decide(flow, &pins_).action, policy::Action::kDeny);
  // A lookup of a name whose chain leads there pins the alias, not api.test.example.
  parsed(udp_exchange(port_, query_wire("alias.test.example")));
  EXPECT_EQ(policy_->decide(flow, &pins_).action, policy::Action::kDeny);
  parsed(udp_exchange(port_, query_wire("api.test.example")));
  EXPECT_EQ(policy_->decide(flow, &pins_).action, policy::Action::kAllow);
  EXPECT_EQ(policy_->decide(flow, &pins_).rule, 0u);
  // The same address with another SNI, or the pin once expired: denied again.
  EXPECT_EQ(policy_->decide({flow.destination, flow.protocol, flow.port, "other.test.example"}, &pins_).action,
            policy::Action::kDeny);
  clock_ += 301s;
  EXPECT_EQ(policy_->decide(flow, &pins_).action, policy::Action::kDeny);
}

TEST_F(ForwarderTest, RebindingAnswersBecomeNxdomain) {
  start();
  for (const char* n : {"rebind.test.example", "meta.test.example"}) {
    const Message m = parsed(udp_exchange(port_, query_wire(n, type::kA, {}, 0x3333)));
    EXPECT_EQ(m.header.id, 0x3333);
    EXPECT_EQ(m.header.rcode(), rcode::kNxDomain) << n;
    EXPECT_TRUE(m.answers.empty());
    ASSERT_EQ(m.questions.size(), 1u);
    EXPECT_EQ(m.questions[0].name, name(n));
  }
  EXPECT_TRUE(pins_.names_for(ip("10.0.0.1"), clock_).empty());
  EXPECT_TRUE(pins_.names_for(ip("169.254.169.254"), clock_).empty());
  EXPECT_EQ(forwarder_->stats().rebinding.load(), 2u);
  // Over TCP too.
  EXPECT_EQ(parsed(tcp_exchange(port_, query_wire("rebind.test.example"))).header.rcode(), rcode::kNxDomain);
}

TEST_F(ForwarderTest, ExplicitAddressRuleLetsAPrivateAnswerThrough) {
  start({"allow@10.0.0.0/24:tcp:443"});
  const Message m = parsed(udp_exchange(port_, query_wire("rebind.test.example")));
  EXPECT_EQ(m.header.rcode(), rcode::kNoError);
  EXPECT_EQ(addresses(m), (std::vector<IpAddress>{ip("10.0.0.1")}));
  EXPECT_TRUE(pins_.pinned_at(ip("10.0.0.1"), pat("rebind.test.example"), clock_));
  // The metadata address is still rewritten.
  EXPECT_EQ(parsed(udp_exchange(port_, query_wire("meta.test.example"))).header.rcode(), rcode::kNxDomain);
}

TEST_F(ForwarderTest, DeniedDomainsGetNxdomainWithoutAskingUpstream) {
  start({"deny@*.blocked.test.example"});
  const Message m = parsed(udp_exchange(port_, query_wire("x.blocked.test.example", type::kA, 1232)));
  EXPECT_EQ(m.header.rcode(), rcode::kNxDomain);
  EXPECT_TRUE(m.answers.empty());
  ASSERT_NE(m.opt(), nullptr);
  EXPECT_EQ(forwarder_->stats().upstream_udp.load(), 0u);
  // Reached through a CNAME from an allowed name: the chain is denied too.
  const Message f = parsed(udp_exchange(port_, query_wire("front.test.example")));
  EXPECT_EQ(f.header.rcode(), rcode::kNxDomain);
  EXPECT_TRUE(pins_.names_for(ip("198.51.100.66"), clock_).empty());
  EXPECT_EQ(forwarder_->stats().denied_domain.load(), 2u);
}

TEST_F(ForwarderTest, RefusalsAreReportedWithTheQueryName) {
  std::mutex mutex;
  std::vector<std::pair<std::string, Outcome>> refused;
  ForwarderOptions options;
  options.on_refused = [&](std::string_view n, Outcome o) {
    std::lock_guard lock(mutex);
    refused.emplace_back(std::string(n), o);
  };
  start({"deny@*.blocked.test.example"}, options);
  parsed(udp_exchange(port_, query_wire("api.test.example")));
  parsed(udp_exchange(port_, query_wire("x.blocked.test.example")));
  parsed(udp_exchange(port_, query_wire("front.test.example")));  // a CNAME into the denied suffix
  parsed(tcp_exchange(port_, query_wire("rebind.test.example")));
  forwarder_->stop();
  std::lock_guard lock(mutex);
  EXPECT_EQ(refused, (std::vector<std::pair<std::string, Outcome>>{{"x.blocked.test.example", Outcome::kDeniedDomain},
                                                                    {"front.test.example", Outcome::kDeniedDomain},
                                                                    {"rebind.test.example", Outcome::kRebinding}}));
}

TEST_F(ForwarderTest, TruncatedUpstreamAnswerIsRetriedOverTcp) {
  start();
  // No EDNS: the guest takes 512 bytes. dnsmasq truncates, the forwarder asks again over TCP,
  // pins the full answer and tells the guest to use TCP.
  const Message udp_answer = parsed(udp_exchange(port_, query_wire("some.test.example")));
  EXPECT_TRUE(udp_answer.header.tc());
  EXPECT_TRUE(udp_answer.answers.empty());
  EXPECT_EQ(udp_answer.questions.size(), 1u);
  EXPECT_EQ(forwarder_->stats().tcp_retries.load(), 1u);
  EXPECT_EQ(forwarder_->stats().truncated.load(), 1u);
  for (int i = 1; i <= kSomeRecords; ++i) {
    EXPECT_TRUE(pins_.pinned_at(IpAddress::v4(198, 51, 100, static_cast<std::uint8_t>(i)), pat("some.test.example"), clock_)) << i;
  }
  // The guest's TCP retry gets everything.
  const Message tcp_answer = parsed(tcp_exchange(port_, query_wire("some.test.example")));
  EXPECT_FALSE(tcp_answer.header.tc());
  EXPECT_EQ(addresses(tcp_answer).size(), static_cast<std::size_t>(kSomeRecords));
}

TEST_F(ForwarderTest, GuestEdnsSizeIsRespected) {
  start();
  // 1232 bytes fit the 50-record answer: no truncation, no TCP.
  const auto some = udp_exchange(port_, query_wire("some.test.example", type::kA, 1232));
  const Message s = parsed(some);
  EXPECT_FALSE(s.header.tc());
  EXPECT_EQ(addresses(s).size(), static_cast<std::size_t>(kSomeRecords));
  EXPECT_GT(some->size(), 512u);
  EXPECT_EQ(forwarder_->stats().tcp_retries.load(), 0u);
  // 120 records do not fit 1232: TC toward the guest, and the reply is within its size.
  const auto many = udp_exchange(port_, query_wire("many.test.example", type::kA, 1232));
  const Message m = parsed(many);
  EXPECT_TRUE(m.header.tc());
  EXPECT_LE(many->size(), 1232u);
  // With 4096 they fit.
  const auto big = udp_exchange(port_, query_wire("many.test.example", type::kA, 4096));
  const Message b = parsed(big);
  EXPECT_FALSE(b.header.tc());
  EXPECT_EQ(addresses(b).size(), static_cast<std::size_t>(kManyRecords));
  EXPECT_GT(big->size(), 1232u);
  EXPECT_LE(big->size(), 4096u);
}

TEST_F(ForwarderTest, MalformedQueriesGetFormerrOrNothing) {
  start();
  // A header and a name that runs off the end.
  std::string bad = query_wire("api.test.example");
  bad.resize(bad.size() - 6);
  const Message m = parsed(udp_exchange(port_, bad));
  EXPECT_EQ(m.header.rcode(), rcode::kFormErr);
  EXPECT_EQ(m.header.id, 0x4242);
  // Shorter than a header: dropped (no reply within the timeout).
  EXPECT_FALSE(udp_exchange(port_, "abc", 300ms).has_value());
  // A response sent as a query: dropped.
  std::string response = query_wire("api.test.example");
  response[2] = static_cast<char>(response[2] | 0x80);
  EXPECT_FALSE(udp_exchange(port_, response, 300ms).has_value());
  EXPECT_EQ(forwarder_->stats().upstream_udp.load(), 0u);
}

TEST_F(ForwarderTest, UnansweredUpstreamGivesServfailAfterEveryTry) {
  // A UDP socket that never reads: each try waits its full timeout.
  const int sink = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(sink, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(sink, reinterpret_cast<sockaddr*>(&a), &len);
  ForwarderOptions options;
  options.upstreams = {{asio::ip::make_address("127.0.0.1"), ntohs(a.sin_port)}};
  options.try_timeout = 300ms;
  start({}, options);
  const auto before = std::chrono::steady_clock::now();
  const Message m = parsed(udp_exchange(port_, query_wire("api.test.example")));
  const auto took = std::chrono::steady_clock::now() - before;
  EXPECT_EQ(m.header.rcode(), rcode::kServFail);
  EXPECT_EQ(forwarder_->stats().upstream_udp.load(), 2u);
  EXPECT_GE(took, 600ms);
  EXPECT_LT(took, 5s);  // answered, before the client's own 6 s (was 3 s: a loaded machine's stall)
  ::close(sink);
}

TEST_F(ForwarderTest, DestroyedWhileQueriesAreInFlight) {
  // Queries wait on an upstream that never answers; the forwarder and its policy go away while
  // the io_context keeps running. The pending tries finish without touching either.
  const int sink = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(sink, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(sink, reinterpret_cast<sockaddr*>(&a), &len);
  ForwarderOptions options;
  options.upstreams = {{asio::ip::make_address("127.0.0.1"), ntohs(a.sin_port)}};
  options.try_timeout = 200ms;
  start({}, options);
  std::vector<std::thread> guests;
  for (int i = 0; i < 4; ++i) {
    guests.emplace_back([this, i] { udp_exchange(port_, query_wire("api.test.example", type::kA, {}, static_cast<std::uint16_t>(i)), 1s); });
  }
  std::this_thread::sleep_for(100ms);
  forwarder_.reset();
  policy_.reset();
  for (auto& g : guests) g.join();  // no answer: the forwarder is gone
  std::this_thread::sleep_for(500ms);  // the in-flight tries time out on the io thread
  EXPECT_EQ(pins_.size(), 0u);
  ::close(sink);
}

TEST_F(ForwarderTest, SecondResolverUsedWhenTheFirstFails) {
  ForwarderOptions options;
  // The first resolver refuses (nothing listens), the second is dnsmasq.
  options.upstreams = {{asio::ip::make_address("127.0.0.1"), free_loopback_port()},
                       {asio::ip::make_address("127.0.0.1"), upstream->port()}};
  options.try_timeout = 500ms;
  start({}, options);
  const Message m = parsed(udp_exchange(port_, query_wire("api.test.example")));
  EXPECT_EQ(m.header.rcode(), rcode::kNoError);
  EXPECT_EQ(addresses(m), (std::vector<IpAddress>{ip("198.51.100.7")}));
}

TEST(ResolvConf, ReadsNameservers) {
  const auto path = std::filesystem::temp_directory_path() / ("airlock-resolv-" + std::to_string(::getpid()));
  {
    std::ofstream f(path);
    f << "# comment\nsearch example\nnameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver bogus\noptions ndots:1\n";
  }
  const auto servers = read_resolv_conf(path.string());
  ASSERT_EQ(servers.size(), 2u);
  EXPECT_EQ(servers[0], asio::ip::udp::endpoint(asio::ip::make_address("192.0.2.1"), 53));
  EXPECT_EQ(servers[1], asio::ip::udp::endpoint(asio::ip::make_address("2001:db8::53"), 53));
  {
    std::ofstream f(path);
    f << "search example\n";
  }
  EXPECT_THROW(read_resolv_conf(path.string()), ConfigError);
  std::filesystem::remove(path);
  EXPECT_THROW(read_resolv_conf(path.string()), ConfigError);
}

}  // namespace
}  // namespace airlock::dns
