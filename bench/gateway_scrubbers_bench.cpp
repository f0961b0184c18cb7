// The response side across a reload (issue 17): 1 MiB of JSON-like text in 16 KiB reads through
// one ResponseScrubber, through ResponseScrubbers with one snapshot (every connection without a
// reload in flight), and with two (a response during a rotation: old and new values). One made-up
// secret per snapshot, absent from the body.
#include <gateway/response_scrubbers.hpp>

#include <benchmark/benchmark.h>

#include "bench/bodies.hpp"

#include <memory>
#include <string>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::gateway;

constexpr std::size_t kBody = 1u << 20;
constexpr std::size_t kRead = 16u << 10;

std::shared_ptr<const SecretsSnapshot> snapshot(std::uint64_t generation, const std::string& value) {
  auto s = std::make_shared<SecretsSnapshot>();
  std::vector<SecretBinding> secrets;
  secrets.push_back(SecretBuilder().env("KEY").value(value).allow_host("api.example.com").build());
  s->set = std::make_shared<secrets::SecretSet>(std::move(secrets), ViolationAction::kUnset);
  s->scrub_forms.emplace(s->set->secrets());
  s->generation = generation;
  return s;
}

const std::string& body() {
  static const std::string b = bench::words_body(
      {"{\"id\":", "12345,", "\"name\":", "\"value\",", "\"url\":", "\"https:\\/\\/x.example\\/a\",", "true,", "null}",
       "[1,2,3]", "lorem", "ipsum", "dolor", "sit", "amet\n", "Zm9vYmFy", "=="},
      kBody);
  return b;
}

const std::shared_ptr<const SecretsSnapshot>& old_snapshot() {
  static const auto s = snapshot(1, "+/old-FAKE-3kq9Vd81mZpQ0aLr7xYt2Bn4");
  return s;
}
const std::shared_ptr<const SecretsSnapshot>& new_snapshot() {
  static const auto s = snapshot(2, "+/new-FAKE-Hw5Ee6Rr2Tt8Yy0Uu3Ii9Oo1");
  return s;
}

void BM_OneScrubber(benchmark::State& state) {
  const std::string& in = body();
  std::string out;
  out.reserve(kBody);
  for (auto _ : state) {
    out.clear();
    http::ResponseScrubber scrubber(*old_snapshot()->scrub_forms);
    for (std::size_t at = 0; at < in.size(); at += kRead) scrubber.feed(std::string_view(in).substr(at, kRead), out);
    scrubber.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_OneScrubber);

// Arg: snapshots kept (1: no rotation in flight, 2: during one).
void BM_Scrubbers(benchmark::State& state) {
  const std::string& in = body();
  std::string out;
  out.reserve(kBody);
  for (auto _ : state) {
    out.clear();
    ResponseScrubbers scrubbers;
    scrubbers.keep(old_snapshot());
    if (state.range(0) == 2) scrubbers.keep(new_snapshot());
    for (std::size_t at = 0; at < in.size(); at += kRead) scrubbers.feed(std::string_view(in).substr(at, kRead), out);
    scrubbers.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out.size() != in.size()) state.SkipWithError("output length differs from input");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_Scrubbers)->ArgName("snapshots")->Arg(1)->Arg(2);

}  // namespace

BENCHMARK_MAIN();
