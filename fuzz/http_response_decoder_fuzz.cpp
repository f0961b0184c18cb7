// libFuzzer target for http::plan_body, ChunkedDecoder and ResponseBodyDecoder (de-framing).
//
// Input: byte 0 seeds the read sizes; then a response head up to and including the first
// "\r\n\r\n"; the rest is the body stream. One made-up secret is scrubbed.
// Properties: no crash; plan_body never accepts a head adjust_head cannot rewrite into a head
// plan_body accepts again, with no coding and the same reframing; `used` never exceeds the
// input; a re-framed output de-chunks cleanly; fed in pieces (when both succeed) the guest reads
// the same bytes as fed whole, and never the value (no pauses, so nothing of it leaves).
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

struct Result {
  DecodeError error = DecodeError::kNone;
  std::string out;
  std::size_t used = 0;
};

Result run(const BodyPlan& plan, std::string_view body, unsigned seed) {
  CodingLimits limits;
  limits.max_output = 1 << 20;
  ResponseBodyDecoder d(plan, limits, &forms());
  Result r;
  std::uint32_t state = seed * 2654435761u + 1;
  std::size_t at = 0;
  while (at < body.size() && !d.done()) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    const std::size_t n = seed == 0 ? body.size() : 1 + state % 23;
    std::size_t used = 0;
    const std::string_view piece = body.substr(at, n);
    r.error = d.feed(piece, r.out, used);
    check(used <= piece.size());
    r.used += used;
    if (r.error != DecodeError::kNone) return r;
    if (used < piece.size()) check(d.done());  // only the end of the body leaves bytes over
    at += used;
  }
  r.error = d.finish(r.out);
  return r;
}

// What the guest's client reads: the body de-chunked (and its trailers) when re-framed.
std::string guest_view(const BodyPlan& plan, const std::string& out) {
  if (!plan.reframe()) return out;
  ChunkedDecoder dechunk;
  std::string plain;
  std::size_t used = 0;
  check(dechunk.feed(out, plain, used) == ChunkError::kNone);
  check(dechunk.done() && used == out.size());
  return plain + dechunk.trailers();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const unsigned seed = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t end = rest.find("\r\n\r\n");
  if (end == std::string_view::npos) return 0;
  const std::string_view head = rest.substr(0, end + 4), body = rest.substr(end + 4);
  BodyPlan plan;
  if (plan_body(head, "GET", plan) != DecodeError::kNone) return 0;
  if (plan.decode()) {
    std::string adjusted;
    adjust_head(head, plan, adjusted);
    BodyPlan again;
    check(plan_body(adjusted, "GET", again) == DecodeError::kNone);
    check(again.codings.empty());
    check(again.framing == (plan.reframe() ? BodyPlan::Framing::kChunked : BodyPlan::Framing::kClose));
  }
  const Result whole = run(plan, body, 0);
  const Result pieces = run(plan, body, seed | 1);
  if (whole.error != DecodeError::kNone || pieces.error != DecodeError::kNone) return 0;  // caps may differ
  check(whole.used == pieces.used);
  check(guest_view(plan, whole.out) == guest_view(plan, pieces.out));
  check(guest_view(plan, whole.out).find(kValue) == std::string::npos);
  return 0;
}
