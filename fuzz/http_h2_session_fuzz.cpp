// libFuzzer target for the HTTP/2 codec (http/h2_session, issue 13): frames in, events out, in
// both roles.
//
// Input: two control bytes, then the peer's byte stream. Control byte 0: bit 0 the role (0: we
// are the server facing a guest, 1: the client facing an upstream), bit 1 small limits, bit 2
// prepend a valid client preface and SETTINGS (server role) or a server SETTINGS (client role)
// so the mutations reach the frame layer, bit 3 answer every request (server) / send a body
// with trailers (client). Control byte 1: the size of the pieces the stream is fed in (1-256).
// Properties checked (abort on failure): no crash or sanitizer report; after an error, no more
// events and the same error; events are well formed (DATA and trailers only on a stream whose
// head came, trailers end the stream, one close per stream); the bytes the session holds stay
// within its window and buffer limits.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "http/h2_session.hpp"

namespace {

using airlock::http::h2::ErrorCode;
using airlock::http::h2::Event;
using airlock::http::h2::H2Error;
using airlock::http::h2::Headers;
using airlock::http::h2::Role;
using airlock::http::h2::Session;
using airlock::http::h2::SessionLimits;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::string_view kEmptySettings{"\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9};

struct StreamSeen {
  bool head = false;
  bool ended = false;
  bool closed = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint8_t control = data[0];
  const std::size_t piece = 1 + data[1];
  const Role role = (control & 1) ? Role::kClient : Role::kServer;
  SessionLimits limits;
  if (control & 2) {
    limits.max_concurrent_streams = 4;
    limits.max_header_list_size = 1024;
    limits.header_table_size = 256;
    limits.initial_window = 1024;
    limits.connection_window = 4096;
    limits.max_continuations = 2;
    limits.rapid_reset_budget = 3;
    limits.control_frame_budget = 8;
    limits.control_frames_per_stream = 2;
    limits.max_stream_buffer = 2048;
    limits.max_session_buffer = 4096;
  }
  std::string in;
  if (control & 4) {
    if (role == Role::kServer) in.append(kPreface);
    in.append(kEmptySettings);
  }
  in.append(reinterpret_cast<const char*>(data + 2), size - 2);

  Session s(role, limits);
  std::string out;
  if (role == Role::kClient) {
    const Headers get = {{":method", "GET"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", "/"}};
    check(s.submit_request(get, true).error == H2Error::kNone);
    if (control & 8) {
      Headers post = get;
      post[0].value = "POST";
      post.push_back({"authorization", "Bearer placeholder", true});
      const auto r = s.submit_request(post, false);
      check(r.error == H2Error::kNone);
      s.submit_data(r.stream, "body", false);
      s.submit_trailers(r.stream, {{"x-checksum", "1"}});
    }
  }
  s.pending_output(out);

  // The bytes held: DATA within our windows (nghttp2 enforces them; the initial 65535 applies
  // until our SETTINGS are acknowledged), queued DATA within the buffers, one header block.
  const std::size_t held_cap = std::max<std::size_t>(limits.connection_window, 65535) + limits.max_session_buffer +
                               limits.max_header_list_size + 4096;
  std::map<std::int32_t, StreamSeen> seen;
  std::vector<Event> events;
  H2Error error = H2Error::kNone;
  for (std::size_t off = 0; off < in.size(); off += piece) {
    events.clear();
    const H2Error e = s.receive(std::string_view(in).substr(off, piece), events);
    if (error != H2Error::kNone) {
      check(e == error);
      check(events.empty());
    }
    for (const Event& ev : events) {
      StreamSeen& st = seen[ev.stream];
      switch (ev.kind) {
        case Event::Kind::kHeaders:
          check(!st.closed && !st.ended);
          if (!ev.informational) st.head = true;
          if (ev.end_stream) st.ended = true;
          if (role == Role::kServer && (control & 8) && !ev.informational)
            if (s.submit_response(ev.stream, {{":status", "200"}, {"content-type", "text/plain"}}, false) == H2Error::kNone) {
              s.submit_data(ev.stream, "hello", false);
              s.submit_trailers(ev.stream, {{"grpc-status", "0"}});
            }
          break;
        case Event::Kind::kData:
          check(st.head && !st.closed && !st.ended);
          if (ev.end_stream) st.ended = true;
          s.consumed(ev.stream, ev.data.size());
          break;
        case Event::Kind::kTrailers:
          check(st.head && !st.closed && !st.ended && ev.end_stream);
          st.ended = true;
          break;
        case Event::Kind::kClosed:
          check(!st.closed);
          st.closed = true;
          break;
        case Event::Kind::kReset:
        case Event::Kind::kGoaway: break;
      }
    }
    check(s.held_bytes() <= held_cap);
    const H2Error pe = s.pending_output(out);
    if (out.size() > (1u << 20)) out.clear();  // written to the peer
    if (error == H2Error::kNone) error = e != H2Error::kNone ? e : pe;
  }
  (void)s.want_write();
  (void)s.closed();
  return 0;
}
