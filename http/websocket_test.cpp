// The WebSocket codec, permessage-deflate and the relay. Payloads are made up by the tests.
#include <http/websocket.hpp>
#include <http/websocket_deflate.hpp>
#include <http/websocket_relay.hpp>

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <string>
#include <vector>

namespace airlock::http::websocket {
namespace {

constexpr std::array<std::uint8_t, 4> kKey = {0x12, 0x34, 0x56, 0x78};

std::string client_frame(Opcode op, std::string_view payload, bool fin = true, bool rsv1 = false) {
  std::string out;
  write_frame(out, fin, rsv1, op, payload, &kKey);
  return out;
}
std::string server_frame(Opcode op, std::string_view payload, bool fin = true, bool rsv1 = false) {
  std::string out;
  write_frame(out, fin, rsv1, op, payload, nullptr);
  return out;
}

struct Parsed {
  std::vector<Message> messages;
  Error error = Error::kNone;
};

// Feeds `bytes` in pieces of `step` bytes (0: all at once).
Parsed read_all(Sender sender, std::string_view bytes, std::size_t step = 0, Limits limits = {}, bool deflate = false) {
  MessageReader reader(sender, limits, deflate);
  Parsed p;
  const std::size_t piece = step == 0 ? bytes.size() : step;
  for (std::size_t at = 0; at < bytes.size(); at += piece) {
    std::string_view in = bytes.substr(at, piece);
    while (true) {
      std::size_t used = 0;
      const auto e = reader.feed(in, used);
      in.remove_prefix(used);
      if (e == MessageReader::Event::kError) {
        p.error = reader.error();
        return p;
      }
      if (e == MessageReader::Event::kNeedMore) break;
      p.messages.push_back(reader.message());
    }
  }
  return p;
}

TEST(WebSocketFrames, RoundTripAllLengthEncodingsAnySplit) {
  for (std::size_t n : {0u, 1u, 125u, 126u, 65535u, 65536u, 70000u}) {
    std::string payload(n, 'x');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 31);
    const std::string wire = client_frame(Opcode::kBinary, payload);
    for (std::size_t step : {0u, 1u, 7u}) {
      if (step == 1 && n > 200) continue;
      Parsed p = read_all(Sender::kClient, wire, step);
      ASSERT_EQ(p.error, Error::kNone) << n;
      ASSERT_EQ(p.messages.size(), 1u);
      EXPECT_EQ(p.messages[0].opcode, Opcode::kBinary);
      EXPECT_TRUE(p.messages[0].payload == payload) << "length " << n << " step " << step;
    }
  }
}

TEST(WebSocketFrames, MaskingRulesPerDirection) {
  EXPECT_EQ(read_all(Sender::kClient, server_frame(Opcode::kText, "hi")).error, Error::kUnmaskedClientFrame);
  EXPECT_EQ(read_all(Sender::kServer, client_frame(Opcode::kText, "hi")).error, Error::kMaskedServerFrame);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kText, "hi")).messages.at(0).payload, "hi");
}

TEST(WebSocketFrames, MaskedPayloadIsNotPlainOnTheWire) {
  const std::string wire = client_frame(Opcode::kText, "PLACEHOLDER");
  EXPECT_EQ(wire.find("PLACEHOLDER"), std::string::npos);
  EXPECT_EQ(read_all(Sender::kClient, wire).messages.at(0).payload, "PLACEHOLDER");
}

TEST(WebSocketFrames, ReservedBitsAndOpcodes) {
  std::string f = server_frame(Opcode::kText, "a");
  f[0] = static_cast<char>(f[0] | 0x20);  // RSV2
  EXPECT_EQ(read_all(Sender::kServer, f).error, Error::kReservedBits);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kText, "a", true, true)).error, Error::kReservedBits);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kText, "a", true, true), 0, {}, true).error, Error::kNone);
  for (std::uint8_t op : {3, 4, 7, 0xB, 0xF}) {
    std::string g = server_frame(Opcode::kText, "a");
    g[0] = static_cast<char>(0x80 | op);
    EXPECT_EQ(read_all(Sender::kServer, g).error, Error::kBadOpcode) << int(op);
  }
}

