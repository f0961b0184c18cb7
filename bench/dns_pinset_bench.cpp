// PinSet::pinned() cost with 10k (address, name) pins held: the lookup every intercepted request
// makes for gate 2 (secrets-spec §3). Hits and misses, exact and wildcard patterns.
#include <benchmark/benchmark.h>

#include "dns/pin_set.hpp"

#include <cstdlib>
#include <string>

namespace {

using namespace airlock;

const dns::PinTime kNow = dns::PinTime{} + std::chrono::hours(1000);

IpAddress nth(int i) {
  return IpAddress::v4(198, 51, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i & 0xff));
}

dns::PinSet& pins10k() {
  static dns::PinSet pins([] { return kNow; }, dns::PinSetOptions{.max_entries = 20000});
  static const bool filled = [] {
    // 5000 addresses, two names each (a query name and its CNAME target).
    for (int i = 0; i < 5000; ++i) {
      pins.pin(nth(i), "svc" + std::to_string(i) + ".example.com", std::chrono::seconds(3600), kNow);
      pins.pin(nth(i), "edge" + std::to_string(i) + ".cdn.example.net", std::chrono::seconds(3600), kNow);
    }
    return pins.size() == 10000;
  }();
  if (!filled) std::abort();
  return pins;
}

void BM_PinnedExactHit(benchmark::State& state) {
  auto& pins = pins10k();
  const HostPattern pattern = HostPattern::parse("svc1234.example.com");
  const IpAddress ip = nth(1234);
  for (auto _ : state) benchmark::DoNotOptimize(pins.pinned_at(ip, pattern, kNow));
}
BENCHMARK(BM_PinnedExactHit);

void BM_PinnedWildcardHit(benchmark::State& state) {
  auto& pins = pins10k();
  const HostPattern pattern = HostPattern::parse("*.cdn.example.net");
  const IpAddress ip = nth(4321);
  for (auto _ : state) benchmark::DoNotOptimize(pins.pinned_at(ip, pattern, kNow));
}
BENCHMARK(BM_PinnedWildcardHit);

void BM_PinnedMissUnknownAddress(benchmark::State& state) {
  auto& pins = pins10k();
  const HostPattern pattern = HostPattern::parse("api.example.com");
  const IpAddress ip = IpAddress::v4(203, 0, 113, 9);
  for (auto _ : state) benchmark::DoNotOptimize(pins.pinned_at(ip, pattern, kNow));
}
BENCHMARK(BM_PinnedMissUnknownAddress);

void BM_PinnedMissWrongName(benchmark::State& state) {
  auto& pins = pins10k();
  const HostPattern pattern = HostPattern::parse("api.example.com");
  const IpAddress ip = nth(77);
  for (auto _ : state) benchmark::DoNotOptimize(pins.pinned_at(ip, pattern, kNow));
}
BENCHMARK(BM_PinnedMissWrongName);

// Through the PinQuery interface (virtual call plus the clock function), as the engine calls it.
void BM_PinnedViaPinQuery(benchmark::State& state) {
  const secrets::PinQuery& pins = pins10k();
  const HostPattern pattern = HostPattern::parse("svc1234.example.com");
  const IpAddress ip = nth(1234);
  for (auto _ : state) benchmark::DoNotOptimize(pins.pinned(ip, pattern));
}
BENCHMARK(BM_PinnedViaPinQuery);

void BM_PinnedContended(benchmark::State& state) {
  auto& pins = pins10k();
  const HostPattern pattern = HostPattern::parse("svc1234.example.com");
  const IpAddress ip = nth(1234);
  for (auto _ : state) benchmark::DoNotOptimize(pins.pinned_at(ip, pattern, kNow));
}
BENCHMARK(BM_PinnedContended)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
