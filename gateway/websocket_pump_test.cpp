// WebSocketSession over the real engine: the handshake gated by the HTTP/1 rewriter, handed off
// at the 101, then messages both ways. Values are obviously fake; failures never print them.
#include "gateway/websocket_pump.hpp"

#include "gateway/response_scrubbers.hpp"

#include <http/websocket.hpp>
#include <http/websocket_deflate.hpp>
#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::gateway {
namespace {

namespace ws = http::websocket;
using secrets::testing::FakePins;
using secrets::testing::SecretSpec;

const std::string kValue = "sk-FAKE-ws-0123456789abcdef";
const std::string kPlaceholder = "$MSB_KEY";
constexpr std::array<std::uint8_t, 4> kGuestKey = {0xde, 0xad, 0xbe, 0xef};

std::string client_frame(ws::Opcode op, std::string_view payload, bool fin = true, bool rsv1 = false) {
  std::string out;
  ws::write_frame(out, fin, rsv1, op, payload, &kGuestKey);
  return out;
}
std::string server_frame(ws::Opcode op, std::string_view payload, bool fin = true, bool rsv1 = false) {
  std::string out;
  ws::write_frame(out, fin, rsv1, op, payload, nullptr);
  return out;
}

std::vector<ws::Message> read(ws::Sender sender, std::string_view bytes, bool deflate = false) {
  ws::MessageReader r(sender, {}, deflate);
  std::vector<ws::Message> out;
  while (true) {
    std::size_t used = 0;
    const auto e = r.feed(bytes, used);
    bytes.remove_prefix(used);
    EXPECT_NE(e, ws::MessageReader::Event::kError) << ws::to_string(r.error());
    if (e != ws::MessageReader::Event::kMessage) break;
    out.push_back(r.message());
  }
  return out;
}

struct Lab {
  // The handshake carries the placeholder in Authorization only where the secret is eligible
  // (elsewhere the rewriter would block the handshake itself).
  explicit Lab(bool body = true, std::string host_header = "api.example.com", std::string sni = "api.example.com") {
    const bool eligible = host_header == "api.example.com" && sni == "api.example.com";
    pins.pin(secrets::testing::api_ip(), "api.example.com");
    InjectionScopes scopes;
    scopes.body = body;
    set.emplace(secrets::testing::make_secrets({SecretSpec("KEY", kValue, {"api.example.com"}, scopes)}),
                ViolationAction::kBlockAndLog);
    forms.emplace(set->secrets());
    context = secrets::testing::tls_context(&pins, sni);
    secrets::RequestRewriter rewriter(*set, context);
    std::string up, guest;
    const std::string head = "GET /socket HTTP/1.1\r\nHost: " + host_header +
                             "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer " +
                             (eligible ? kPlaceholder : std::string("none")) + "\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\r\n";
    // A frame the guest sent before the 101 is held by the rewriter and handed over.
    status = rewriter.feed(head + client_frame(ws::Opcode::kText, "early " + (eligible ? kPlaceholder : "hello")), up, guest);
    handshake_substituted = up.find(kValue) != std::string::npos;
    if (status != secrets::Status::kOk) return;
    EXPECT_EQ(rewriter.hand_off_upgrade(handed, held), secrets::Status::kOk);
    EXPECT_EQ(handed.target, "/socket");
  }
  std::unique_ptr<WebSocketSession> start(std::string_view extensions = {}) {
    std::string why;
    auto s = WebSocketSession::start(*set, context, &*forms, request_copy(), extensions, {}, why);
    EXPECT_TRUE(s) << why;
    return s;
  }
  secrets::Request request_copy() { return handed; }
  FakePins pins;
  std::optional<secrets::SecretSet> set;
  std::optional<http::ScrubForms> forms;
  secrets::ConnectionContext context;
  secrets::Status status = secrets::Status::kOk;
  bool handshake_substituted = false;
  std::string held;
  secrets::Request handed;  // the upgrade request as the rewriter handed it over
};

TEST(WebSocketSession, MessagesSubstitutedUnderBodyScopeWithFreshMasks) {
  Lab lab;
  ASSERT_EQ(lab.status, secrets::Status::kOk);
  EXPECT_TRUE(lab.handshake_substituted);
  auto s = lab.start();
  std::string up, to_guest;
  ASSERT_EQ(s->feed_up(lab.held, up, to_guest), secrets::Status::kOk);
  // A placeholder cut by frames, with a ping between the fragments.
  const std::string frag = client_frame(ws::Opcode::kBinary, "{\"k\":\"$MSB", false) +
                           client_frame(ws::Opcode::kPing, "p") + client_frame(ws::Opcode::kContinuation, "_KEY\"}");
  ASSERT_EQ(s->feed_up(frag, up, to_guest), secrets::Status::kOk);
  EXPECT_TRUE(to_guest.empty());
  EXPECT_EQ(up.find(kValue), std::string::npos) << "the value went out unmasked on the wire";
  const auto msgs = read(ws::Sender::kClient, up);
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_TRUE(msgs[0].payload == "early " + kValue);
  EXPECT_EQ(msgs[1].opcode, ws::Opcode::kPing);
  EXPECT_TRUE(msgs[2].payload == "{\"k\":\"" + kValue + "\"}");
  EXPECT_EQ(up.find(std::string(reinterpret_cast<const char*>(kGuestKey.data()), 4)), std::string::npos)
      << "the guest's masking key was reused";
  const auto subs = s->take_substitutions();
  ASSERT_EQ(subs.size(), 2u);
  EXPECT_EQ(subs[0].location, secrets::Location::kBody);
}

TEST(WebSocketSession, BodyScopeOffForwardsThePlaceholderUnchanged) {
  Lab lab(false);
  auto s = lab.start();
  std::string up, to_guest;
  ASSERT_EQ(s->feed_up(lab.held, up, to_guest), secrets::Status::kOk);
  const auto msgs = read(ws::Sender::kClient, up);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].payload, "early " + kPlaceholder);
}