TEST(WebSocketFrames, ControlFrameRules) {
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kPing, std::string(126, 'p'))).error, Error::kControlTooLong);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kPing, std::string(125, 'p'))).error, Error::kNone);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kPing, "p", false)).error, Error::kControlFragmented);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kPing, "p", true, true), 0, {}, true).error,
            Error::kCompressedControl);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kClose, "x")).error, Error::kBadClosePayload);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kClose, "") + server_frame(Opcode::kText, "a")).error,
            Error::kAfterClose);
}

TEST(WebSocketFrames, FragmentationReassembledWithControlFramesBetween) {
  const std::string wire = client_frame(Opcode::kText, "PLACE", false) + client_frame(Opcode::kPing, "ping") +
                           client_frame(Opcode::kContinuation, "HOL", false) +
                           client_frame(Opcode::kContinuation, "DER", true);
  for (std::size_t step : {0u, 1u, 3u}) {
    Parsed p = read_all(Sender::kClient, wire, step);
    ASSERT_EQ(p.error, Error::kNone);
    ASSERT_EQ(p.messages.size(), 2u);
    EXPECT_EQ(p.messages[0].opcode, Opcode::kPing);
    EXPECT_EQ(p.messages[1].opcode, Opcode::kText);
    EXPECT_EQ(p.messages[1].payload, "PLACEHOLDER");
  }
}

TEST(WebSocketFrames, FragmentationErrors) {
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kContinuation, "a")).error, Error::kUnexpectedContinuation);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kText, "a", false) + server_frame(Opcode::kText, "b")).error,
            Error::kExpectedContinuation);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kText, "a", false, true) +
                                          server_frame(Opcode::kContinuation, "b", true, true), 0, {}, true).error,
            Error::kCompressedContinuation);
}

TEST(WebSocketFrames, SizeLimits) {
  Limits small{.max_frame = 10, .max_message = 16};
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kBinary, std::string(11, 'a')), 0, small).error,
            Error::kFrameTooLarge);
  EXPECT_EQ(read_all(Sender::kServer, server_frame(Opcode::kBinary, std::string(10, 'a'), false) +
                                          server_frame(Opcode::kContinuation, std::string(7, 'a')), 0, small).error,
            Error::kMessageTooLarge);
  // A 64-bit length with its top bit set.
  std::string huge = "\x82\x7f";
  huge += std::string("\x80\0\0\0\0\0\0\0", 8);
  EXPECT_EQ(read_all(Sender::kServer, huge).error, Error::kBadLength);
  // A declared length over the limit fails at the header, before any payload is buffered.
  std::string big = "\x82\x7f";
  big += std::string("\0\0\0\x01\0\0\0\0", 8);
  EXPECT_EQ(read_all(Sender::kServer, big).error, Error::kFrameTooLarge);
}

TEST(WebSocketFrames, CloseCodes) {
  EXPECT_EQ(close_code(Error::kMessageTooLarge), CloseCode::kMessageTooBig);
  EXPECT_EQ(close_code(Error::kInflateTooLarge), CloseCode::kMessageTooBig);
  EXPECT_EQ(close_code(Error::kInflateCorrupt), CloseCode::kInvalidPayload);
  EXPECT_EQ(close_code(Error::kUnmaskedClientFrame), CloseCode::kProtocolError);
  EXPECT_EQ(close_payload(CloseCode::kMessageTooBig, "x"), std::string("\x03\xf1x"));
  EXPECT_EQ(close_payload(CloseCode::kNormal, std::string(200, 'r')).size(), 125u);
}

// ---- permessage-deflate ----

