// libFuzzer target for http::ResponseStream: ResponseReader's framing, plan_body, adjust_head and
// ResponseBodyDecoder (de-chunk, decode, scrub, re-frame) over an upstream's byte stream.
//
// Input: byte 0: bits 0-1 what the 3 queued requests asked for (plain, HEAD, upgrade, HTTP/1.0),
// bit 2 codings undone, bits 3-7 seed the read sizes; the rest is the upstream's stream. One
// made-up secret is scrubbed (the seeds echo it in every coding and framing).
// Properties: no crash; `used` never exceeds the input; fed whole or in pieces the guest gets
// the same bytes and the same verdict; what it gets never holds the value (no pauses); what it
// gets parses again (ResponseReader) into as many final heads with no coding left where codings
// were undone, and the value is absent from what that reader reads as bodies. Taking the pieces
// of plain bodies in place (feed_in_place, as the gateway reads them) gives the same bytes.
#include <http/response_decoder.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace airlock;
using namespace airlock::http;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kValue = "sk-fuzzVALUE1234";

const ScrubForms& forms() {
  static const ScrubForms f = [] {
    std::vector<SecretBinding> s;
    s.push_back(SecretBuilder().env("K").value(std::string(kValue)).allow_host("a.example").build());
    return ScrubForms(s);
  }();
  return f;
}

std::vector<ResponseExpectation> expectations(std::uint8_t control) {
  const int kind = control & 3;
  ResponseExpectation e{.head = kind == 1, .upgrade = kind == 2, .http10 = kind == 3};
  return {e, {}, e};
}

struct Result {
  std::string out;
  bool error = false;
  bool closed = false;
};

Result run(std::string_view in, std::uint8_t control, unsigned seed, bool in_place = false) {
  ResponseDecodeLimits limits;
  limits.coding.max_output = 1 << 20;
  ResponseStream s(&forms(), limits);
  for (const auto& e : expectations(control)) s.expect(e);
  if (control & 4) s.undo_codings();
  Result r;
  std::uint32_t state = seed * 2654435761u + 1;
  std::size_t at = 0;
  while (at < in.size()) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    const std::size_t n = seed == 0 ? in.size() : 1 + state % 23;
    std::string_view piece = in.substr(at, n);
    at += piece.size();
    std::string rest;
    if (ResponseScrubber* direct = in_place ? s.in_place_scrubber() : nullptr) {
      const std::size_t into = r.out.size() + direct->pending();
      r.out.resize(into);
      r.out.append(piece);
      s.feed_in_place(r.out, into, rest);
      piece = rest;
    }
    while (!piece.empty()) {
      std::size_t used = 0;
      const auto ev = s.feed(piece, used, r.out);
      check(used <= piece.size());
      piece.remove_prefix(used);
      if (ev == ResponseStream::Event::kError) {
        check(!s.error().empty());
        r.error = true;
        return r;
      }
      if (ev == ResponseStream::Event::kClose) {
        r.closed = true;
        return r;
      }
    }
  }
  r.error = s.finish(r.out) != DecodeError::kNone;
  return r;
}

// What the guest's own reader makes of `out`: heads, bodies joined, trailers (chunk sizes are
// the gateway's and depend on the reads). Aborts on framing the reader refuses.
std::string guest_view(std::string_view out, std::uint8_t control) {
  ResponseReader guest;
  for (const auto& e : expectations(control)) guest.expect(e);
  std::string view, body;
  while (!out.empty()) {
    std::size_t used = 0;
    const auto ev = guest.feed(out, used);
    out.remove_prefix(used);
    if (ev == ResponseReader::Event::kOpaque) {
      view.append("|opaque|").append(out);
      break;
    }
    check(ev != ResponseReader::Event::kError);
    if (ev == ResponseReader::Event::kHead) {
      const ResponseHead& h = guest.head();
      if ((control & 4) && !h.interim && !h.switched && h.body != ResponseHead::Body::kNone) {
        for (const std::string& c : h.codings("content-encoding")) check(c == "identity");
      }
      view.append("|head|").append(h.status_line);
      for (const auto& [n, v] : h.fields) view.append("|").append(n).append(":").append(v);
    }
    if (ev == ResponseReader::Event::kBody || ev == ResponseReader::Event::kEnd) body.append(guest.body());
    if (ev == ResponseReader::Event::kEnd) {
      check(body.find(kValue) == std::string::npos);
      view.append("|body|").append(body).append("|trailers|").append(guest.trailers());
      body.clear();
    }
  }
  check(body.find(kValue) == std::string::npos);
  return view.append("|rest|").append(body);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t control = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Result whole = run(in, control, 0);
  const Result pieces = run(in, control, (control >> 3) | 1u);
  const Result in_place = run(in, control, (control >> 3) | 1u, true);
  check(in_place.out == pieces.out && in_place.error == pieces.error && in_place.closed == pieces.closed);
  check(whole.out.find(kValue) == std::string::npos);
  check(pieces.out.find(kValue) == std::string::npos);
  if (whole.error || pieces.error) return 0;  // the caps may trip at different reads
  check(whole.closed == pieces.closed);
  check(guest_view(whole.out, control) == guest_view(pieces.out, control));
  return 0;
}