TEST(WebSocketSession, AnotherHostGetsAViolationEvenInsideACompressedFragmentedMessage) {
  Lab lab(true, "evil.example.net", "evil.example.net");
  ASSERT_EQ(lab.status, secrets::Status::kOk);
  EXPECT_FALSE(lab.handshake_substituted);
  auto s = lab.start("permessage-deflate");
  ws::MessageDeflater guest_deflate(15, false);
  std::string z;
  guest_deflate.deflate("{\"k\":\"" + kPlaceholder + "\"}", z);
  std::string up, to_guest;
  ASSERT_EQ(s->feed_up(lab.held, up, to_guest), secrets::Status::kOk);
  up.clear();
  const std::string wire = client_frame(ws::Opcode::kText, z.substr(0, 4), false, true) +
                           client_frame(ws::Opcode::kContinuation, z.substr(4));
  EXPECT_EQ(s->feed_up(wire, up, to_guest), secrets::Status::kBlocked);
  ASSERT_TRUE(s->blocked());
  EXPECT_TRUE(s->blocked()->violation);
  EXPECT_EQ(s->blocked()->secret_env, "KEY");
  EXPECT_NE(s->blocked()->reason.find("WebSocket message"), std::string::npos);
  EXPECT_TRUE(up.empty());
}

TEST(WebSocketSession, CompressedPlaceholderToAnotherHostIsAViolation) {
  Lab lab(true, "evil.example.net", "evil.example.net");
  auto s = lab.start("permessage-deflate");
  ws::MessageDeflater guest_deflate(15, false);
  std::string z;
  guest_deflate.deflate("{\"k\":\"" + kPlaceholder + "\"}", z);
  std::string up, to_guest;
  EXPECT_EQ(s->feed_up(client_frame(ws::Opcode::kText, z, true, true), up, to_guest), secrets::Status::kBlocked);
  ASSERT_TRUE(s->blocked());
  EXPECT_TRUE(s->blocked()->violation);
}

