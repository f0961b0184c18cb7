// The HTTP/2 codec against real nghttp2 peers in memory: a client Session talking to a server
// Session, and hand-built frames for what a well-behaved nghttp2 peer would never send (floods,
// bad HPACK, push). Values here are made up; failures report sizes and codes.
#include <http/h2_session.hpp>

#include <gtest/gtest.h>

#include <nghttp2/nghttp2.h>

#include <string>
#include <vector>

namespace airlock::http::h2 {
namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum : std::uint8_t { kData = 0, kHeadersFrame = 1, kPriority = 2, kRst = 3, kSettings = 4, kPushPromise = 5, kPing = 6, kGoaway = 7, kWindowUpdate = 8, kContinuation = 9 };
enum : std::uint8_t { kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4 };

std::string u32(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string f;
  const std::size_t n = payload.size();
  f += static_cast<char>(n >> 16);
  f += static_cast<char>(n >> 8);
  f += static_cast<char>(n);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += u32(stream);
  f.append(payload);
  return f;
}

// HPACK integer with an N-bit prefix (RFC 7541 §5.1), `first` holding the pattern bits.
std::string hpack_int(std::uint8_t first, int prefix_bits, std::size_t v) {
  const std::size_t max = (1u << prefix_bits) - 1;
  std::string out;
  if (v < max) {
    out += static_cast<char>(first | v);
    return out;
  }
  out += static_cast<char>(first | max);
  v -= max;
  while (v >= 128) {
    out += static_cast<char>((v % 128) + 128);
    v /= 128;
  }
  out += static_cast<char>(v);
  return out;
}

// A literal with a new name: 0x00 without indexing, 0x40 with incremental indexing, 0x10 never.
std::string literal(std::string_view name, std::string_view value, std::uint8_t kind = 0x00) {
  std::string out(1, static_cast<char>(kind));
  out += hpack_int(0, 7, name.size());
  out.append(name);
  out += hpack_int(0, 7, value.size());
  out.append(value);
  return out;
}

// GET https://api.example.com/ as an HPACK block (static indexes for :method, :scheme, :path).
std::string get_block(std::string_view authority = "api.example.com") {
  std::string b;
  b += static_cast<char>(0x82);  // :method GET
  b += static_cast<char>(0x87);  // :scheme https
  b += static_cast<char>(0x84);  // :path /
  b += literal(":authority", authority);
  return b;
}

std::string client_preface() { return std::string(kPreface) + frame(kSettings, 0, 0, ""); }

Headers request(std::string_view authority = "api.example.com", std::string_view method = "GET") {
  return {{":method", std::string(method)}, {":scheme", "https"}, {":authority", std::string(authority)}, {":path", "/v1"}};
}

// The error code of the last GOAWAY frame in `out` (frames walked by their length), or -1.
long goaway_code(const std::string& out) {
  long code = -1;
  for (std::size_t at = 0; at + 9 <= out.size();) {
    const std::size_t len = (static_cast<std::uint8_t>(out[at]) << 16) | (static_cast<std::uint8_t>(out[at + 1]) << 8) |
                            static_cast<std::uint8_t>(out[at + 2]);
    if (static_cast<std::uint8_t>(out[at + 3]) == kGoaway && at + 17 <= out.size())
      code = (static_cast<std::uint8_t>(out[at + 13]) << 24) | (static_cast<std::uint8_t>(out[at + 14]) << 16) |
             (static_cast<std::uint8_t>(out[at + 15]) << 8) | static_cast<std::uint8_t>(out[at + 16]);
    at += 9 + len;
  }
  return code;
}

const Header* find_header(const Headers& h, std::string_view name) {
  for (const Header& x : h)
    if (x.name == name) return &x;
  return nullptr;
}

// A client and a server Session wired back to back.
struct Pair {
  Session client;
  Session server;
  std::vector<Event> client_events, server_events;
  H2Error client_error = H2Error::kNone, server_error = H2Error::kNone;
  std::size_t bytes_to_client = 0;

  explicit Pair(SessionLimits server_limits = {}, SessionLimits client_limits = {})
      : client(Role::kClient, client_limits), server(Role::kServer, server_limits) {}

