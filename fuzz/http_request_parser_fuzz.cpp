// libFuzzer target for the HTTP/1.1 request parser.
//
// Input: one control byte, then the stream. The control byte picks small or default limits, whether
// upgrade requests are answered with a switch (0x40) or a refusal, and how the stream is split; the split sizes come from the stream bytes themselves. Properties checked
// (abort on failure): no crash; the bytes handed to the sink are the consumed prefix of the input
// (all of it at a message boundary, the rest being the bounded in-progress buffer); the same events,
// error and consumed count whether the stream is fed whole, in the chosen splits, or a byte at a
// time (the head's spans included, so the fast paths for whole lines agree with the byte machine);
// every buffer stays within its limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/request_parser.hpp"

namespace {

using airlock::http::FramingKind;
using airlock::http::Limits;
using airlock::http::ParseError;
using airlock::http::RequestHead;
using airlock::http::RequestParser;
using airlock::http::RequestSink;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Recorder : RequestSink {
  explicit Recorder(const Limits& l) : limits(l) {}
  const Limits& limits;
  std::vector<std::string> events;
  std::string bytes;

  void on_head(RequestHead& head) override {
    check(head.raw.size() <= limits.max_header_section);
    check(head.fields.size() <= limits.max_headers);
    check(head.view(head.method).size() + 1 + head.view(head.target).size() + 1 + 8 + 2 <= limits.max_request_line);
    for (const auto& f : head.fields) {
      check(std::size_t{f.line.offset} + f.line.length <= head.raw.size());
      check(f.name.offset == f.line.offset && f.value.offset + f.value.length <= f.line.offset + f.line.length);
    }
    // The spans too: the fast paths for whole lines (fed whole) and the byte machine (a byte at a
    // time) must find the same parts.
    std::string spans;
    auto span = [&spans](airlock::http::Span sp) {
      spans += std::to_string(sp.offset) + "+" + std::to_string(sp.length) + ",";
    };
    span(head.method);
    span(head.target);
    span(head.version);
    for (const auto& f : head.fields) {
      span(f.line);
      span(f.name);
      span(f.value);
    }
    events.push_back("h" + head.raw + (head.upgrade ? "U" : "") + (head.expect_continue ? "C" : "") +
                     std::to_string(static_cast<int>(head.framing)) + ":" + std::to_string(head.content_length) +
                     ":1." + std::to_string(head.minor_version) + ":" + spans);
    bytes += head.raw;
  }
  void on_body(std::string_view data) override {
    check(!data.empty());
    if (!events.empty() && events.back()[0] == 'b') {
      events.back() += data;
    } else {
      events.push_back("b" + std::string(data));
    }
    bytes += data;
  }
  void on_framing(FramingKind kind, std::string_view raw) override {
    check(raw.size() <= limits.max_chunk_line + limits.max_trailer_section);
    events.push_back("f" + std::to_string(static_cast<int>(kind)) + std::string(raw));
    bytes += raw;
  }
  void on_message_end() override { events.push_back("e"); }
};

struct Outcome {
  std::vector<std::string> events;
  ParseError error;
  std::size_t consumed;
  bool upgraded;
  bool boundary;
};

// piece(offset) gives the size of the next piece, at least 1. An upgrade request's answer is
// `switched` for every upgrade (refused ones go on parsing the next request).
template <typename PieceSize>
Outcome run(std::string_view in, const Limits& limits, bool switched, PieceSize piece) {
  RequestParser parser(limits);
  Recorder rec(limits);
  std::size_t off = 0;
  while (off < in.size()) {
    const std::size_t len = std::min(piece(off), in.size() - off);
    const std::size_t n = parser.parse(in.substr(off, len), rec);
    check(n <= len);
    off += n;
    if (n < len) {
      if (parser.awaiting_upgrade()) {
        check(parser.at_message_boundary() && parser.parse(in.substr(off), rec) == 0);
        parser.resolve_upgrade(switched);
        if (!switched) continue;
      }
      check(parser.error() != ParseError::kNone || parser.upgraded());
      check(parser.parse(in.substr(off), rec) == 0);
      break;
    }
  }
  const std::size_t consumed = off;
  // Byte-exact: the sink saw a prefix of the consumed bytes, all of them at a message boundary;
  // what is held back is bounded.
  check(rec.bytes.size() <= consumed);
  check(in.substr(0, rec.bytes.size()) == rec.bytes);
  const bool boundary = parser.at_message_boundary();
  if (boundary) check(rec.bytes.size() == consumed);
  check(consumed - rec.bytes.size() <= limits.max_header_section + limits.max_chunk_line + limits.max_trailer_section);
  if (parser.error() == ParseError::kNone && !parser.upgraded() && !parser.awaiting_upgrade()) check(consumed == in.size());
  return Outcome{std::move(rec.events), parser.error(), consumed, parser.upgraded(), boundary};
}

bool same(const Outcome& a, const Outcome& b) {
  return a.events == b.events && a.error == b.error && a.consumed == b.consumed && a.upgraded == b.upgraded &&
         a.boundary == b.boundary;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  Limits limits;
  if (control & 0x80) {  // small limits, so that every limit is reachable by small inputs
    limits.max_request_line = 40;
    limits.max_header_section = 160;
    limits.max_headers = 4;
    limits.max_trailer_section = 24;
    limits.max_chunk_line = 12;
  }

  const bool switched = control & 0x40;
  const Outcome whole = run(in, limits, switched, [&](std::size_t) { return in.size(); });

  // Split sizes drawn from the stream itself, scaled by the control byte.
  const std::size_t scale = 1 + (control & 0x0f);
  const Outcome split = run(in, limits, switched, [&](std::size_t off) {
    return 1 + (static_cast<std::uint8_t>(in[off]) * scale) % (16 * scale);
  });
  if (!same(whole, split)) __builtin_trap();

  if (in.size() <= 8192) {
    const Outcome bytewise = run(in, limits, switched, [](std::size_t) { return std::size_t{1}; });
    if (!same(whole, bytewise)) __builtin_trap();
  }
  return 0;
}
