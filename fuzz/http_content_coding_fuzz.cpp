// libFuzzer target for http::ContentDecoder and the encoders (decompression).
//
// Input: byte 0 picks the coding (and a second, layered one) and seeds the read sizes; the
// rest is a compressed stream, or (when bit 7 of byte 0 is set) plain bytes that are encoded
// first and must decode back.
// Properties: no crash; output stays under the caps (plus one step per stage); fed in pieces
// two successful decodings (whole, in pieces) give the same bytes; encode then decode is the identity.
#include <http/content_coding.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace airlock::http;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr Coding kCodings[] = {Coding::kGzip, Coding::kDeflate, Coding::kBrotli, Coding::kZstd};

CodingError decode(const std::vector<Coding>& codings, std::string_view in, unsigned seed, const CodingLimits& limits,
                   std::string& out) {
  out.clear();
  ContentDecoder d(codings, limits);
  std::uint32_t state = seed * 2654435761u + 1;
  std::size_t at = 0;
  while (at < in.size()) {
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    const std::size_t n = seed == 0 ? in.size() : 1 + state % 97;
    if (CodingError e = d.feed(in.substr(at, n), out); e != CodingError::kNone) return e;
    at += n;
  }
  return d.finish(out);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const unsigned b = data[0];
  std::vector<Coding> codings{kCodings[b & 3]};
  if (b & 4) codings.push_back(kCodings[(b >> 3) & 3]);
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  CodingLimits limits;
  limits.max_output = 4 << 20;
  limits.max_ratio = 200;
  if (b & 0x80) {
    std::string enc, back;
    check(encode_all(codings, in, enc) == CodingError::kNone);
    check(decode(codings, enc, b, limits, back) == CodingError::kNone);
    check(back == in);
    return 0;
  }
  std::string whole, pieces;
  const CodingError e1 = decode(codings, in, 0, limits, whole);
  const CodingError e2 = decode(codings, in, b | 1, limits, pieces);
  const std::size_t bound = std::min<std::size_t>(limits.max_output, limits.max_ratio * in.size() + kRatioSlack);
  check(whole.size() <= bound + 2 * (16u << 10) * codings.size() + (16u << 10));
  check(pieces.size() <= bound + 2 * (16u << 10) * codings.size() + (16u << 10));
  // The ratio cap compares output with the input so far, so a stream that front-loads its output
  // may pass whole and fail in pieces; two successes must agree.
  if (e1 == CodingError::kNone && e2 == CodingError::kNone) check(whole == pieces);
  return 0;
}
