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
  // Added with issue 12 (RFC 9112 review); kept after kMultipleHost so the names above keep
  // their values.
  kTransferEncodingInHttp10,   // §6.1: an HTTP/1.0 message with Transfer-Encoding is faulty
  kBadHost,                    // §3.2: a Host value that is not uri-host [":" port]
  kBadRequestTarget,           // §3.2: not the target form the method allows
  kBadChunkExtension,          // §7.1.1: not *( BWS ";" BWS name [ BWS "=" BWS value ] )
  kForbiddenTrailer,           // RFC 9110 §6.5.1: a framing or routing field in the trailers
};
inline constexpr ParseError kLastParseError = ParseError::kForbiddenTrailer;
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
  bool upgrade = false;              // Upgrade + Connection: upgrade, or CONNECT: the stream may turn opaque after this message
  bool close = false;                // Connection: close (the connection ends after this exchange)
  std::uint8_t minor_version = 1;    // HTTP/1.<minor_version>

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
  // The sink may move from `head`; it may clear head.upgrade when it strips the offer (the
  // parser then does not wait for an upgrade answer).
  virtual void on_head(RequestHead& head) = 0;
  virtual void on_body(std::string_view data) = 0;                 // body bytes (chunk data, de-framed)
  virtual void on_framing(FramingKind kind, std::string_view raw) = 0;
  virtual void on_message_end() = 0;
};

struct Limits {
  std::size_t max_request_line = 16 * 1024;
  std::size_t max_header_section = 64 * 1024;  // request line included
  std::size_t max_headers = 256;
  std::size_t max_trailer_section = 16 * 1024;
  std::size_t max_chunk_line = 4 * 1024;  // chunk-size [; extensions] CRLF (kBadChunkSize past it)
};

// The syntax checks the parser applies, exposed for the response side and tests.
bool valid_host_value(std::string_view value);                          // uri-host [":" port]
bool valid_target_form(std::string_view method, std::string_view target);  // RFC 9112 §3.2
bool valid_chunk_extensions(std::string_view ext);  // from the first ';' to before the CR
bool forbidden_in_trailers(std::string_view name);  // framing, routing, control fields

class RequestParser {
 public:
  explicit RequestParser(Limits limits = {}) noexcept;

  // Consumes bytes and emits events. Returns how many bytes of `in` were consumed: all of them,
  // except after an error (the error byte and the rest are not consumed) or once the message
  // that requested an upgrade (or CONNECT) has ended: what follows is HTTP again or the opaque
  // stream, depending on the response, so nothing is consumed until resolve_upgrade().
  std::size_t parse(std::string_view in, RequestSink& sink);

  // The response to the request that asked for an upgrade: `switched` (101, or 2xx to CONNECT)
  // makes the rest of the stream opaque; otherwise parsing resumes with the next request.
  void resolve_upgrade(bool switched) noexcept;

  ParseError error() const noexcept { return error_; }
  bool awaiting_upgrade() const noexcept;  // an upgrade request has ended; its response decides
  bool upgraded() const noexcept;          // the server switched protocols: the rest is opaque
  bool at_message_boundary() const noexcept;  // no partial message buffered or in flight
  bool in_head() const noexcept;  // a request head has begun and not ended (its empty line not yet seen)

 private:
  // The implementation owns the state machine; see request_parser.cpp.
  enum class State : std::uint8_t;  // the named states, defined in request_parser.cpp

  std::size_t parse_head(std::string_view in, std::size_t i, RequestSink& sink);
  std::size_t parse_chunk_line(std::string_view in, std::size_t i, RequestSink& sink);
  ParseError on_field(std::string_view name, std::string_view value);
  void finish_head(RequestSink& sink);
  void end_message(RequestSink& sink);
  std::size_t fail(ParseError error, std::size_t at) noexcept;
  ParseError check_head() const;

  Limits limits_;
  ParseError error_ = ParseError::kNone;
  State state_{};
  bool empty_line_seen_ = false;  // one stray CRLF already tolerated before this request line
  RequestHead head_;               // head_.raw is the head buffer while the head is parsed
  std::uint64_t remaining_ = 0;    // identity body or chunk data still to come
  std::uint64_t chunk_size_ = 0;   // chunk-size being parsed
  std::string line_buf_;           // stray CRLF, chunk line, chunk CRLF or last chunk + trailers
  std::size_t trailer_bytes_ = 0;
  // The field line in progress, as offsets into head_.raw.
  std::uint32_t line_start_ = 0, name_end_ = 0, value_start_ = 0, value_end_ = 0;
  // What the fields seen so far say about framing.
  std::uint32_t host_count_ = 0;
  std::size_t trailer_name_start_ = 0;  // in line_buf_, of the trailer field being read
  bool has_content_length_ = false;
  bool has_transfer_encoding_ = false;
  bool has_upgrade_field_ = false;
  bool connection_upgrade_ = false;
  bool upgrade_pending_ = false;  // the message in flight awaits its upgrade answer when it ends
};

}  // namespace airlock::http
