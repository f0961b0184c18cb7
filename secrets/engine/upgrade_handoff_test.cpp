// RequestRewriter::hand_off_upgrade (issue 14): the upgrade request in neutral form and the
// guest's bytes after it, for a codec the gateway reads itself (WebSocket). Fake values only.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/message_gate.hpp>

#include <gtest/gtest.h>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::SecretSpec;

const std::string kValue = "sk-FAKE-handoff-0123456789";

struct Fixture {
  explicit Fixture(bool require_tls = true) {
    pins.pin(testing::api_ip(), "api.example.com");
    InjectionScopes scopes;
    scopes.body = true;
    set.emplace(testing::make_secrets({SecretSpec("KEY", kValue, {"api.example.com"}, scopes, require_tls)}),
                ViolationAction::kBlockAndLog);
  }
  FakePins pins;
  std::optional<SecretSet> set;
};

TEST(UpgradeHandOff, GivesTheRequestAsSentAndTheHeldBytes) {
  Fixture f;
  RequestRewriter rw(*f.set, testing::tls_context(&f.pins));
  std::string up, guest;
  ASSERT_EQ(rw.feed("GET /chat?x=1 HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Authorization: Bearer $MSB_KEY\r\n\r\nFRAMES $MSB_KEY",
                    up, guest),
            Status::kOk);
  EXPECT_NE(up.find(kValue), std::string::npos);  // the handshake's header, substituted
  EXPECT_EQ(up.find("FRAMES"), std::string::npos);  // held until the answer
  Request request;
  std::string held;
  ASSERT_EQ(rw.hand_off_upgrade(request, held), Status::kOk);
  EXPECT_EQ(held, "FRAMES $MSB_KEY");  // not scanned as opaque: the codec reads it
  EXPECT_EQ(request.method, "GET");
  EXPECT_EQ(request.target, "/chat?x=1");
  ASSERT_EQ(request.headers.size(), 4u);
  EXPECT_EQ(request.headers[3].value, "Bearer $MSB_KEY");  // as the guest sent it: no value
  EXPECT_FALSE(rw.awaiting_upgrade());
  Request again;
  EXPECT_EQ(rw.hand_off_upgrade(again, held), Status::kBlocked);  // once
  // The neutral request gates a MessageGate as the handshake was gated.
  MessageGate gate(*f.set, testing::tls_context(&f.pins));
  ASSERT_EQ(gate.on_headers(request, false, true), Status::kOk);
  std::string out;
  ASSERT_EQ(gate.on_data("msg $MSB_KEY", true, out), Status::kOk);
  EXPECT_TRUE(out == "msg " + kValue);
}

// Plain HTTP through the explicit proxy (a secret that allows it): the absolute-form target's
// authority is gate 4's, as for any request.
Status message_verdict(std::string_view target_host, std::string& out) {
  Fixture f(false);
  ConnectionContext ctx = testing::plain_context(&f.pins);
  RequestRewriter rw(*f.set, ctx);
  std::string up, guest;
  const std::string head = "GET http://" + std::string(target_host) +
                           "/ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  EXPECT_EQ(rw.feed(head, up, guest), Status::kOk);
  Request request;
  std::string held;
  EXPECT_EQ(rw.hand_off_upgrade(request, held), Status::kOk);
  EXPECT_EQ(request.authority, target_host);
  EXPECT_EQ(request.target, "/ws");
  MessageGate gate(*f.set, ctx);
  EXPECT_EQ(gate.on_headers(request, false, true), Status::kOk);
  const Status s = gate.on_data("$MSB_KEY", true, out);
  if (s == Status::kBlocked) {
    EXPECT_TRUE(gate.blocked()->violation);
  }
  return s;
}

TEST(UpgradeHandOff, AbsoluteFormTargetKeepsItsAuthority) {
  std::string out;
  ASSERT_EQ(message_verdict("api.example.com", out), Status::kOk);
  EXPECT_TRUE(out == kValue);
  out.clear();
  EXPECT_EQ(message_verdict("evil.example.net", out), Status::kBlocked);  // Host and target disagree
  EXPECT_TRUE(out.empty());
  // Userinfo in the target: never eligible for HTTP/1, never for its messages either.
  EXPECT_EQ(message_verdict("user@api.example.com", out), Status::kBlocked);
  EXPECT_TRUE(out.empty());
}

TEST(UpgradeHandOff, RefusedWithoutAPendingUpgrade) {
  Fixture f;
  RequestRewriter rw(*f.set, testing::tls_context(&f.pins));
  std::string up, guest;
  ASSERT_EQ(rw.feed("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n", up, guest), Status::kOk);
  Request request;
  std::string held;
  EXPECT_EQ(rw.hand_off_upgrade(request, held), Status::kBlocked);
}

}  // namespace
}  // namespace airlock::secrets
