// Response decoding throughput: 1 MiB of JSON-like text as the guest reads it, arriving
// gzip-, br- or zstd-compressed (Content-Length) or chunked identity, in 16 KiB reads, through
// ResponseStream (framing read, de-chunk, decode, scrub with 1 secret, re-chunk); against the
// scrubber alone on the plain bytes, and the stream over the same plain bytes with a
// Content-Length (nothing to decode), and the path before issue 14 (BM_ScrubFramedThenRead), in
// the same run. Figures are MiB/s of decoded body.
#include <http/response_decoder.hpp>

#include <benchmark/benchmark.h>

#include "bench/bodies.hpp"
#include "bench/scrub_forms.hpp"

#include <string>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::http;

constexpr std::size_t kBody = 1u << 20;
constexpr std::size_t kRead = 16u << 10;

const std::string& plain() {
  static const std::string t = bench::json_like_body(kBody);
  return t;
}

// Arg: 0 chunked identity, 1 gzip, 2 br, 3 zstd, 4 identity with a length.
struct Wire {
  std::string head, body;
};
const Wire& wire(int kind) {
  static const std::vector<Wire> wires = [] {
    std::vector<Wire> w;
    std::string chunked;
    for (std::size_t at = 0; at < plain().size(); at += 8000) append_chunk(std::string_view(plain()).substr(at, 8000), chunked);
    append_last_chunk("", chunked);
    w.push_back({"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked});
    for (Coding c : {Coding::kGzip, Coding::kBrotli, Coding::kZstd}) {
      std::string enc;
      encode_all({c}, plain(), enc);
      w.push_back({"HTTP/1.1 200 OK\r\nContent-Encoding: " + std::string(coding_name(c)) +
                       "\r\nContent-Length: " + std::to_string(enc.size()) + "\r\n\r\n",
                   enc});
    }
    w.push_back({"HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(plain().size()) + "\r\n\r\n", plain()});
    return w;
  }();
  return wires[static_cast<std::size_t>(kind)];
}

void BM_ScrubOnly(benchmark::State& state) {
  const std::string& in = plain();
  std::string out;
  out.reserve(kBody + 4096);
  for (auto _ : state) {
    out.clear();
    ResponseScrubber s(bench::one_secret_forms());
    for (std::size_t at = 0; at < in.size(); at += kRead) s.feed(std::string_view(in).substr(at, kRead), out);
    s.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_ScrubOnly);

// The path before issue 14, for the same wires: the scrubber over the raw stream, a reader only
// observing the framing of what it wrote (coded bodies were blocked, chunks scrubbed framed).
void BM_ScrubFramedThenRead(benchmark::State& state) {
  const Wire& w = wire(static_cast<int>(state.range(0)));
  const std::string in = w.head + w.body;
  std::string out;
  out.reserve(kBody + 65536);
  for (auto _ : state) {
    out.clear();
    ResponseScrubber s(bench::one_secret_forms());
    ResponseReader reader;
    reader.expect({});
    for (std::size_t at = 0; at < in.size(); at += kRead) {
      const std::size_t from = out.size();
      s.feed(std::string_view(in).substr(at, kRead), out);
      std::string_view piece = std::string_view(out).substr(from);
      while (!piece.empty()) {
        std::size_t used = 0;
        if (reader.feed(piece, used) == ResponseReader::Event::kError) state.SkipWithError("framing");
        piece.remove_prefix(used);
      }
    }
    s.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain().size()));
}
BENCHMARK(BM_ScrubFramedThenRead)->ArgName("coding")->Arg(0)->Arg(4);

// Feeds one read to the stream as the gateway does, until the stream has used all of it.
void feed_all(ResponseStream& s, std::string_view piece, std::string& out, benchmark::State& state) {
  while (!piece.empty()) {
    std::size_t used = 0;
    if (s.feed(piece, used, out) == ResponseStream::Event::kError) state.SkipWithError("decode");
    piece.remove_prefix(used);
  }
}

void BM_DecodeAndScrub(benchmark::State& state) {
  const Wire& w = wire(static_cast<int>(state.range(0)));
  const std::string in = w.head + w.body;
  std::string out;
  out.reserve(kBody + 65536);
  for (auto _ : state) {
    out.clear();
    ResponseStream s(&bench::one_secret_forms());
    s.expect({});
    s.undo_codings();
    for (std::size_t at = 0; at < in.size(); at += kRead) {
      feed_all(s, std::string_view(in).substr(at, kRead), out, state);
    }
    s.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain().size()));
}
BENCHMARK(BM_DecodeAndScrub)->ArgName("coding")->DenseRange(0, 4);

// The keep-alive bench's response (scripts/bench: nginx's /small, a 100-byte body with a
// Content-Length) on one kept-alive stream, scrubbed for the bench's 10 secrets (40-byte values
// sharing a 15-byte prefix), one read and one flush per response, as the gateway does. For
// instruction counts (callgrind: ResponseStream::feed and flush per call) more than for time.
const ScrubForms& bench_forms() {
  static const ScrubForms f = [] {
    std::vector<SecretBinding> s;
    for (int i = 0; i < 10; ++i) {
      const std::string v = "bench-fake-key-" + std::to_string(i) + "-" + std::string("0f3a9c2e71b4d8056e1c9a3b").substr(i, 24 - i) +
                            std::string("5d2e7a9b0c").substr(0, i);
      s.push_back(SecretBuilder().env("BENCH_KEY_" + std::to_string(i)).value(v).allow_host("bench.example").build());
    }
    return ScrubForms(s);
  }();
  return f;
}

void BM_KeepAliveSmallResponse(benchmark::State& state) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Tue, 01 Dec 2026 21:00:00 GMT\r\n"
      "Content-Type: application/octet-stream\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n"
      "small-body-of-exactly-one-hundred-bytes-for-the-keep-alive-and-new-connection-scenarios-...........\n";
  ResponseStream s(&bench_forms());
  s.undo_codings();
  std::string out;
  for (auto _ : state) {
    out.clear();
    s.expect({});
    feed_all(s, response, out, state);
    s.flush(out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out.size() != response.size()) state.SkipWithError("output length differs from input");
}
BENCHMARK(BM_KeepAliveSmallResponse);

}  // namespace

BENCHMARK_MAIN();
