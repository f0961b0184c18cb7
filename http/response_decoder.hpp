#pragma once
// Response decoding for the scrubber (DESIGN data path: "response decoding + scrubber"). A
// response body reaches the scrubber as the bytes the guest's application will read: chunk
// framing removed (so no chunk line cuts a value), content codings undone (so no value hides
// inside gzip, deflate, br or zstd); after masking it is framed again. Pure: bytes in, bytes out,
// no I/O, no exceptions; errors are values the caller turns into a block.
//
// The framing itself is read once, by ResponseReader (its strict RFC 9112 rules: Content-Length
// with Transfer-Encoding, differing lengths, bad chunks are errors there). ResponseStream runs
// it over the upstream's bytes and, per response:
//  - a plain body (Content-Length or close-delimited, nothing to undo) goes through the stream's
//    scrubber as it came: no copy besides the scrubber's, lengths kept (masking keeps them);
//  - a chunked body without codings to undo is de-chunked, scrubbed as one stream (the
//    scrubber's state crosses chunks) and chunked again; its head and trailers (scrubbed) kept;
//  - a body with codings to undo (values may flow) leaves identity-encoded: Content-Encoding,
//    Content-Length and Transfer-Encoding dropped, `Transfer-Encoding: chunked` when the
//    response and its request are HTTP/1.1, otherwise close-delimited with `Connection: close`
//    (the connection then ends after it).
#include <http/content_coding.hpp>
#include <http/response_reader.hpp>
#include <http/response_scrubber.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {

// Chunk framing: one chunk (nothing for empty data), and the last chunk with its trailers.
void append_chunk(std::string_view data, std::string& out);
void append_last_chunk(std::string_view trailers, std::string& out);

enum class DecodeError {
  kNone,
  kUnknownCoding,  // a coding this module cannot undo (its name is not repeated: it is the server's text)
  kCoding,         // corrupt or truncated compressed data
  kOutputCap,      // decoded body above the cap
  kRatioCap,       // decompression ratio above the cap
  kNoMemory,
  kFraming,        // malformed framing (the reader's error says which)
  kTruncated,      // the body ended early
};
std::string_view describe(DecodeError e) noexcept;

// What happens to one response's body.
struct BodyPlan {
  ResponseHead::Body framing = ResponseHead::Body::kNone;
  std::vector<Coding> codings;  // to undo: Content-Encoding, then Transfer-Encoding but its final chunked
  bool close_after = false;     // leaves close-delimited although it had a length or chunks
  // Whether the body goes through a ResponseBodyDecoder (de-chunked, or codings undone).
  bool decode() const noexcept {
    return framing != ResponseHead::Body::kNone && (framing == ResponseHead::Body::kChunked || !codings.empty());
  }
  // Whether it leaves chunked.
  bool reframe() const noexcept {
    return decode() && !close_after && framing != ResponseHead::Body::kClose;
  }
};

// The plan for a final response's body. `undo_codings`: a value may have reached this upstream,
// so a coded body must be decoded (an unknown coding is kUnknownCoding); otherwise codings are
// left as they are and only chunks are re-framed.
DecodeError plan_body(const ResponseHead& head, bool undo_codings, BodyPlan& plan);
// The head to forward when plan.codings is not empty: the status line and fields, without
// Content-Encoding, Content-Length and Transfer-Encoding, with `Transfer-Encoding: chunked`
// (plan.reframe()) or `Connection: close` (plan.close_after), CRLF line ends.
void adjust_head(const ResponseHead& head, const BodyPlan& plan, std::string& out);

// One response body, as ResponseReader delivers it (framing removed): decode, scrub, re-frame.
// The decoded bytes and the trailers go through one scrubber: its own over `forms`, or a
// borrowed `scrub` (which must outlive the decoder; it must hold nothing back when the body starts).
class ResponseBodyDecoder {
 public:
  ResponseBodyDecoder(BodyPlan plan, const CodingLimits& limits, const ScrubForms& forms);
  ResponseBodyDecoder(BodyPlan plan, const CodingLimits& limits, Scrubber& scrub);
  ~ResponseBodyDecoder();  // wipes the scratch buffers (decoded bytes are unmasked there)
  ResponseBodyDecoder(const ResponseBodyDecoder&) = delete;
  ResponseBodyDecoder& operator=(const ResponseBodyDecoder&) = delete;

  // Body bytes; appends what the guest gets. After an error every call returns it.
  DecodeError feed(std::string_view data, std::string& out);
  // The body ended (with these raw trailer lines, chunked only): the last bytes, the last chunk.
  DecodeError end(std::string_view trailers, std::string& out);
  // No more bytes soon: lets the scrubber's held bytes go (as a chunk when re-framing).
  void flush(std::string& out);
  std::uint64_t masked_bytes() const noexcept;