TEST(WebSocketDeflate, Negotiation) {
  DeflateParams p;
  EXPECT_EQ(parse_extensions("", p), Negotiated::kNone);
  EXPECT_EQ(parse_extensions("permessage-deflate", p), Negotiated::kDeflate);
  EXPECT_EQ(p.client_max_window_bits, 15);
  ASSERT_EQ(parse_extensions("permessage-deflate; server_no_context_takeover; client_max_window_bits=\"10\"; "
                             "server_max_window_bits=12; client_no_context_takeover", p),
            Negotiated::kDeflate);
  EXPECT_TRUE(p.server_no_context_takeover);
  EXPECT_TRUE(p.client_no_context_takeover);
  EXPECT_EQ(p.client_max_window_bits, 10);
  EXPECT_EQ(p.server_max_window_bits, 12);
  EXPECT_EQ(parse_extensions("x-webkit-deflate-frame", p), Negotiated::kUnsupported);
  EXPECT_EQ(parse_extensions("permessage-deflate, permessage-deflate", p), Negotiated::kUnsupported);
  EXPECT_EQ(parse_extensions("permessage-deflate; server_max_window_bits=16", p), Negotiated::kUnsupported);
  EXPECT_EQ(parse_extensions("permessage-deflate; server_max_window_bits", p), Negotiated::kUnsupported);
  EXPECT_EQ(parse_extensions("permessage-deflate; server_no_context_takeover; server_no_context_takeover", p),
            Negotiated::kUnsupported);
  EXPECT_EQ(parse_extensions("permessage-deflate; foo=1", p), Negotiated::kUnsupported);
}

TEST(WebSocketDeflate, RoundTripWithAndWithoutContextTakeover) {
  for (bool reset : {false, true}) {
    MessageDeflater d(15, reset);
    MessageInflater i(15, reset, 1 << 20, 100);
    ASSERT_TRUE(d.usable());
    std::size_t second_size = 0;
    for (int k = 0; k < 3; ++k) {
      const std::string msg = "{\"type\":\"hello\",\"n\":" + std::to_string(k) + ",\"pad\":\"" + std::string(200, 'a') + "\"}";
      std::string z, back;
      ASSERT_EQ(d.deflate(msg, z), Error::kNone);
      ASSERT_EQ(i.inflate(z, back), Error::kNone);
      EXPECT_EQ(back, msg);
      if (k == 1) second_size = z.size();
    }
    // With takeover, the second message refers to the first: it compresses better.
    if (!reset) {
      EXPECT_LT(second_size, 15u);
    }
  }
}

// What zlib's raw deflate with a sync flush makes, as a peer would send it (tail stripped).
std::string peer_deflate(std::string_view in) {
  MessageDeflater d(15, true);
  std::string z;
  d.deflate(in, z);
  return z;
}

TEST(WebSocketDeflate, BombsAndCorruptData) {
  const std::string zeros(4 << 20, '\0');
  const std::string bomb = peer_deflate(zeros);
  std::string out;
  MessageInflater capped(15, false, 1 << 20, 1000000);
  EXPECT_EQ(capped.inflate(bomb, out), Error::kInflateTooLarge);
  EXPECT_TRUE(out.empty());
  MessageInflater ratio(15, false, 64 << 20, 10);
  EXPECT_EQ(ratio.inflate(bomb, out), Error::kInflateTooLarge);
  MessageInflater ok(15, false, 64 << 20, 100000);
  EXPECT_EQ(ok.inflate(bomb, out), Error::kNone);
  EXPECT_EQ(out.size(), zeros.size());
  MessageInflater bad(15, false, 1 << 20, 100);
  EXPECT_EQ(bad.inflate("\xff\xff\xff\xff garbage", out), Error::kInflateCorrupt);
  EXPECT_EQ(bad.inflate(peer_deflate("fine"), out), Error::kInflateCorrupt);  // an error is final
}

TEST(WebSocketDeflate, FinalBlockThenNextMessage) {
  // A sender may end a message with BFINAL set (a complete raw deflate stream).
  z_stream z{};
  ASSERT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string in = "finished", buf(256, '\0');
  z.next_in = reinterpret_cast<Bytef*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(buf.data());
  z.avail_out = static_cast<uInt>(buf.size());
  ASSERT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  buf.resize(buf.size() - z.avail_out);
  deflateEnd(&z);
  MessageInflater i(15, false, 1 << 20, 100);
  std::string out;
  ASSERT_EQ(i.inflate(buf, out), Error::kNone);
  EXPECT_EQ(out, "finished");
  ASSERT_EQ(i.inflate(peer_deflate("next"), out), Error::kNone);
  EXPECT_EQ(out, "next");
}