  // Exchanges bytes until neither side has anything to say (bounded).
  void pump(bool deliver_to_client = true) {
    for (int i = 0; i < 1000; ++i) {
      std::string c2s, s2c;
      client.pending_output(c2s);
      server.pending_output(s2c);
      if (c2s.empty() && s2c.empty()) return;
      if (!c2s.empty()) {
        H2Error e = server.receive(c2s, server_events);
        if (e != H2Error::kNone) server_error = e;
      }
      if (!s2c.empty() && deliver_to_client) {
        bytes_to_client += s2c.size();
        H2Error e = client.receive(s2c, client_events);
        if (e != H2Error::kNone) client_error = e;
      }
      if (!deliver_to_client && c2s.empty()) return;
    }
    FAIL() << "pump did not settle";
  }
};

std::vector<Event> of_kind(const std::vector<Event>& events, Event::Kind k) {
  std::vector<Event> out;
  for (const Event& e : events)
    if (e.kind == k) out.push_back(e);
  return out;
}

std::string data_of(const std::vector<Event>& events, std::int32_t stream) {
  std::string out;
  for (const Event& e : events)
    if (e.kind == Event::Kind::kData && e.stream == stream) out += e.data;
  return out;
}

TEST(H2Session, RequestResponseRoundTripWithTrailers) {
  Pair p;
  Headers req = request("api.example.com", "POST");
  req.push_back({"content-type", "application/grpc"});
  req.push_back({"te", "trailers"});
  StreamResult r = p.client.submit_request(req, false);
  ASSERT_EQ(r.error, H2Error::kNone);
  ASSERT_EQ(r.stream, 1);
  ASSERT_EQ(p.client.submit_data(r.stream, "hello ", false), H2Error::kNone);
  ASSERT_EQ(p.client.submit_data(r.stream, "world", true), H2Error::kNone);
  p.pump();
  ASSERT_EQ(p.server_error, H2Error::kNone);

  auto heads = of_kind(p.server_events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_FALSE(heads[0].end_stream);
  ASSERT_NE(find_header(heads[0].headers, ":authority"), nullptr);
  EXPECT_EQ(find_header(heads[0].headers, ":authority")->value, "api.example.com");
  EXPECT_EQ(find_header(heads[0].headers, ":method")->value, "POST");
  EXPECT_EQ(data_of(p.server_events, 1), "hello world");
  EXPECT_TRUE(p.server_events.back().end_stream || of_kind(p.server_events, Event::Kind::kData).back().end_stream);
  EXPECT_EQ(p.server.held_bytes(), 11u);
  p.server.consumed(1, 11);
  EXPECT_EQ(p.server.held_bytes(), 0u);

  ASSERT_EQ(p.server.submit_response(1, {{":status", "200"}, {"content-type", "application/grpc"}}, false), H2Error::kNone);
  ASSERT_EQ(p.server.submit_data(1, "reply", false), H2Error::kNone);
  ASSERT_EQ(p.server.submit_trailers(1, {{"grpc-status", "0"}, {"grpc-message", "ok"}}), H2Error::kNone);
  p.pump();
  ASSERT_EQ(p.client_error, H2Error::kNone);
  auto resp = of_kind(p.client_events, Event::Kind::kHeaders);
  ASSERT_EQ(resp.size(), 1u);
  EXPECT_EQ(find_header(resp[0].headers, ":status")->value, "200");
  EXPECT_FALSE(resp[0].informational);
  EXPECT_EQ(data_of(p.client_events, 1), "reply");
  auto trailers = of_kind(p.client_events, Event::Kind::kTrailers);
  ASSERT_EQ(trailers.size(), 1u);
  EXPECT_TRUE(trailers[0].end_stream);
  EXPECT_EQ(find_header(trailers[0].headers, "grpc-status")->value, "0");
  auto closed = of_kind(p.client_events, Event::Kind::kClosed);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code, 0u);
  p.client.consumed(1, 5);
  EXPECT_EQ(p.client.open_streams(), 0u);
  EXPECT_EQ(p.server.open_streams(), 0u);
}

TEST(H2Session, StreamsClosedBySendingReportTheirClose) {
  // The server's stream closes when its END_STREAM leaves, inside pending_output: the close is
  // reported by take_events (and by the next receive), once.
  Pair p;
  StreamResult r = p.client.submit_request(request(), true);
  p.pump();
  ASSERT_EQ(of_kind(p.server_events, Event::Kind::kClosed).size(), 0u);
  ASSERT_EQ(p.server.submit_response(r.stream, {{":status", "200"}}, true), H2Error::kNone);
  EXPECT_EQ(p.server.submit_response(r.stream, {{":status", "200"}}, true), H2Error::kNoStream) << "two final heads";
  std::string out;
  p.server.pending_output(out);
  std::vector<Event> later;
  p.server.take_events(later);
  auto closed = of_kind(later, Event::Kind::kClosed);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].stream, r.stream);
  EXPECT_EQ(closed[0].code, 0u);
  later.clear();
  p.server.take_events(later);
  EXPECT_TRUE(later.empty());
  EXPECT_EQ(p.server.open_streams(), 0u);
  // A reset we send closes the stream the same way.
  StreamResult r2 = p.client.submit_request(request(), true);
  p.pump();
  ASSERT_EQ(p.server.reset(r2.stream, ErrorCode::kRefusedStream), H2Error::kNone);
  out.clear();
  p.server.pending_output(out);
  p.server.take_events(later);
  closed = of_kind(later, Event::Kind::kClosed);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].code, 7u);
}