TEST(WebSocketSession, DomainFrontedHandshakeGetsNoSubstitutionInMessages) {
  // SNI api.example.com, Host evil: gate 4 fails for the handshake, and so for its messages.
  Lab lab(true, "evil.example.net");
  ASSERT_EQ(lab.status, secrets::Status::kOk);
  auto s = lab.start();
  std::string up, to_guest;
  ASSERT_EQ(s->feed_up(lab.held, up, to_guest), secrets::Status::kOk);
  EXPECT_EQ(s->feed_up(client_frame(ws::Opcode::kText, kPlaceholder), up, to_guest), secrets::Status::kBlocked);
  ASSERT_TRUE(s->blocked());
  EXPECT_TRUE(s->blocked()->violation);
  EXPECT_EQ(up.find(kValue), std::string::npos);
}

TEST(WebSocketSession, EchoesMaskedAcrossFramesAndMessagesCompressedOrNot) {
  for (const char* ext : {"", "permessage-deflate; server_no_context_takeover", "permessage-deflate"}) {
    Lab lab;
    auto s = lab.start(ext);
    const bool deflate = *ext != 0;
    ws::MessageDeflater server(15, std::string_view(ext).find("server_no") != std::string_view::npos);
    ws::MessageInflater guest(15, std::string_view(ext).find("server_no") != std::string_view::npos, 1 << 20, 100);
    std::string wire;
    const std::string m1 = "echo: " + kValue + " and " + kValue.substr(0, 10);
    const std::string m2 = kValue.substr(10) + " end";
    for (const std::string& m : {m1, m2}) {
      std::string payload = m;
      if (deflate) server.deflate(m, payload);
      // Three frames per message: the value's bytes (or their compressed form) cut by frames.
      const std::size_t a = payload.size() / 3, b = 2 * payload.size() / 3;
      wire += server_frame(ws::Opcode::kText, payload.substr(0, a), false, deflate);
      wire += server_frame(ws::Opcode::kContinuation, payload.substr(a, b - a), false);
      wire += server_frame(ws::Opcode::kContinuation, payload.substr(b));
    }
    std::string down;
    for (char c : wire) ASSERT_TRUE(s->feed_down(std::string_view(&c, 1), down));
    EXPECT_GT(s->masked_bytes(), 0u);
    const auto msgs = read(ws::Sender::kServer, down, deflate);
    ASSERT_EQ(msgs.size(), 2u);
    std::string got;
    for (const auto& m : msgs) {
      std::string plain = m.payload;
      if (m.compressed) {
        ASSERT_EQ(guest.inflate(m.payload, plain), ws::Error::kNone);
      }
      got += plain + "|";
    }
    EXPECT_EQ(got.find(kValue), std::string::npos) << "an echo reached the guest (" << ext << ")";
    EXPECT_EQ(got.find(kValue.substr(10)), std::string::npos) << "the rest of a value split across messages";
    EXPECT_NE(got.find("echo: " + std::string(kValue.size(), '*')), std::string::npos);
  }
}

