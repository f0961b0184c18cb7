#pragma once
// The HTTP/2 codec (RFC 9113) for both sides of the gateway's bridge, wrapping nghttp2: a server
// session faces the guest, a client session faces the upstream, and the bridge maps their
// streams one to one (as nghttpx does). Pure: bytes in, events out, bytes to write out; no
// sockets, no clocks, no exceptions on the data path; errors are values.
//
// Flow control is bridged, not automatic: DATA the peer sent stays counted against the window we
// advertised until the caller says the other side has taken it (`consumed`), so a slow reader on
// one side backs up the writer on the other instead of growing memory. Everything this session
// holds is bounded by `SessionLimits`; a peer that exceeds a budget (CONTINUATION, rapid reset,
// control-frame floods, header list size) loses its stream or its connection, never our memory.
//
// Server push is refused: a client session sends SETTINGS_ENABLE_PUSH=0 (a PUSH_PROMISE from the
// upstream is then a connection error) and a server session never promises.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct nghttp2_session;

namespace airlock::http::h2 {

struct Header {
  std::string name, value;
  // Sent as a never-indexed HPACK literal (RFC 7541 §6.2.3): the bridge sets it on substituted
  // values, so a value never enters either dynamic table and no intermediary may index it.
  bool never_index = false;
};
using Headers = std::vector<Header>;

// RFC 9113 error codes the bridge uses (numerically the wire codes).
enum class ErrorCode : std::uint32_t {
  kNoError = 0x0,
  kProtocolError = 0x1,
  kInternalError = 0x2,
  kFlowControlError = 0x3,
  kStreamClosed = 0x5,
  kFrameSizeError = 0x6,
  kRefusedStream = 0x7,
  kCancel = 0x8,
  kCompressionError = 0x9,
  kEnhanceYourCalm = 0xb,
  kHttp11Required = 0xd,
};

struct SessionLimits {
  std::uint32_t max_concurrent_streams = 100;     // SETTINGS_MAX_CONCURRENT_STREAMS we advertise
  std::uint32_t max_header_list_size = 64u << 10; // advertised and enforced (RFC 9113 §6.5.2 size)
  std::uint32_t max_frame_size = 16384;           // SETTINGS_MAX_FRAME_SIZE we accept
  std::uint32_t header_table_size = 4096;         // HPACK dynamic table, decoder and encoder
  std::uint32_t initial_window = 256u << 10;      // per-stream receive window
  std::uint32_t connection_window = 1u << 20;     // connection receive window
  std::size_t max_continuations = 8;              // CONTINUATION frames per header block
  // Rapid reset (CVE-2023-44487): streams the peer resets before they completed cost one token,
  // a stream that completes gives one back; at zero the connection ends (ENHANCE_YOUR_CALM).
  std::uint32_t rapid_reset_budget = 100;
  // SETTINGS, PING, PRIORITY and empty non-final DATA frames the peer may send (the
  // CVE-2019-9512/9515/9516/9518 class): the count may reach the budget; every HEADERS frame
  // received takes `control_frames_per_stream` off it, so real traffic never runs out.
  std::uint32_t control_frame_budget = 1000;
  std::uint32_t control_frames_per_stream = 10;
  std::size_t max_stream_buffer = 1u << 20;   // queued outbound DATA per stream
  std::size_t max_session_buffer = 8u << 20;  // everything this session holds
};

enum class Role { kServer, kClient };

enum class H2Error {
  kNone,
  kProtocol,        // the peer broke HTTP/2; the session sent GOAWAY and is closing
  kFlood,           // a budget was exceeded (CONTINUATION, rapid reset, control frames)
  kCompression,     // HPACK error (incl. a table size above ours)
  kBadHeader,       // a header we were asked to send is not valid HTTP/2
  kNoStream,        // no such open stream, or not in a state that allows this
  kBufferFull,      // queuing this would exceed max_stream_buffer or max_session_buffer
  kClosed,          // the session is closed or going away
  kNoMemory,
  kInternal,        // nghttp2 refused for another reason
};
const char* describe(H2Error e) noexcept;

struct Event {
  enum class Kind {
    kHeaders,   // request (server role) or response (client role) head; `informational` for 1xx
    kData,      // DATA payload (possibly empty with end_stream)
    kTrailers,  // trailer section (always end_stream)
    kReset,     // the peer reset the stream (code)
    kGoaway,    // the peer sent GOAWAY (code, last_stream)
    kClosed,    // the stream is closed (code: why; 0 for a normal end)
  };
  Kind kind = Kind::kHeaders;
  std::int32_t stream = 0;
  Headers headers;
  std::string data;
  bool end_stream = false;
  bool informational = false;
  std::uint32_t code = 0;
  std::int32_t last_stream = 0;
};

struct StreamResult {
  std::int32_t stream = 0;
  H2Error error = H2Error::kNone;
};

class Session {
 public:
  Session(Role role, SessionLimits limits);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Role role() const noexcept { return role_; }
  const SessionLimits& limits() const noexcept { return limits_; }