TEST(H2Session, InformationalResponseThenFinal) {
  Pair p;
  StreamResult r = p.client.submit_request(request("api.example.com", "POST"), false);
  p.pump();
  ASSERT_EQ(p.server.submit_response(r.stream, {{":status", "100"}}, false), H2Error::kNone);
  ASSERT_EQ(p.server.submit_response(r.stream, {{":status", "204"}}, true), H2Error::kNone);
  p.pump();
  auto heads = of_kind(p.client_events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_TRUE(heads[0].informational);
  EXPECT_FALSE(heads[1].informational);
  EXPECT_TRUE(heads[1].end_stream);
  EXPECT_TRUE(of_kind(p.client_events, Event::Kind::kTrailers).empty());
}

TEST(H2Session, NeverIndexedValuesStayLiteralAndOthersAreIndexed) {
  // The same 40-byte header sent twice: never-indexed, the second block still carries the value
  // (nghttp2 Huffman-codes it, so compare sizes); ordinary, it shrinks to a one-byte index.
  const std::string value = "Bearer sk-test-0123456789abcdefghijklmnop";
  auto second_block_size = [&](bool never_index, std::string* blocks) {
    Session client(Role::kClient, {});
    Headers req = request();
    req.push_back({"x-api-key", value, never_index});
    std::string first, second;
    EXPECT_EQ(client.submit_request(req, true).error, H2Error::kNone);
    client.pending_output(first);
    EXPECT_EQ(client.submit_request(req, true).error, H2Error::kNone);
    client.pending_output(second);
    if (blocks) *blocks = first + second;
    return second.size();
  };
  std::string blocks;
  const std::size_t never = second_block_size(true, &blocks);
  const std::size_t indexed = second_block_size(false, nullptr);
  EXPECT_GE(never, indexed + 20) << "never-indexed value was indexed";

  Session server(Role::kServer, {});
  std::vector<Event> events;
  ASSERT_EQ(server.receive(blocks, events), H2Error::kNone);
  auto heads = of_kind(events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 2u);
  for (const Event& h : heads) {
    ASSERT_NE(find_header(h.headers, "x-api-key"), nullptr);
    EXPECT_EQ(find_header(h.headers, "x-api-key")->value, value);
    EXPECT_TRUE(find_header(h.headers, "x-api-key")->never_index);
  }
  // The decoder's table holds only ":authority: api.example.com" (10 + 15 + 32 bytes).
  EXPECT_EQ(server.hpack_decoder_table_size(), 57u);
}

TEST(H2Session, DynamicTableReuseIsDecodedPerStream) {
  // Stream 3 refers to a dynamic-table entry that stream 1 inserted: each stream's event carries
  // the full, decoded value, so a gate sees it whatever the encoding.
  Session server(Role::kServer, {});
  std::vector<Event> events;
  std::string b1 = get_block() + literal("authorization", "Bearer $PLACEHOLDER", 0x40);
  std::string b3 = get_block();
  b3 += static_cast<char>(0x80 | 62);  // dynamic index 62: the entry stream 1 added last
  std::string in = client_preface() + frame(kHeadersFrame, kEndHeaders | kEndStream, 1, b1) +
                   frame(kHeadersFrame, kEndHeaders | kEndStream, 3, b3);
  ASSERT_EQ(server.receive(in, events), H2Error::kNone);
  auto heads = of_kind(events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(heads[1].stream, 3);
  ASSERT_NE(find_header(heads[1].headers, "authorization"), nullptr);
  EXPECT_EQ(find_header(heads[1].headers, "authorization")->value, "Bearer $PLACEHOLDER");
}

TEST(H2Session, SlowReaderBacksUpWriterWithBoundedMemory) {
  // Upload direction: the server (gateway, guest side) never consumes what it received, as when
  // the upstream does not read. The client can send only the windows; the rest waits at the
  // client, and the gateway holds at most the window.
  SessionLimits sl;
  sl.initial_window = 64u << 10;
  sl.connection_window = 128u << 10;
  Pair p(sl);
  StreamResult r = p.client.submit_request(request("api.example.com", "POST"), false);
  ASSERT_EQ(r.error, H2Error::kNone);
  const std::string chunk(16u << 10, 'x');
  std::size_t queued = 0;
  while (p.client.submit_data(r.stream, chunk, false) == H2Error::kNone) queued += chunk.size();
  EXPECT_EQ(queued, SessionLimits{}.max_stream_buffer) << "submit_data refuses past the stream buffer";
  for (int i = 0; i < 5; ++i) p.pump();
  EXPECT_EQ(p.server_error, H2Error::kNone);
  EXPECT_LE(p.server.held_bytes(), sl.initial_window + 1024);
  EXPECT_GT(p.client.queued_bytes(r.stream), queued - sl.initial_window - 1);
  const std::size_t got = data_of(p.server_events, r.stream).size();
  EXPECT_EQ(got, p.server.held_bytes());

  // The other side takes the bytes: the window opens and more flows.
  p.server.consumed(r.stream, got);
  p.pump();
  const std::size_t more = data_of(p.server_events, r.stream).size();
  EXPECT_GT(more, got);
  EXPECT_LE(p.server.held_bytes(), sl.initial_window + 1024);
}

TEST(H2Session, PeerThatNeverReadsBoundsQueuedResponse) {
  // Download direction: the guest never reads; the server's queue stops at max_stream_buffer
  // and submit_data says so, so the bridge stops taking upstream DATA.
  SessionLimits sl;
  sl.max_stream_buffer = 256u << 10;
  Pair p(sl);
  StreamResult r = p.client.submit_request(request(), true);
  p.pump();
  ASSERT_EQ(p.server.submit_response(r.stream, {{":status", "200"}}, false), H2Error::kNone);
  const std::string chunk(8u << 10, 'y');
  std::size_t accepted = 0;
  for (int i = 0; i < 1000; ++i) {
    if (p.server.submit_data(r.stream, chunk, false) != H2Error::kNone) break;
    accepted += chunk.size();
    std::string out;
    p.server.pending_output(out);  // written to a socket the guest never reads
  }
  // At most the client's stream window left; the rest stays queued, bounded.
  EXPECT_LE(accepted, sl.max_stream_buffer + SessionLimits{}.initial_window + chunk.size());
  EXPECT_LE(p.server.held_bytes(), sl.max_stream_buffer);
  EXPECT_EQ(p.server.submit_data(r.stream, chunk, false), H2Error::kBufferFull);
}

TEST(H2Session, SessionBufferCapsAllStreams) {
  SessionLimits sl;
  sl.max_stream_buffer = 64u << 10;
  sl.max_session_buffer = 100u << 10;
  Session client(Role::kClient, sl);
  StreamResult a = client.submit_request(request(), false);
  StreamResult b = client.submit_request(request(), false);
  const std::string chunk(60u << 10, 'z');
  EXPECT_EQ(client.submit_data(a.stream, chunk, false), H2Error::kNone);
  EXPECT_EQ(client.submit_data(b.stream, chunk, false), H2Error::kBufferFull);
  EXPECT_LE(client.held_bytes(), sl.max_session_buffer);
}

TEST(H2Session, ContinuationFloodEndsTheConnection) {
  SessionLimits sl;
  sl.max_continuations = 8;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  std::string in = client_preface() + frame(kHeadersFrame, 0, 1, get_block());
  for (int i = 0; i < 50; ++i) in += frame(kContinuation, 0, 1, literal("x-a", "b"));
  EXPECT_EQ(server.receive(in, events), H2Error::kFlood);
  EXPECT_TRUE(of_kind(events, Event::Kind::kHeaders).empty());
  // Within the cap, a block split over CONTINUATION is one head.
  Session ok(Role::kServer, sl);
  std::vector<Event> ok_events;
  std::string b = get_block() + literal("authorization", "Bearer $PLACEHOLDER");
  std::string split = client_preface() + frame(kHeadersFrame, kEndStream, 1, b.substr(0, 5)) +
                      frame(kContinuation, 0, 1, b.substr(5, 10)) + frame(kContinuation, kEndHeaders, 1, b.substr(15));
  ASSERT_EQ(ok.receive(split, ok_events), H2Error::kNone);
  auto heads = of_kind(ok_events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(find_header(heads[0].headers, "authorization")->value, "Bearer $PLACEHOLDER");
}

TEST(H2Session, RapidResetEndsTheConnection) {
  SessionLimits sl;
  sl.rapid_reset_budget = 50;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  ASSERT_EQ(server.receive(client_preface(), events), H2Error::kNone);
  H2Error e = H2Error::kNone;
  std::uint32_t id = 1;
  for (int i = 0; i < 500 && e == H2Error::kNone; ++i, id += 2)
    e = server.receive(frame(kHeadersFrame, kEndHeaders | kEndStream, id, get_block()) + frame(kRst, 0, id, u32(8)), events);
  EXPECT_EQ(e, H2Error::kFlood);
  EXPECT_LE(id, 2u * 51 + 1);
  std::string out;
  server.pending_output(out);
  ASSERT_GE(out.size(), 17u);
  // The last frame is GOAWAY ENHANCE_YOUR_CALM.
  const std::string tail = out.substr(out.size() - 17);
  EXPECT_EQ(static_cast<std::uint8_t>(tail[3]), kGoaway);
  EXPECT_EQ(tail.substr(13, 4), u32(0xb));
}

TEST(H2Session, CompletedStreamsRefillTheResetBudget) {
  SessionLimits sl;
  sl.rapid_reset_budget = 20;
  Pair p(sl);
  for (int i = 0; i < 200; ++i) {
    StreamResult r = p.client.submit_request(request(), true);
    ASSERT_EQ(r.error, H2Error::kNone);
    p.pump();
    if (i % 2 == 0) {
      ASSERT_EQ(p.server.submit_response(r.stream, {{":status", "200"}}, true), H2Error::kNone);
    } else {
      ASSERT_EQ(p.client.reset(r.stream, ErrorCode::kCancel), H2Error::kNone);
    }
    p.pump();
  }
  EXPECT_EQ(p.server_error, H2Error::kNone);
  EXPECT_FALSE(p.server.closed());
}

TEST(H2Session, PingFloodEndsTheConnection) {
  SessionLimits sl;
  sl.control_frame_budget = 100;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  std::string in = client_preface();
  for (int i = 0; i < 200; ++i) in += frame(kPing, 0, 0, std::string(8, 'p'));
  EXPECT_EQ(server.receive(in, events), H2Error::kFlood);
  std::string out;
  server.pending_output(out);
  EXPECT_LT(out.size(), 120u * 17) << "answered the flood";
}

TEST(H2Session, EmptyDataFloodEndsTheConnection) {
  SessionLimits sl;
  sl.control_frame_budget = 100;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  std::string in = client_preface() + frame(kHeadersFrame, kEndHeaders, 1, get_block());
  for (int i = 0; i < 200; ++i) in += frame(kData, 0, 1, "");
  EXPECT_EQ(server.receive(in, events), H2Error::kFlood);
}

TEST(H2Session, SettingsFloodEndsTheConnection) {
  SessionLimits sl;
  sl.control_frame_budget = 100;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  std::string in = client_preface();
  for (int i = 0; i < 200; ++i) in += frame(kSettings, 0, 0, "");
  EXPECT_EQ(server.receive(in, events), H2Error::kFlood);
}

TEST(H2Session, OversizedHeaderListResetsOnlyThatStream) {
  SessionLimits sl;
  sl.max_header_list_size = 16u << 10;
  Pair p(sl);
  Headers big = request();
  for (int i = 0; i < 5; ++i) big.push_back({"x-big-" + std::to_string(i), std::string(5000, 'a' + i)});
  StreamResult bad = p.client.submit_request(big, true);
  StreamResult good = p.client.submit_request(request(), true);
  ASSERT_EQ(bad.error, H2Error::kNone);
  p.pump();
  EXPECT_EQ(p.server_error, H2Error::kNone);
  auto heads = of_kind(p.server_events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].stream, good.stream);
  auto resets = of_kind(p.client_events, Event::Kind::kReset);
  ASSERT_EQ(resets.size(), 1u);
  EXPECT_EQ(resets[0].stream, bad.stream);
  EXPECT_EQ(p.server.held_bytes(), 0u) << "the rejected block was not kept";
}

TEST(H2Session, StreamsPastTheConcurrencyLimitAreRefused) {
  // Before our SETTINGS are acknowledged, too: the peer opens 5 streams, 2 are allowed.
  SessionLimits sl;
  sl.max_concurrent_streams = 2;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  std::string in = client_preface();
  for (std::uint32_t id = 1; id <= 9; id += 2) in += frame(kHeadersFrame, kEndHeaders | kEndStream, id, get_block());
  ASSERT_EQ(server.receive(in, events), H2Error::kNone);
  EXPECT_EQ(of_kind(events, Event::Kind::kHeaders).size(), 2u);
  std::string out;
  server.pending_output(out);
  // Three RST_STREAM(REFUSED_STREAM) frames.
  std::size_t refused = 0;
  for (std::size_t at = 0; at + 9 <= out.size();) {
    const std::size_t len = (static_cast<std::uint8_t>(out[at]) << 16) | (static_cast<std::uint8_t>(out[at + 1]) << 8) |
                            static_cast<std::uint8_t>(out[at + 2]);
    if (static_cast<std::uint8_t>(out[at + 3]) == kRst && out.substr(at + 9, 4) == u32(0x7)) ++refused;
    at += 9 + len;
  }
  EXPECT_EQ(refused, 3u);
  EXPECT_LE(server.open_streams(), 2u);
}

TEST(H2Session, FrameAboveOurMaxFrameSizeEndsTheConnection) {
  Session server(Role::kServer, {});
  std::vector<Event> events;
  std::string in = client_preface() + frame(kHeadersFrame, kEndHeaders, 1, get_block()) + frame(kData, 0, 1, std::string(20000, 'f'));
  H2Error e = server.receive(in, events);
  std::string out;
  if (e == H2Error::kNone) e = server.pending_output(out);
  EXPECT_EQ(e, H2Error::kProtocol);
  EXPECT_EQ(goaway_code(out), 0x6) << "GOAWAY FRAME_SIZE_ERROR";
  EXPECT_EQ(server.held_bytes(), 0u);
}

TEST(H2Session, HpackTableSizeAboveOursIsACompressionError) {
  SessionLimits sl;
  sl.header_table_size = 256;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  // Our SETTINGS (table 256) acknowledged, then a block that grows the table to 4096.
  ASSERT_EQ(server.receive(client_preface(), events), H2Error::kNone);
  std::string settings;
  server.pending_output(settings);
  std::string block = hpack_int(0x20, 5, 4096) + get_block();
  H2Error e = server.receive(frame(kSettings, kAck, 0, "") + frame(kHeadersFrame, kEndHeaders | kEndStream, 1, block), events);
  std::string out;
  if (e == H2Error::kNone) e = server.pending_output(out);
  EXPECT_EQ(e, H2Error::kCompression);
  EXPECT_EQ(goaway_code(out), 0x9) << "GOAWAY COMPRESSION_ERROR";
  EXPECT_TRUE(of_kind(events, Event::Kind::kHeaders).empty());
}

TEST(H2Session, OurEncoderKeepsToItsTableCap) {
  // A peer advertising a huge table cannot make us keep 1 MiB of header state.
  SessionLimits cl;
  cl.header_table_size = 4096;
  Session client(Role::kClient, cl);
  std::vector<Event> events;
  std::string settings_payload;
  settings_payload += '\0';
  settings_payload += '\x01';
  settings_payload += u32(1u << 20);
  ASSERT_EQ(client.receive(frame(kSettings, 0, 0, settings_payload), events), H2Error::kNone);
  Headers req = request();
  for (int i = 0; i < 50; ++i) req.push_back({"x-h" + std::to_string(i), std::string(200, 'q')});
  ASSERT_EQ(client.submit_request(req, true).error, H2Error::kNone);
  std::string out1, out2;
  client.pending_output(out1);
  ASSERT_EQ(client.submit_request(req, true).error, H2Error::kNone);
  client.pending_output(out2);
  // With a 4 KiB table at most ~16 of the 50 values can be indexed: the second block stays big.
  EXPECT_GT(out2.size(), 30u * 200);
}

TEST(H2Session, ClientRefusesPushPromise) {
  Session client(Role::kClient, {});
  StreamResult r = client.submit_request(request(), true);
  std::string out;
  client.pending_output(out);
  // Our SETTINGS carries ENABLE_PUSH = 0.
  const std::string push_off = std::string("\x00\x02", 2) + u32(0);
  ASSERT_GE(out.size(), kPreface.size() + 9);
  const std::size_t len = (static_cast<std::uint8_t>(out[kPreface.size()]) << 16) |
                          (static_cast<std::uint8_t>(out[kPreface.size() + 1]) << 8) |
                          static_cast<std::uint8_t>(out[kPreface.size() + 2]);
  EXPECT_NE(out.substr(kPreface.size() + 9, len).find(push_off), std::string::npos);

  std::vector<Event> events;
  std::string promise = u32(2) + std::string("\x82\x87\x84", 3) + literal(":authority", "api.example.com");
  std::string in = frame(kSettings, 0, 0, "") + frame(kPushPromise, kEndHeaders, r.stream, promise);
  EXPECT_EQ(client.receive(in, events), H2Error::kProtocol);
  std::string goaway;
  client.pending_output(goaway);
  ASSERT_GE(goaway.size(), 17u);
  EXPECT_EQ(static_cast<std::uint8_t>(goaway[goaway.size() - 17 + 3]), kGoaway);
  EXPECT_EQ(goaway.substr(goaway.size() - 4), u32(0x1));
}

TEST(H2Session, GoawayLetsInFlightStreamsFinishAndRefusesNewOnes) {
  Pair p;
  StreamResult r = p.client.submit_request(request(), true);
  p.pump();
  ASSERT_EQ(p.server.goaway(ErrorCode::kNoError), H2Error::kNone);
  p.pump();
  auto goaways = of_kind(p.client_events, Event::Kind::kGoaway);
  ASSERT_EQ(goaways.size(), 1u);
  EXPECT_EQ(goaways[0].code, 0u);
  EXPECT_EQ(goaways[0].last_stream, r.stream);
  EXPECT_NE(p.client.submit_request(request(), true).error, H2Error::kNone);
  ASSERT_EQ(p.server.submit_response(r.stream, {{":status", "200"}}, true), H2Error::kNone);
  p.pump();
  EXPECT_EQ(of_kind(p.client_events, Event::Kind::kHeaders).size(), 1u);
  EXPECT_TRUE(p.client.closed());
}

TEST(H2Session, HostDifferingFromAuthorityResetsThatStreamOnly) {
  Pair p;
  Headers bad = request("api.example.com");
  bad.push_back({"host", "evil.example.net"});
  Headers userinfo = request("user@api.example.com");
  StreamResult a = p.client.submit_request(request(), true);
  StreamResult b = p.client.submit_request(bad, true);
  StreamResult c = p.client.submit_request(userinfo, true);
  p.pump();
  auto heads = of_kind(p.server_events, Event::Kind::kHeaders);
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].stream, a.stream);
  auto resets = of_kind(p.client_events, Event::Kind::kReset);
  ASSERT_EQ(resets.size(), 2u);
  EXPECT_EQ(resets[0].stream, b.stream);
  EXPECT_EQ(resets[0].code, 1u);
  EXPECT_EQ(resets[1].stream, c.stream);
  EXPECT_EQ(p.server_error, H2Error::kNone);
}

