// Request parser throughput: small header-only requests (requests/s) and a 1 MiB Content-Length
// body streamed in 16 KiB pieces (bytes/s), next to a memcpy of the same bytes.
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>
#include <vector>

#include "http/request_parser.hpp"

namespace {

using airlock::http::FramingKind;
using airlock::http::ParseError;
using airlock::http::RequestHead;
using airlock::http::RequestParser;
using airlock::http::RequestSink;

// Touches what it is given, as a forwarding sink would, without copying.
struct CountingSink : RequestSink {
  std::size_t heads = 0, body = 0, framing = 0, ends = 0;
  void on_head(RequestHead& head) override {
    heads += head.fields.size();
    benchmark::DoNotOptimize(head.raw.data());
  }
  void on_body(std::string_view data) override {
    body += data.size();
    benchmark::DoNotOptimize(data.data());
  }
  void on_framing(FramingKind, std::string_view raw) override { framing += raw.size(); }
  void on_message_end() override { ++ends; }
};

std::string small_request() {
  return "GET /api/v1/items?id=12345&sort=asc HTTP/1.1\r\n"
         "Host: api.example.com\r\n"
         "User-Agent: airlock-bench/1.0\r\n"
         "Accept: application/json\r\n"
         "Accept-Encoding: gzip, deflate\r\n"
         "Authorization: Bearer PLACEHOLDER_TOKEN_0123\r\n"
         "X-Request-Id: 7b1e9f3c-6a2d-4e8b\r\n"
         "Cookie: session=abcdef0123456789; theme=dark\r\n"
         "Connection: keep-alive\r\n"
         "\r\n";
}

void BM_SmallRequest(benchmark::State& state) {
  const std::string req = small_request();
  RequestParser parser;  // one keep-alive connection: requests back to back
  CountingSink sink;
  for (auto _ : state) {
    const std::size_t n = parser.parse(req, sink);
    if (n != req.size() || parser.error() != ParseError::kNone) state.SkipWithError("parse failed");
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * req.size()));
  state.counters["request_bytes"] = static_cast<double>(req.size());
}
BENCHMARK(BM_SmallRequest);

void BM_SmallRequestMemcpy(benchmark::State& state) {
  const std::string req = small_request();
  std::string dst(req.size(), '\0');
  for (auto _ : state) {
    std::memcpy(dst.data(), req.data(), req.size());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * req.size()));
}
BENCHMARK(BM_SmallRequestMemcpy);

constexpr std::size_t kBody = 1 << 20;
constexpr std::size_t kPiece = 16 * 1024;

void BM_ContentLengthBody(benchmark::State& state) {
  const std::string head = "POST /upload HTTP/1.1\r\nHost: a.example\r\nContent-Length: " + std::to_string(kBody) +
                           "\r\n\r\n";
  const std::string body(kBody, 'x');
  RequestParser parser;
  CountingSink sink;
  for (auto _ : state) {
    parser.parse(head, sink);
    for (std::size_t off = 0; off < kBody; off += kPiece) {
      parser.parse(std::string_view(body).substr(off, kPiece), sink);
    }
    if (parser.error() != ParseError::kNone || !parser.at_message_boundary()) state.SkipWithError("parse failed");
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBody));
}
BENCHMARK(BM_ContentLengthBody);

void BM_ContentLengthBodyMemcpy(benchmark::State& state) {
  const std::string body(kBody, 'x');
  std::vector<char> dst(kPiece);
  for (auto _ : state) {
    for (std::size_t off = 0; off < kBody; off += kPiece) {
      std::memcpy(dst.data(), body.data() + off, kPiece);
      benchmark::ClobberMemory();
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kBody));
}
BENCHMARK(BM_ContentLengthBodyMemcpy);

}  // namespace

BENCHMARK_MAIN();