TEST(WebSocketDeflate, EmptyMessagesAndMessagesEndingInsideABlock) {
  // Found by fuzz/http_websocket: an empty compressed payload leaves only the 4-byte tail, an
  // unfinished stored-block header; the next message would be read from inside it.
  MessageInflater i(15, false, 1 << 20, 100);
  std::string out;
  EXPECT_EQ(i.inflate(std::string_view("\0", 1), out), Error::kNone);  // RFC 7692 §7.2.3.6
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(i.inflate("", out), Error::kInflateCorrupt);
  MessageDeflater d(15, false);
  std::string z;
  ASSERT_EQ(d.deflate("", z), Error::kNone);
  EXPECT_FALSE(z.empty());
  MessageInflater j(15, false, 1 << 20, 100);
  EXPECT_EQ(j.inflate(z, out), Error::kNone);
  EXPECT_TRUE(out.empty());
  ASSERT_EQ(d.deflate("after", z), Error::kNone);
  EXPECT_EQ(j.inflate(z, out), Error::kNone);
  EXPECT_EQ(out, "after");
}

TEST(WebSocketDeflate, WindowOfEightBitsGoesUncompressed) {
  EXPECT_FALSE(MessageDeflater(8, false).usable());
  EXPECT_TRUE(MessageDeflater(9, false).usable());
}

// ---- relay ----

struct FixedMasks final : MaskSource {
  std::uint32_t n = 0;
  std::array<std::uint8_t, 4> next() override {
    ++n;
    return {static_cast<std::uint8_t>(n), 0xA5, 0x5A, static_cast<std::uint8_t>(n * 7)};
  }
};

struct Replace final : MessageFilter {
  std::string from, to;
  std::vector<Opcode> seen;
  bool stop_on = false;
  bool on_message(Opcode op, std::string& payload) override {
    seen.push_back(op);
    if (from.empty()) return true;
    if (stop_on && payload.find(from) != std::string::npos) return false;
    for (std::size_t at; (at = payload.find(from)) != std::string::npos;) payload.replace(at, from.size(), to);
    return true;
  }
};

TEST(WebSocketRelay, ClientMessageRewrittenAcrossFramesAndMaskedFresh) {
  FixedMasks masks;
  MessageRelay relay(Sender::kClient, {}, nullptr, 100, &masks);
  Replace f;
  f.from = "$KEY";
  f.to = "real-value-0123456789";
  const std::string wire = client_frame(Opcode::kText, "{\"k\":\"$K", false) + client_frame(Opcode::kPing, "") +
                           client_frame(Opcode::kContinuation, "EY\"}");
  std::string out;
  for (char c : wire) ASSERT_EQ(relay.feed(std::string_view(&c, 1), out, f), MessageRelay::Status::kOk);
  EXPECT_EQ(out.find(kKey[0]), out.find(kKey[0]));
  Parsed p = read_all(Sender::kClient, out);
  ASSERT_EQ(p.error, Error::kNone);
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_EQ(p.messages[1].payload, "{\"k\":\"real-value-0123456789\"}");
  EXPECT_EQ(masks.n, 2u);  // one fresh key per frame written
  // The key on the wire is the fresh one, not the guest's.
  EXPECT_EQ(static_cast<std::uint8_t>(out[2]), 1);
}

