// Response scrubber throughput: 1 MiB of random bytes and of JSON-like text, fed in 16 KiB reads,
// with 1 and 50 secrets (none of them present), against memcpy of the same bytes in the same
// reads. Values are made up; each has '+' and '/', so it has JSON and percent forms too.
#include <http/response_scrubber.hpp>

#include <benchmark/benchmark.h>

#include "bench/bodies.hpp"

#include <random>
#include <string>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::http;

constexpr std::size_t kBody = 1u << 20;
constexpr std::size_t kRead = 16u << 10;

const ScrubForms& forms(int n) {
  static const auto make = [](int count) {
    std::mt19937 rng(3);
    const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::vector<SecretBinding> secrets;
    for (int i = 0; i < count; ++i) {
      std::string v = "+/";
      while (v.size() < 40) v += alphabet[rng() % alphabet.size()];
      secrets.push_back(SecretBuilder().env("KEY" + std::to_string(i)).value(v).allow_host("api.example.com").build());
    }
    return ScrubForms(secrets);
  };
  static const ScrubForms one = make(1), fifty = make(50);
  return n == 1 ? one : fifty;
}

std::string text_body() {
  return bench::words_body({"{\"id\":", "12345,", "\"name\":", "\"value\",", "\"url\":", "\"https:\\/\\/x.example\\/a\",",
                          "true,", "null}", "[1,2,3]", "lorem", "ipsum", "dolor", "sit", "amet\n", "Zm9vYmFy", "=="}, kBody);
}

std::string random_body() { return bench::random_body(kBody); }

const std::string& body(bool text) {
  static const std::string t = text_body(), r = random_body();
  return text ? t : r;
}

// Arg 0: 0 random, 1 JSON-like text.
void BM_Memcpy(benchmark::State& state) {
  const std::string& in = body(state.range(0) == 1);
  std::string out;
  out.reserve(kBody);
  for (auto _ : state) {
    out.clear();
    for (std::size_t at = 0; at < in.size(); at += kRead) out.append(std::string_view(in).substr(at, kRead));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_Memcpy)->ArgName("text")->Arg(0)->Arg(1);

// Args: text (as above), secrets.
void BM_Scrub(benchmark::State& state) {
  const std::string& in = body(state.range(0) == 1);
  const ScrubForms& f = forms(static_cast<int>(state.range(1)));
  std::string out;
  out.reserve(kBody);
  for (auto _ : state) {
    out.clear();
    ResponseScrubber scrubber(f);
    for (std::size_t at = 0; at < in.size(); at += kRead) scrubber.feed(std::string_view(in).substr(at, kRead), out);
    scrubber.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out.size() != in.size()) state.SkipWithError("output length differs from input");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_Scrub)->ArgNames({"text", "secrets"})->ArgsProduct({{0, 1}, {1, 50}});

}  // namespace

BENCHMARK_MAIN();
