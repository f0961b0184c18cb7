// libFuzzer target for the HTTP/1.1 response reader (issue 12).
//
// Input: one control byte, then the upstream's stream. The control byte's low 6 bits say what
// the queued requests asked for (2 bits each for 3 requests: plain, HEAD, CONNECT, upgrade),
// bit 6 small limits. Properties checked (abort on failure): no crash; the same heads, verdict
// and consumed count whether the stream is fed whole, in splits drawn from its bytes, or a byte
// at a time, with the same body bytes and trailers (framing removed); the reader never consumes more than it was given, and consumes nothing after an
// error or a switch; its buffers stay within their limits.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/response_reader.hpp"

namespace {

using airlock::http::ResponseError;
using airlock::http::ResponseExpectation;
using airlock::http::ResponseLimits;
using airlock::http::ResponseReader;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Outcome {
  std::vector<std::string> heads;
  ResponseError error = ResponseError::kNone;
  bool opaque = false;
  std::size_t consumed = 0;
  std::string body;  // body bytes (framing removed), each end and its trailers
  bool operator==(const Outcome&) const = default;
};

template <typename PieceSize>
Outcome run(std::string_view in, std::uint8_t control, const ResponseLimits& limits, PieceSize piece) {
  ResponseReader r(limits);
  for (int k = 0; k < 3; ++k) {
    const int kind = (control >> (2 * k)) & 3;
    r.expect(ResponseExpectation{.head = kind == 1, .connect = kind == 2, .upgrade = kind == 3});
  }
  Outcome out;
  std::size_t off = 0;
  while (off < in.size() && !out.opaque && out.error == ResponseError::kNone) {
    const std::size_t len = std::min(piece(off), in.size() - off);
    std::string_view p = in.substr(off, len);
    while (!p.empty()) {
      std::size_t used = 0;
      const auto ev = r.feed(p, used);
      check(used <= p.size());
      p.remove_prefix(used);
      out.consumed += used;
      if (ev == ResponseReader::Event::kHead) {
        const auto& h = r.head();
        check(h.status >= 100 && h.status <= 999);
        check(h.fields.size() <= limits.max_fields);
        std::string s = std::to_string(h.status) + (h.interim ? "i" : "") + (h.switched ? "s" : "");
        for (const auto& [n, v] : h.fields) s.append("|").append(n).append(":").append(v);
        out.heads.push_back(std::move(s));
      } else if (ev == ResponseReader::Event::kError) {
        check(used == 0 || r.error() != ResponseError::kNone);
        out.error = r.error();
        break;
      } else if (ev == ResponseReader::Event::kOpaque) {
        check(used == 0);
        out.opaque = true;
        break;
      } else if (ev == ResponseReader::Event::kBody || ev == ResponseReader::Event::kEnd) {
        check(r.body().size() <= used);
        out.body.append(r.body());
        if (ev == ResponseReader::Event::kEnd) out.body.append("|end|").append(r.trailers());
      } else {
        check(p.empty());
      }
    }
    off += len;
  }
  // A switch or an error stops consumption at the same byte whatever the split.
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  ResponseLimits limits;
  if (control & 0x40) {
    limits.max_head = 96;
    limits.max_chunk_line = 12;
    limits.max_trailers = 24;
    limits.max_fields = 4;
  }
  const Outcome whole = run(in, control, limits, [&](std::size_t) { return in.size(); });
  const Outcome split = run(in, control, limits, [&](std::size_t off) {
    return 1 + static_cast<std::size_t>(static_cast<std::uint8_t>(in[off]) % 17);
  });
  check(whole == split);
  if (in.size() <= 8192) {
    const Outcome bytewise = run(in, control, limits, [](std::size_t) { return std::size_t{1}; });
    check(whole == bytewise);
  }
  return 0;
}
