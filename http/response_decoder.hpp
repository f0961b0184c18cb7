#pragma once
// Response decoding for the scrubber (DESIGN data path: "response decoding + scrubber"). A
// response body reaches the scrubber as the bytes the guest's application will read: chunk
// framing removed (so no chunk line cuts a value), content codings undone (so no value hides
// inside gzip, deflate, br or zstd); after masking it is framed again. Pure: bytes in, bytes out,
// no I/O, no exceptions; errors are values the caller turns into a block.
//
// What is forwarded: a body that was chunked or had a content coding leaves chunked and
// identity-encoded (Content-Encoding and Content-Length dropped, `Transfer-Encoding: chunked`
// set, trailers kept and scrubbed); a close-delimited body stays close-delimited; a plain
// Content-Length body keeps its length (the scrubber keeps lengths).
#include <http/content_coding.hpp>
#include <http/response_scrubber.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {

enum class ChunkError { kNone, kBadSize, kLineTooLong, kBadLineEnd, kTrailersTooLong };
std::string_view describe(ChunkError e) noexcept;

// De-frames a chunked body (RFC 9112 §7.1) as a state machine: strict CRLF line ends, chunk
// sizes of 1-16 hex digits, chunk extensions skipped (their line bounded), trailer section kept
// raw and bounded.
class ChunkedDecoder {
 public:
  static constexpr std::size_t kMaxLine = 4096;
  static constexpr std::size_t kMaxTrailers = 16u << 10;

  // Consumes bytes of `in` up to the end of the body (`used` of them; what follows belongs to the
  // next message) and appends the chunk data to `data`.
  ChunkError feed(std::string_view in, std::string& data, std::size_t& used);
  bool done() const noexcept { return state_ == State::kDone; }
  // The trailer field lines, each with its CRLF, without the empty line that ends them.
  const std::string& trailers() const noexcept { return trailers_; }

 private:
  enum class State { kSize, kExtension, kSizeLf, kData, kDataCr, kDataLf, kTrailerLine, kTrailerLf, kDone };
  State state_ = State::kSize;
  std::uint64_t remaining_ = 0;  // data bytes left in this chunk
  std::size_t digits_ = 0;
  std::size_t line_ = 0;  // bytes of the current size or trailer line
  std::string trailers_;
  ChunkError error_ = ChunkError::kNone;
};

// Chunk framing: one chunk (nothing for empty data), and the last chunk with its trailers.
void append_chunk(std::string_view data, std::string& out);
void append_last_chunk(std::string_view trailers, std::string& out);

// How a response's body is framed and coded, from its head (RFC 9112 §6.3).
struct BodyPlan {
  enum class Framing { kNone, kLength, kChunked, kClose };
  Framing framing = Framing::kNone;
  std::uint64_t length = 0;      // kLength
  std::vector<Coding> codings;   // Content-Encoding then Transfer-Encoding codings, in the order applied
  bool http10 = false;           // an HTTP/1.0 response: no chunked output
  bool decode() const noexcept { return framing == Framing::kChunked || !codings.empty(); }
  // The decoded body leaves chunked: it had chunks or a length, and the response is HTTP/1.1.
  bool reframe() const noexcept { return decode() && !http10 && framing != Framing::kClose && framing != Framing::kNone; }
  // The decoded body leaves close-delimited although it had a length (HTTP/1.0): the caller
  // closes the connection after it.
  bool close_after() const noexcept { return decode() && !reframe() && framing == Framing::kLength; }
};

enum class DecodeError {
  kNone,
  kBadHead,          // not a parseable response head
  kBadFraming,       // conflicting Content-Length, a transfer coding other than a final chunked
  kUnknownCoding,    // a content coding this module cannot undo
  kChunking,         // bad chunk framing
  kCoding,           // corrupt or truncated compressed data
  kOutputCap,        // decoded body above the cap
  kRatioCap,         // decompression ratio above the cap
  kNoMemory,
  kTruncated,        // the body ended early
};
std::string_view describe(DecodeError e) noexcept;

// The plan for a response to a request with method `method` (HEAD has no body), from the head
// bytes (status line to the empty line, inclusive).
DecodeError plan_body(std::string_view head, std::string_view method, BodyPlan& plan);
// The head to forward for a plan that decodes: Content-Encoding, Content-Length and
// Transfer-Encoding fields dropped, `Transfer-Encoding: chunked` added when plan.reframe()
// (and `Connection: close` when plan.close_after()).
void adjust_head(std::string_view head, const BodyPlan& plan, std::string& out);

// One response body: de-chunk, decode, scrub, re-frame. `forms` may be null (nothing to mask).
class ResponseBodyDecoder {
 public:
  ResponseBodyDecoder(BodyPlan plan, const CodingLimits& limits, const ScrubForms* forms);
  ~ResponseBodyDecoder();  // wipes the scratch buffers (decoded bytes are unmasked there)
  ResponseBodyDecoder(const ResponseBodyDecoder&) = delete;
  ResponseBodyDecoder& operator=(const ResponseBodyDecoder&) = delete;

  // Consumes body bytes (`used` of `in`; the rest is the next response) and appends what the
  // guest gets. After an error every call returns it and nothing more may be forwarded.
  DecodeError feed(std::string_view in, std::string& out, std::size_t& used);
  // No more bytes soon: lets the scrubber's held bytes go (as a chunk when re-framing).
  void flush(std::string& out);
  // The upstream closed: ends a close-delimited body; for the others kTruncated unless done().
  DecodeError finish(std::string& out);
  bool done() const noexcept { return done_; }
  std::uint64_t masked_bytes() const noexcept;

 private:
  DecodeError fail(DecodeError e) { return error_ = e; }
  DecodeError decoded(std::string_view bytes, std::string& out);
  DecodeError end(std::string& out);
  void emit(std::string_view scrubbed, std::string& out);

  BodyPlan plan_;
  bool reframe_;  // output chunked
  ChunkedDecoder chunks_;
  std::optional<ContentDecoder> content_;
  std::optional<ResponseScrubber> scrubber_;
  const ScrubForms* forms_;
  std::uint64_t trailer_masked_ = 0;
  std::uint64_t left_ = 0;  // kLength: body bytes still to come
  bool done_ = false;
  DecodeError error_ = DecodeError::kNone;
  std::string data_, plain_, scrubbed_;  // scratch
};

}  // namespace airlock::http
