#pragma once
// HTTP content codings (RFC 9110 §8.4): gzip, deflate (zlib-wrapped, or raw as some servers send
// it), br and zstd, decoded as a stream with bounded memory and bounded output, and encoded
// again in one piece (for request bodies the engine rewrites). Pure: bytes in, bytes out; no
// exceptions; errors are values that never hold body bytes.
//
// Bounds, so that hostile input cannot grow memory without limit (zip bombs):
//  - output cap: a stream that decodes to more than `max_output` bytes is an error;
//  - ratio cap: one whose output passes max_ratio * input + kRatioSlack bytes at any point is an
//    error (the slack lets small, very compressible bodies through);
//  - window: zstd frames asking for a window above 8 MiB are refused; brotli's large-window
//    extension is off (16 MiB at most); zlib uses 32 KiB.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {

enum class Coding { kGzip, kDeflate, kBrotli, kZstd };
std::string_view coding_name(Coding c) noexcept;  // "gzip", "deflate", "br", "zstd"

enum class CodingError {
  kNone,
  kUnknownCoding,   // a coding this module does not decode (compress, exi, a typo, ...)
  kTooManyCodings,  // more than kMaxCodings layered
  kCorrupt,         // the stream is not valid for its coding (or has bytes after its end)
  kTruncated,       // the input ended inside the stream
  kOutputCap,       // decoded output above max_output
  kRatioCap,        // decoded output above the ratio cap
  kNoMemory,        // the codec library could not allocate its state
};
std::string_view describe(CodingError e) noexcept;

struct CodingLimits {
  std::size_t max_output = std::size_t{64} << 20;
  std::size_t max_ratio = 100;
};
constexpr std::size_t kRatioSlack = std::size_t{64} << 10;
constexpr std::size_t kMaxCodings = 4;

// A Content-Encoding field value (all its lines joined by ", "): the codings in the order they
// were applied; `identity` and empty members are skipped; names are case-insensitive; "x-gzip"
// is gzip. kUnknownCoding or kTooManyCodings otherwise.
CodingError parse_content_encoding(std::string_view field, std::vector<Coding>& out);

// One coding's streaming decoder.
class Decompressor {
 public:
  virtual ~Decompressor() = default;
  // Appends what `in` decodes to to `out`.
  virtual CodingError feed(std::string_view in, std::string& out) = 0;
  // End of input: kTruncated if the stream is not complete.
  virtual CodingError finish(std::string& out) = 0;
};
// nullptr only when the library cannot allocate (kNoMemory).
std::unique_ptr<Decompressor> make_decompressor(Coding coding, const CodingLimits& limits);

// The codings of a Content-Encoding undone in reverse order, with the caps applied to every
// stage and to the whole (output against the bytes fed in). After an error every call returns it;
// `out` then holds what decoded before the error (never past the output cap), for callers that
// only scan; a caller that forwards discards it.
class ContentDecoder {
 public:
  ContentDecoder(std::vector<Coding> codings, const CodingLimits& limits);
  CodingError feed(std::string_view in, std::string& out);
  CodingError finish(std::string& out);
  CodingError error() const noexcept { return error_; }
  std::uint64_t bytes_in() const noexcept { return in_; }
  std::uint64_t bytes_out() const noexcept { return out_; }

 private:
  CodingError run(std::string_view in, std::string& out, bool last);
  CodingLimits limits_;
  std::vector<std::unique_ptr<Decompressor>> stages_;  // outermost coding first
  CodingError error_ = CodingError::kNone;
  std::uint64_t in_ = 0, out_ = 0;
};

// Decodes a whole body (a request body of known, capped size).
CodingError decode_all(const std::vector<Coding>& codings, std::string_view in, const CodingLimits& limits,
                       std::string& out);
// Encodes a whole body with the codings in order (the inverse of decode_all). Only fails to
// allocate (kNoMemory).
CodingError encode_all(const std::vector<Coding>& codings, std::string_view in, std::string& out);

}  // namespace airlock::http