// After a reload the connection's response side scrubs for every snapshot still needed: a
// session borrowing that chain masks an older snapshot's value in the server's messages too (its
// own scrubber over the session's forms would let it through; checked here as well).
TEST(WebSocketSession, ABorrowedSnapshotChainMasksEverySnapshotsValue) {
  const std::string old_value = "sk-FAKE-ws-old-fedcba9876";
  auto snapshot = [](std::uint64_t generation, const std::string& value) {
    auto snap = std::make_shared<SecretsSnapshot>();
    snap->set = std::make_shared<secrets::SecretSet>(
        secrets::testing::make_secrets({SecretSpec("KEY", value, {"api.example.com"})}), ViolationAction::kBlockAndLog);
    snap->scrub_forms.emplace(snap->set->secrets());
    snap->generation = generation;
    return snap;
  };
  for (const char* ext : {"", "permessage-deflate"}) {
    const bool deflate = *ext != 0;
    ws::MessageDeflater server(15, false);
    std::string payload = "old " + old_value + " new " + kValue;
    const std::string message = payload;
    if (deflate) server.deflate(message, payload);
    const std::string wire = server_frame(ws::Opcode::kText, payload.substr(0, 9), false, deflate) +
                             server_frame(ws::Opcode::kContinuation, payload.substr(9));
    auto guest_reads = [&](WebSocketSession& s) {
      std::string down;
      for (char c : wire) EXPECT_TRUE(s.feed_down(std::string_view(&c, 1), down));
      const auto msgs = read(ws::Sender::kServer, down, deflate);
      EXPECT_EQ(msgs.size(), 1u);
      if (msgs.empty()) return std::string();
      std::string plain = msgs[0].payload;
      ws::MessageInflater guest(15, false, 1 << 20, 100);
      if (msgs[0].compressed) {
        EXPECT_EQ(guest.inflate(msgs[0].payload, plain), ws::Error::kNone);
      }
      return plain;
    };
    Lab lab;
    ResponseScrubbers chain;
    chain.keep(snapshot(1, old_value));
    chain.keep(snapshot(2, kValue));
    std::string why;
    auto s = WebSocketSession::start(*lab.set, lab.context, static_cast<http::Scrubber*>(&chain), lab.request_copy(),
                                     ext, {}, why);
    ASSERT_TRUE(s) << why;
    const std::string got = guest_reads(*s);
    EXPECT_EQ(got, std::string("old ").append(old_value.size(), '*') + " new " + std::string(kValue.size(), '*')) << ext;
    EXPECT_GT(s->masked_bytes(), 0u);
    Lab own;
    EXPECT_NE(guest_reads(*own.start(ext)).find(old_value), std::string::npos) << "the test cannot fail";
  }
}

TEST(WebSocketSession, UpstreamProtocolErrorsAndBombsCloseTheGuest) {
  Lab lab;
  auto s = lab.start("permessage-deflate");
  std::string down;
  ws::MessageDeflater server(15, true);
  std::string bomb;
  server.deflate(std::string(8 << 20, 'a'), bomb);
  EXPECT_FALSE(s->feed_down(server_frame(ws::Opcode::kText, bomb, true, true), down));
  EXPECT_NE(s->down_error().find("1009"), std::string::npos);
  const auto msgs = read(ws::Sender::kServer, down, true);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].opcode, ws::Opcode::kClose);
  EXPECT_EQ(static_cast<std::uint8_t>(msgs[0].payload[0]) << 8 | static_cast<std::uint8_t>(msgs[0].payload[1]), 1009);

  Lab lab2;
  auto s2 = lab2.start();
  std::string down2;
  EXPECT_FALSE(s2->feed_down(client_frame(ws::Opcode::kText, "masked from the server"), down2));
  EXPECT_NE(s2->down_error().find("masked server frame"), std::string::npos);
}

TEST(WebSocketSession, GuestProtocolErrorsAreBlockedWithACloseFrame) {
  Lab lab;
  auto s = lab.start();
  std::string up, to_guest;
  EXPECT_EQ(s->feed_up(server_frame(ws::Opcode::kText, "unmasked"), up, to_guest), secrets::Status::kBlocked);
  ASSERT_TRUE(s->blocked());
  EXPECT_FALSE(s->blocked()->violation);
  EXPECT_NE(s->blocked()->reason.find("unmasked client frame"), std::string::npos);
  const auto msgs = read(ws::Sender::kServer, to_guest);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].opcode, ws::Opcode::kClose);
}

TEST(WebSocketSession, UnreadableExtensionsAreRefused) {
  Lab lab;
  for (const char* ext : {"x-webkit-deflate-frame", "permessage-deflate, foo", "permessage-deflate; bar=1"}) {
    std::string why;
    EXPECT_FALSE(WebSocketSession::start(*lab.set, lab.context, &*lab.forms, lab.request_copy(), ext, {}, why));
    EXPECT_NE(why.find("extension"), std::string::npos);
  }
  EXPECT_TRUE(is_websocket_switch({{"Upgrade", "WebSocket"}}));
  EXPECT_FALSE(is_websocket_switch({{"Upgrade", "h2c"}}));
}

}  // namespace
}  // namespace airlock::gateway
