// WebSocket relay throughput (issue 14): 1 MiB of JSON-like server messages as the guest reads
// them, in 16 KiB reads, through MessageRelay (parse, reassemble, scrub with 1 secret, frame
// again), plain and with permessage-deflate (inflate, scrub, deflate again; context takeover on
// and off); against the old opaque path (the scrubber alone over the raw frame bytes) in the same
// run. Arg: message size in bytes. Figures are MiB/s of message payload.
#include <http/response_scrubber.hpp>
#include <http/websocket.hpp>
#include <http/websocket_deflate.hpp>
#include <http/websocket_relay.hpp>

#include <benchmark/benchmark.h>

#include "bench/bodies.hpp"
#include "bench/scrub_forms.hpp"

#include <map>
#include <string>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::http;
using namespace airlock::http::websocket;

constexpr std::size_t kTotal = 1u << 20;
constexpr std::size_t kRead = 16u << 10;

const std::string& plain() {
  static const std::string t = bench::json_like_body(kTotal);
  return t;
}

// kind 0: uncompressed; 1: deflate with context takeover; 2: deflate, no context takeover.
const std::string& wire(int kind, std::size_t message) {
  static std::map<std::pair<int, std::size_t>, std::string> cache;
  std::string& w = cache[{kind, message}];
  if (!w.empty()) return w;
  MessageDeflater d(15, kind == 2);
  for (std::size_t at = 0; at < plain().size(); at += message) {
    const std::string_view m = std::string_view(plain()).substr(at, message);
    if (kind == 0) {
      write_frame(w, true, false, Opcode::kText, m, nullptr);
    } else {
      std::string z;
      d.deflate(m, z);
      write_frame(w, true, true, Opcode::kText, z, nullptr);
    }
  }
  return w;
}

struct Scrub final : MessageFilter {
  ResponseScrubber scrubber{bench::one_secret_forms()};
  std::string out;
  bool on_message(Opcode, std::string& payload) override {
    out.clear();
    scrubber.feed(payload, out);
    scrubber.flush(out);
    payload.swap(out);
    return true;
  }
};

void BM_OpaqueScrub(benchmark::State& state) {
  const std::string& in = wire(0, static_cast<std::size_t>(state.range(0)));
  std::string out;
  out.reserve(in.size() + 4096);
  for (auto _ : state) {
    out.clear();
    ResponseScrubber s(bench::one_secret_forms());
    for (std::size_t at = 0; at < in.size(); at += kRead) s.feed(std::string_view(in).substr(at, kRead), out);
    s.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain().size()));
}
BENCHMARK(BM_OpaqueScrub)->ArgName("message")->Arg(1024)->Arg(16384);

void relay(benchmark::State& state, int kind) {
  const std::string& in = wire(kind, static_cast<std::size_t>(state.range(0)));
  DeflateParams params;
  params.server_no_context_takeover = kind == 2;
  std::string out;
  out.reserve(in.size() + 65536);
  for (auto _ : state) {
    out.clear();
    MessageRelay r(Sender::kServer, {}, kind == 0 ? nullptr : &params, 100, nullptr);
    Scrub f;
    for (std::size_t at = 0; at < in.size(); at += kRead)
      if (r.feed(std::string_view(in).substr(at, kRead), out, f) != MessageRelay::Status::kOk) state.SkipWithError("relay");
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain().size()));
}

void BM_RelayPlain(benchmark::State& state) { relay(state, 0); }
void BM_RelayDeflate(benchmark::State& state) { relay(state, 1); }
void BM_RelayDeflateNoTakeover(benchmark::State& state) { relay(state, 2); }
BENCHMARK(BM_RelayPlain)->ArgName("message")->Arg(1024)->Arg(16384);
BENCHMARK(BM_RelayDeflate)->ArgName("message")->Arg(1024)->Arg(16384);
BENCHMARK(BM_RelayDeflateNoTakeover)->ArgName("message")->Arg(1024)->Arg(16384);

}  // namespace

BENCHMARK_MAIN();
