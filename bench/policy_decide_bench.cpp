// Policy::decide() cost: the gateway asks it once per connection (and per address a CONNECT
// resolves). Against a baseline in the same run: a TCP connect to a loopback listener, the
// least a new connection costs anyway.
#include <benchmark/benchmark.h>

#include "policy/policy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace airlock;

// Pins as a hash lookup would answer them: the address 198.51.100.7 is pinned to api.example.com.
class OnePin : public secrets::PinQuery {
 public:
  bool pinned(const IpAddress& ip, const HostPattern& pattern) const override {
    return ip == *IpAddress::parse("198.51.100.7") && pattern.matches("api.example.com");
  }
};

policy::Flow flow(const char* ip, const char* sni) {
  return policy::Flow{*IpAddress::parse(ip), policy::Protocol::kTcp, 443, sni};
}

void BM_DecideDefaultPolicyPublic(benchmark::State& state) {
  const policy::Policy p({}, {*IpAddress::parse("192.0.2.53")});
  const auto f = flow("8.8.8.8", "dns.google");
  for (auto _ : state) benchmark::DoNotOptimize(p.decide(f, nullptr));
}
BENCHMARK(BM_DecideDefaultPolicyPublic);

// 50 rules (deny domains, CIDRs, groups), the match is the last one: a domain allow with a pin.
void BM_Decide50RulesDomainLast(benchmark::State& state) {
  std::vector<std::string> rules;
  for (int i = 0; i < 20; ++i) rules.push_back("deny@*.blocked" + std::to_string(i) + ".example");
  for (int i = 0; i < 20; ++i) rules.push_back("deny@10." + std::to_string(i) + ".0.0/16");
  for (const char* g : {"metadata", "link-local", "loopback", "multicast", "private"}) rules.push_back(std::string("deny@") + g);
  for (int i = 0; i < 4; ++i) rules.push_back("allow@203.0.113." + std::to_string(i) + ":tcp:443");
  rules.push_back("allow@api.example.com:tcp:443");
  const policy::Policy p = policy::Policy::from_text(rules, {*IpAddress::parse("192.0.2.53")}, false);
  const OnePin pins;
  const auto f = flow("198.51.100.7", "api.example.com");
  if (!p.decide(f, &pins).allowed()) std::abort();
  for (auto _ : state) benchmark::DoNotOptimize(p.decide(f, &pins));
}
BENCHMARK(BM_Decide50RulesDomainLast);

void BM_BaselineLoopbackConnect(benchmark::State& state) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listener, 4096) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    std::abort();
  for (auto _ : state) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) std::abort();
    const int accepted = ::accept(listener, nullptr, nullptr);
    ::close(accepted);
    ::close(fd);
  }
  ::close(listener);
}
BENCHMARK(BM_BaselineLoopbackConnect);

}  // namespace

BENCHMARK_MAIN();
