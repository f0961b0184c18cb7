#pragma once
// Incremental HTTP/1.1 request parser (RFC 9112), an explicit state machine with size limits.
// Pure: bytes in, events out. It keeps exact byte spans: the bytes passed to the sink, in call
// order, are exactly the bytes consumed, so untouched requests are forwarded as they came.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {

enum class ParseError : std::uint8_t {
  kNone,
  kRequestLineTooLong,
  kHeaderSectionTooLarge,
  kTooManyHeaders,
  kBadRequestLine,             // method, target or version malformed
  kUnsupportedVersion,         // anything but HTTP/1.0 and HTTP/1.1
  kBadHeaderName,
  kBadHeaderValue,             // control characters other than HTAB
  kObsoleteLineFolding,
  kBareCr,
  kBareLf,                     // LF without CR as a line end
  kNulInHead,
  kContentLengthWithTransferEncoding,
  kConflictingContentLength,   // differing duplicates (identical duplicates are accepted)
  kBadContentLength,
  kUnsupportedTransferCoding,  // anything but a single, final `chunked`
  kBadChunkSize,
  kBadChunkTerminator,
  kTrailerSectionTooLarge,
  kBadTrailer,
  kMultipleHost,               // more than one Host field
};
std::string_view to_string(ParseError error) noexcept;  // a stable snake_case name

struct Span {
  std::uint32_t offset = 0;
  std::uint32_t length = 0;
  std::string_view in(std::string_view raw) const noexcept { return raw.substr(offset, length); }
};

struct HeaderField {
  Span line;   // the whole field line including its CRLF
  Span name;
  Span value;  // leading and trailing whitespace excluded
};

enum class BodyFraming : std::uint8_t { kNone, kContentLength, kChunked };

struct RequestHead {
  std::string raw;                   // request line through the empty line, exactly as received
  Span method, target, version;
  std::vector<HeaderField> fields;   // in order
  BodyFraming framing = BodyFraming::kNone;
  std::uint64_t content_length = 0;  // when framing is kContentLength
  bool expect_continue = false;      // Expect: 100-continue
  bool upgrade = false;              // Upgrade + Connection: upgrade, or CONNECT: the stream turns opaque after this message

  std::string_view view(Span s) const noexcept { return s.in(raw); }
  // Values of every field named `name` (ASCII case-insensitive), in order.
  std::vector<std::string_view> values(std::string_view name) const;
};

enum class FramingKind : std::uint8_t {
  kEmptyLine,    // a CRLF tolerated between messages
  kChunkHeader,  // chunk-size [; extensions] CRLF
  kChunkEnd,     // the CRLF after chunk data
  kLastChunk,    // `0` [; ext] CRLF, trailer fields, final CRLF
};

class RequestSink {
 public:
  virtual ~RequestSink() = default;
  virtual void on_head(RequestHead& head) = 0;                     // the sink may move from it
  virtual void on_body(std::string_view data) = 0;                 // body bytes (chunk data, de-framed)
  virtual void on_framing(FramingKind kind, std::string_view raw) = 0;
  virtual void on_message_end() = 0;
};

struct Limits {
  std::size_t max_request_line = 16 * 1024;
  std::size_t max_header_section = 64 * 1024;  // request line included
  std::size_t max_headers = 256;
  std::size_t max_trailer_section = 16 * 1024;
};

class RequestParser {
 public:
  explicit RequestParser(Limits limits = {}) noexcept;

  // Consumes bytes and emits events. Returns how many bytes of `in` were consumed: all of them,
  // except after an error (the error byte and the rest are not consumed) or once the message
  // that requested an upgrade has ended (the rest is the opaque stream, not HTTP).
  std::size_t parse(std::string_view in, RequestSink& sink);

  ParseError error() const noexcept { return error_; }
  bool upgraded() const noexcept;
  bool at_message_boundary() const noexcept;  // no partial message buffered or in flight

 private:
  // The implementation owns the state machine; see request_parser.cpp.
  struct State;
  Limits limits_;
  ParseError error_ = ParseError::kNone;
  std::uint8_t state_ = 0;
  std::string head_buf_;
  RequestHead head_;
  std::uint64_t remaining_ = 0;
  std::string line_buf_;  // chunk-size or trailer line in progress
  std::size_t trailer_bytes_ = 0;
};

}  // namespace airlock::http
