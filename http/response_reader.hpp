#pragma once
// Incremental HTTP/1.1 response framing (RFC 9112 §4–§7), for the gateway's response direction:
// it finds each response head in the upstream's byte stream, so the gateway can tell a switch
// of protocols (101, or 2xx to CONNECT) from a refusal, and see the codings a response uses.
// Pure: bytes in, events out. It observes only: the bytes are forwarded (scrubbed) by the
// caller. Every buffer is bounded.
#include "http/small_fifo.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace airlock::http {

// What the request a response answers asked for (the caller queues one per forwarded request).
struct ResponseExpectation {
  bool head = false;     // HEAD: no body whatever the framing fields say
  bool connect = false;  // CONNECT: 2xx turns the connection into a tunnel
  bool upgrade = false;  // an Upgrade offer: 101 switches protocols
  bool http10 = false;   // an HTTP/1.0 request: its client reads no chunked body
};

enum class ResponseError : std::uint8_t {
  kNone,
  kHeadTooLarge,
  kBadStatusLine,
  kBadHeaderField,
  kBareCr,
  kAmbiguousFraming,     // Content-Length and Transfer-Encoding (RFC 9112 §6.3 rule 3)
  kBadContentLength,
  kBadChunk,
  kTrailersTooLarge,
  kUnrequestedResponse,  // a response with no request waiting for it
  kUnrequestedSwitch,    // 101 to a request that offered no upgrade
};
std::string_view to_string(ResponseError error) noexcept;

struct ResponseHead {
  // How the body is delimited (RFC 9112 §6.3), as the reader decided it.
  enum class Body : std::uint8_t { kNone, kLength, kChunked, kClose };
  int status = 0;
  std::uint8_t minor_version = 1;
  std::string status_line;  // without its line end
  Body body = Body::kNone;
  std::uint64_t length = 0;  // kLength
  // Name, value (trimmed), in order: views into the reader's buffer, valid until the reader
  // begins the next head (as the head itself is).
  std::vector<std::pair<std::string_view, std::string_view>> fields;
  bool interim = false;   // 1xx other than 101: another head follows for the same request
  bool switched = false;  // 101 to an upgrade offer, or 2xx to CONNECT: the rest is opaque
  ResponseExpectation request;  // what the request it answers asked for

  // Values of every field named `name` (ASCII case-insensitive), in order.
  std::vector<std::string_view> values(std::string_view name) const;
  // Every coding listed in the fields named `name` (a comma list), lower case, in order.
  std::vector<std::string> codings(std::string_view name) const;
};

struct ResponseLimits {
  std::size_t max_head = 64 * 1024;
  std::size_t max_chunk_line = 4 * 1024;
  std::size_t max_trailers = 16 * 1024;
  std::size_t max_fields = 256;
};

class ResponseReader {
 public:
  enum class Event : std::uint8_t {
    kNeedMore,  // everything given was consumed
    kHead,      // a response head ended; see head()
    kBody,      // body bytes (framing removed) were consumed; see body()
    kEnd,       // the body's last bytes (body(), maybe empty) and its end; see trailers()
    kOpaque,    // after a switch: the rest of the stream is not HTTP (consumed: none)
    kError,     // see error(); nothing more is consumed
  };

  explicit ResponseReader(ResponseLimits limits = {}) : limits_(limits) {}
  ~ResponseReader();  // wipes the held line and head (they are the upstream's bytes)
  ResponseReader(const ResponseReader&) = delete;
  ResponseReader& operator=(const ResponseReader&) = delete;

  void expect(const ResponseExpectation& e) { expected_.push_back(e); }
  std::size_t pending_requests() const noexcept { return expected_.size(); }

  // Consumes a prefix of `in` (`used` bytes) up to the next event.
  Event feed(std::string_view in, std::size_t& used);
  // The end of the upstream's stream: an error when a response was cut short (its body
  // declared longer, or its head unfinished); a close-delimited body ends here.
  ResponseError finish() const noexcept;

  const ResponseHead& head() const noexcept { return head_; }
  // With kBody and kEnd: the body bytes of this event, a view of the input just fed.
  std::string_view body() const noexcept { return body_; }
  // With kEnd of a chunked body: its trailer field lines, each ended by CRLF.
  const std::string& trailers() const noexcept { return trailers_; }
  // Between responses or inside a head: what feed() consumes next is head bytes.
  bool in_head() const noexcept { return state_ == State::kStatusLine || state_ == State::kFields; }
  // Between responses with none expected and no byte of the next one held.
  bool at_rest() const noexcept { return state_ == State::kStatusLine && expected_.empty() && line_.empty(); }
  ResponseError error() const noexcept { return error_; }

 private:
  enum class State : std::uint8_t {
    kStatusLine, kFields, kBodyLength, kBodyUntilClose, kChunkLine, kChunkData, kChunkDataEnd, kTrailers,
    kOpaque, kFailed,
  };
  Event fail(ResponseError e) {
    error_ = e;
    state_ = State::kFailed;
    return Event::kError;
  }
  // Takes bytes of `in` into line_ until LF; true when a whole line (CR stripped) is there.
  // With `view`: the line is given there, read in place from `in` when it is whole in it.
  bool take_line(std::string_view in, std::size_t& i, std::size_t used, std::size_t limit, bool& too_long,
                 std::string_view* view = nullptr);
  Event on_status_line(std::string_view line);
  Event on_field_line(std::string_view line);
  Event on_head_end();
  Event on_chunk_line();
  void message_end() { state_ = State::kStatusLine; }
  void reset_head();  // wipes head_ and field_bytes_, keeps their buffers

  ResponseLimits limits_;
  State state_ = State::kStatusLine;
  ResponseError error_ = ResponseError::kNone;
  SmallFifo<ResponseExpectation> expected_;  // allocates nothing while no request is due
  ResponseHead head_;
  // The head's field names and values, one after another (head_.fields views them once the
  // head has ended), and where each is. Wiped and kept for the next head (no allocation per
  // field on a keep-alive connection) while at most kMaxKeptFieldBytes.
  struct FieldSpan {
    std::uint32_t name, name_size, value, value_size;
  };
  static constexpr std::size_t kMaxKeptFieldBytes = 4096;
  std::string field_bytes_;
  std::vector<FieldSpan> field_spans_;
  std::string line_;
  std::string trailers_;
  std::string_view body_;
  std::size_t head_bytes_ = 0;
  std::size_t trailer_bytes_ = 0;
  std::uint64_t remaining_ = 0;
};

}  // namespace airlock::http