TEST(WebSocketRelay, CompressedMessagesInflatedFilteredAndDeflatedAgain) {
  for (bool takeover_off : {false, true}) {
    DeflateParams params;
    params.server_no_context_takeover = takeover_off;
    MessageRelay relay(Sender::kServer, {}, &params, 100, nullptr);
    Replace f;
    f.from = "secret-echo";
    f.to = "***********";
    MessageDeflater peer(15, takeover_off);
    MessageInflater guest(15, takeover_off, 1 << 20, 100);
    std::string out;
    for (int k = 0; k < 3; ++k) {
      std::string z;
      ASSERT_EQ(peer.deflate("echo: secret-echo #" + std::to_string(k), z), Error::kNone);
      // Split across two frames: the compressed bytes of the value straddle them.
      const std::string wire = server_frame(Opcode::kText, z.substr(0, z.size() / 2), false, true) +
                               server_frame(Opcode::kContinuation, z.substr(z.size() / 2));
      out.clear();
      ASSERT_EQ(relay.feed(wire, out, f), MessageRelay::Status::kOk);
      Parsed p = read_all(Sender::kServer, out, 0, {}, true);
      ASSERT_EQ(p.error, Error::kNone);
      ASSERT_EQ(p.messages.size(), 1u);
      ASSERT_TRUE(p.messages[0].compressed);
      std::string plain;
      ASSERT_EQ(guest.inflate(p.messages[0].payload, plain), Error::kNone);
      EXPECT_EQ(plain, "echo: *********** #" + std::to_string(k));
    }
  }
}

TEST(WebSocketRelay, UncompressedMessageStaysUncompressed) {
  DeflateParams params;
  MessageRelay relay(Sender::kServer, {}, &params, 100, nullptr);
  Replace f;
  std::string out;
  ASSERT_EQ(relay.feed(server_frame(Opcode::kBinary, "plain"), out, f), MessageRelay::Status::kOk);
  EXPECT_EQ(out, server_frame(Opcode::kBinary, "plain"));
}

TEST(WebSocketRelay, FilterStopsAndErrorsAreFinal) {
  FixedMasks masks;
  MessageRelay relay(Sender::kClient, {}, nullptr, 100, &masks);
  Replace f;
  f.from = "bad";
  f.stop_on = true;
  std::string out;
  EXPECT_EQ(relay.feed(client_frame(Opcode::kText, "ok") + client_frame(Opcode::kText, "bad"), out, f),
            MessageRelay::Status::kStopped);
  EXPECT_EQ(relay.feed(client_frame(Opcode::kText, "ok"), out, f), MessageRelay::Status::kStopped);
  MessageRelay bomb(Sender::kServer, Limits{.max_frame = 1 << 20, .max_message = 1 << 20}, nullptr, 100, nullptr);
  EXPECT_EQ(bomb.feed(server_frame(Opcode::kText, "x", true, true), out, f), MessageRelay::Status::kError);
  EXPECT_EQ(bomb.error(), Error::kReservedBits);
}

TEST(WebSocketRelay, ControlPayloadRewrittenTooLongIsAnError) {
  MessageRelay relay(Sender::kServer, {}, nullptr, 100, nullptr);
  Replace f;
  f.from = "x";
  f.to = std::string(200, 'y');
  std::string out;
  EXPECT_EQ(relay.feed(server_frame(Opcode::kPing, "x"), out, f), MessageRelay::Status::kError);
  EXPECT_EQ(relay.error(), Error::kControlTooLong);
}

TEST(WebSocketRelay, RandomSplitsGiveTheSameOutput) {
  std::mt19937 rng(7);
  DeflateParams params;
  MessageDeflater peer(15, false);
  std::string wire;
  for (int k = 0; k < 20; ++k) {
    std::string z;
    peer.deflate("message " + std::to_string(k) + std::string(k * 50, 'q'), z);
    wire += server_frame(Opcode::kText, z, true, true);
    if (k % 5 == 0) wire += server_frame(Opcode::kPong, "pong");
  }
  std::string whole;
  {
    MessageRelay r(Sender::kServer, {}, &params, 100, nullptr);
    Replace f;
    ASSERT_EQ(r.feed(wire, whole, f), MessageRelay::Status::kOk);
  }
  for (int trial = 0; trial < 20; ++trial) {
    MessageRelay r(Sender::kServer, {}, &params, 100, nullptr);
    Replace f;
    std::string out;
    for (std::size_t at = 0; at < wire.size();) {
      const std::size_t n = std::min<std::size_t>(wire.size() - at, 1 + rng() % 40);
      ASSERT_EQ(r.feed(std::string_view(wire).substr(at, n), out, f), MessageRelay::Status::kOk);
      at += n;
    }
    EXPECT_EQ(out, whole);
  }
}

}  // namespace
}  // namespace airlock::http::websocket