TEST(H2Session, MalformedRequestHeadsAreRejectedByNghttp2) {
  // Missing :path, uppercase name, connection-specific header, CR in a value: a stream error each.
  const std::vector<std::string> blocks = {
      std::string("\x82\x87", 2) + literal(":authority", "a.example"),
      get_block() + literal("X-Upper", "v"),
      get_block() + literal("connection", "close"),
      get_block() + literal("x-v", "a\r\nb"),
  };
  for (const std::string& b : blocks) {
    Session server(Role::kServer, {});
    std::vector<Event> events;
    EXPECT_EQ(server.receive(client_preface() + frame(kHeadersFrame, kEndHeaders | kEndStream, 1, b), events), H2Error::kNone);
    EXPECT_TRUE(of_kind(events, Event::Kind::kHeaders).empty());
  }
}

TEST(H2Session, SubmitRefusesInvalidHeaders) {
  Session client(Role::kClient, {});
  Headers crlf = request();
  crlf.push_back({"authorization", "Bearer x\r\nx-injected: 1"});
  EXPECT_EQ(client.submit_request(crlf, true).error, H2Error::kBadHeader);
  Headers nul = request();
  nul.push_back({"x-a", std::string("a\0b", 3)});
  EXPECT_EQ(client.submit_request(nul, true).error, H2Error::kBadHeader);
  Headers upper = request();
  upper.push_back({"X-Upper", "v"});
  EXPECT_EQ(client.submit_request(upper, true).error, H2Error::kBadHeader);
}