 private:
  void start(const CodingLimits& limits);
  DecodeError fail(DecodeError e) { return error_ = e; }
  DecodeError scrub(std::string_view plain, std::string& out);
  void emit(std::string_view scrubbed, std::string& out);

  BodyPlan plan_;
  std::optional<ContentDecoder> content_;
  std::optional<ResponseScrubber> own_;
  Scrubber* scrubber_;
  std::uint64_t masked_before_ = 0;  // the scrubber's count when the body started
  DecodeError error_ = DecodeError::kNone;
  std::string plain_, scrubbed_;  // scratch
};

// Limits of the response direction. Decoding streams (nothing is buffered whole), so the output
// cap bounds the work one response can cause, and the ratio cap bounds the memory one read of
// compressed bytes can expand to (100 × a 16 KiB read at most, plus the slack).
struct ResponseDecodeLimits {
  CodingLimits coding{std::size_t{1} << 30, 100};
  ResponseLimits framing{};
};

// The upstream-to-guest stream of one HTTP/1 connection: framing read, bodies decoded as their
// plans say, every byte (heads, plain and decoded bodies, trailers, the opaque bytes after a
// switch) scrubbed through one Scrubber: its own over `forms`, or a borrowed one (a chain the
// caller may extend or shrink between calls; it must outlive the stream). Without either, the
// bytes pass unchanged and only the framing is read.
class ResponseStream {
 public:
  enum class Event : std::uint8_t {
    kNeedMore,  // everything given was consumed
    kHead,      // a response head was read and its bytes written (head())
    kOpaque,    // after a switch (101, 2xx to CONNECT): the rest is scrubbed as an opaque stream
    kClose,     // a body left close-delimited has ended: the caller ends the connection
    kError,     // not to be forwarded: error() (nothing more is consumed)
  };

  explicit ResponseStream(const ScrubForms* forms, ResponseDecodeLimits limits = {});
  explicit ResponseStream(Scrubber* scrub, ResponseDecodeLimits limits = {});
  ~ResponseStream();
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  void expect(const ResponseExpectation& e) { reader_.expect(e); }
  // Sticky: from now on coded bodies are decoded (a value may have reached the upstream).
  void undo_codings() noexcept { undo_codings_ = true; }
  bool undoes_codings() const noexcept { return undo_codings_; }
  // Between responses with none expected, nothing held: a new stream (with undo_codings() if this
  // one undid them, over the same scrubber) would read what follows the same way.
  bool at_rest() const noexcept {
    return !failed_ && !opaque_ && !close_after_ && !body_ && head_.empty() && reader_.at_rest();
  }

  // Consumes a prefix of `in` (`used` bytes) up to the next event, appending what the guest gets.
  Event feed(std::string_view in, std::size_t& used, std::string& out);
  // The fast path of a plain body (Content-Length or close-delimited, nothing to decode) and of
  // the opaque bytes after a switch, when one scrubber does all the work: that scrubber when the
  // next bytes fed would go straight through it, else null. A caller may then read the bytes
  // straight into its output and hand them to feed_in_place().
  ResponseScrubber* in_place_scrubber() noexcept;
  // buf[at, buf.size()) are new bytes, and in_place_scrubber()->pending() bytes before `at` are
  // room for its held bytes: the bytes the plain body takes are read (framing) and scrubbed where
  // they lie (ResponseScrubber::scrub_in_place), so buf ends with feed()'s output for them. What
  // follows the body (the next response) is moved to `rest`, for feed(); it is the upstream's
  // bytes, so the caller wipes it.
  void feed_in_place(std::string& buf, std::size_t at, std::string& rest);
  // No more bytes ready: the scrubbers let their held bytes go.
  void flush(std::string& out);
  // The upstream closed: the last bytes of a close-delimited body; kNone or the error.
  DecodeError finish(std::string& out);

  const ResponseHead& head() const noexcept { return reader_.head(); }
  const std::string& error() const noexcept { return error_; }
  // The scrubber's count (a borrowed one's includes what it masked for others).
  std::uint64_t masked_bytes() const noexcept;
  bool opaque() const noexcept { return opaque_; }

 private:
  Event fail(std::string reason);
  Event on_head(std::string& out);
  void plain(std::string_view bytes, std::string& out);

  ResponseDecodeLimits limits_;
  ResponseReader reader_;
  std::optional<ResponseScrubber> own_;         // over `forms`, when not borrowed
  Scrubber* scrubber_ = nullptr;                // everything; null: nothing to scrub
  std::optional<ResponseBodyDecoder> body_;     // the body being decoded
  std::string head_;                            // the head being read (bounded by the reader)
  std::string adjusted_;                        // scratch
  std::string error_;
  bool undo_codings_ = false;
  bool close_after_ = false;
  bool opaque_ = false;
  bool failed_ = false;
};

}  // namespace airlock::http