  // Feeds bytes from the peer; appends what they meant to `events`. An error ends the session
  // (pending_output still yields its GOAWAY). A connection error nghttp2 finds itself (bad
  // frame, flow control, HPACK) is returned by the pending_output that sends its GOAWAY, and by
  // every later call: drive the session as receive → pending_output → write, and stop at the
  // first error.
  H2Error receive(std::string_view bytes, std::vector<Event>& events);
  // Appends the bytes to send to the peer (connection preface and SETTINGS first); returns the
  // session's error, if it has one, after appending its last bytes. A stream that closes as its
  // last frame leaves reports kClosed through take_events() (or the next receive()).
  H2Error pending_output(std::string& out);
  void take_events(std::vector<Event>& events);

  StreamResult submit_request(const Headers& headers, bool end_stream);                 // client
  H2Error submit_response(std::int32_t stream, const Headers& headers, bool end_stream);  // server; 1xx allowed
  // Queues DATA; it leaves as the peer's flow-control window allows.
  H2Error submit_data(std::int32_t stream, std::string_view bytes, bool end_stream);
  // Ends the stream with a trailer section after the queued DATA.
  H2Error submit_trailers(std::int32_t stream, const Headers& headers);
  H2Error reset(std::int32_t stream, ErrorCode code);
  H2Error goaway(ErrorCode code);

  // The other side took `n` bytes of this stream's DATA: the peer may send that much more.
  void consumed(std::int32_t stream, std::size_t n);

  std::size_t queued_bytes(std::int32_t stream) const;  // outbound DATA not yet sent
  std::size_t held_bytes() const noexcept;              // received-not-consumed + queued + headers
  bool want_write() const;
  bool closed() const;
  H2Error error() const noexcept { return error_; }
  std::size_t open_streams() const noexcept { return streams_.size(); }
  // HPACK dynamic table sizes (RFC 7541 §4.1), for tests and metrics.
  std::size_t hpack_decoder_table_size() const;
  std::size_t hpack_encoder_table_size() const;

  struct Stream;  // per-stream state (public for the nghttp2 callbacks in the .cpp)
  struct Callbacks;

 private:
  Role role_;
  SessionLimits limits_;
  nghttp2_session* session_ = nullptr;
  // By id, ascending: ids only grow, so a new stream goes at the end (a search in a short array,
  // no tree node per stream).
  std::vector<std::pair<std::int32_t, std::unique_ptr<Stream>>> streams_;
  std::vector<Event>* events_ = nullptr;  // where callbacks put events: receive()'s, or later_
  std::vector<Event> later_;              // events of pending_output(), one kClosed per stream at most
  H2Error error_ = H2Error::kNone;
  std::size_t received_unconsumed_ = 0;
  std::size_t queued_total_ = 0;
  std::size_t header_bytes_ = 0;  // header blocks being received
  std::uint32_t reset_tokens_ = 0;
  std::uint64_t control_frames_ = 0;
  bool local_goaway_ = false;
  bool peer_goaway_ = false;
  bool requested_goaway_ = false;  // GOAWAY by goaway() or a budget, not by nghttp2

  Stream* find(std::int32_t stream) const;
  Stream& ensure(std::int32_t stream);
  void erase(std::int32_t stream);
  int fail(H2Error e, ErrorCode code);  // ends the session; returns the callback failure code
  bool count_control();  // false once the control-frame budget is spent
};

}  // namespace airlock::http::h2