// The submit check is nghttp2's own (byte tables asked of it once): the same verdict as
// nghttp2_check_header_name / _value on whole fields, for every byte in a name and in a value.
TEST(H2Session, SubmitChecksEveryByteAsNghttp2Does) {
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const std::string name = std::string("x-") + c + "n";
    const std::string value = std::string("a") + c + "a";
    const auto* n = reinterpret_cast<const std::uint8_t*>(name.data());
    const auto* v = reinterpret_cast<const std::uint8_t*>(value.data());
    const bool name_ok = nghttp2_check_header_name(n, name.size()) != 0;
    const bool value_ok = nghttp2_check_header_value(v, value.size()) != 0;
    Session a(Role::kClient, {});
    Headers bad_name = request();
    bad_name.push_back({name, "v"});
    EXPECT_EQ(a.submit_request(bad_name, true).error == H2Error::kBadHeader, !name_ok) << "name byte " << b;
    Session z(Role::kClient, {});
    Headers bad_value = request();
    bad_value.push_back({"x-v", value});
    EXPECT_EQ(z.submit_request(bad_value, true).error == H2Error::kBadHeader, !value_ok) << "value byte " << b;
  }
  Session e(Role::kClient, {});
  Headers empty_name = request();
  empty_name.push_back({"", "v"});
  EXPECT_EQ(e.submit_request(empty_name, true).error, H2Error::kBadHeader);
  Session p(Role::kClient, {});
  Headers colon = request();
  colon.push_back({":", "v"});
  EXPECT_EQ(p.submit_request(colon, true).error, H2Error::kBadHeader);
}

TEST(H2Session, GarbageIsAProtocolError) {
  Session server(Role::kServer, {});
  std::vector<Event> events;
  EXPECT_EQ(server.receive("GET / HTTP/1.1\r\nHost: a\r\n\r\n", events), H2Error::kProtocol);
  EXPECT_TRUE(server.closed() || server.error() != H2Error::kNone);
}

TEST(H2Session, DataBeyondTheWindowIsAFlowControlError) {
  SessionLimits sl;
  sl.initial_window = 65535;
  sl.connection_window = 65535;
  Session server(Role::kServer, sl);
  std::vector<Event> events;
  std::string in = client_preface() + frame(kHeadersFrame, kEndHeaders, 1, get_block());
  for (int i = 0; i < 5; ++i) in += frame(kData, 0, 1, std::string(16384, 'd'));
  H2Error e = server.receive(in, events);
  std::string out;
  if (e == H2Error::kNone) e = server.pending_output(out);
  EXPECT_EQ(e, H2Error::kProtocol);
  EXPECT_EQ(goaway_code(out), 0x3) << "GOAWAY FLOW_CONTROL_ERROR";
  EXPECT_LE(server.held_bytes(), 65535u);
}

}  // namespace
}  // namespace airlock::http::h2
