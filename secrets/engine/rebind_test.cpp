// A reload hands a connection to a rewriter on the new SecretSet at a request boundary (issue 17):
// at_message_boundary() says when nothing of a request is held or in flight, and
// assume_values_may_flow() carries what the old rewriter let reach the upstream.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <string>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;

const std::string kHead = "GET / HTTP/1.1\r\nHost: api.example.com\r\n";

struct Fixture {
  FakePins pins;
  SecretSet set{make_secrets({{"KEY", "sk-FAKE-rebind", {"api.example.com"}}}), ViolationAction::kUnset};
  RequestRewriter rw{set, testing::tls_context(&pins)};
  std::string up, guest;
  // Unpinned: the destination was not resolved for api.example.com, so no secret is eligible.
  explicit Fixture(bool pinned = true) {
    if (pinned) pins.pin(testing::api_ip(), "api.example.com");
  }
  Status feed(const std::string& in) { return rw.feed(in, up, guest); }
};

TEST(RewriterBoundary, BetweenRequestsOnly) {
  Fixture f;
  EXPECT_TRUE(f.rw.at_message_boundary());  // nothing yet
  ASSERT_EQ(f.feed("GET / HT"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // inside a head
  ASSERT_EQ(f.feed("TP/1.1\r\nHost: api.example.com\r\nContent-Length: 4\r\n\r\nab"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // inside a body
  ASSERT_EQ(f.feed("cd"), Status::kOk);
  EXPECT_TRUE(f.rw.at_message_boundary());
  ASSERT_EQ(f.feed(kHead + "\r\n"), Status::kOk);
  EXPECT_TRUE(f.rw.at_message_boundary());
}

TEST(RewriterBoundary, NotWhileABodyTailIsHeldBack) {
  // A chunked body whose last bytes could begin a placeholder: held between calls.
  Fixture f;
  ASSERT_EQ(f.feed(kHead + "Transfer-Encoding: chunked\r\n\r\n5\r\nab $M\r\n"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());
  ASSERT_EQ(f.feed("0\r\n\r\n"), Status::kOk);
  EXPECT_TRUE(f.rw.at_message_boundary());
}

TEST(RewriterBoundary, NotAroundAnUpgradeNorWhenBlocked) {
  Fixture f;
  ASSERT_EQ(f.feed(kHead + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // its answer decides what follows
  ASSERT_EQ(f.rw.upgrade_answered(true, f.up, f.guest), Status::kOk);
  EXPECT_FALSE(f.rw.at_message_boundary());  // opaque from here on

  Fixture refused;
  ASSERT_EQ(refused.feed(kHead + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), Status::kOk);
  ASSERT_EQ(refused.rw.upgrade_answered(false, refused.up, refused.guest), Status::kOk);
  EXPECT_TRUE(refused.rw.at_message_boundary());  // HTTP again

  Fixture blocked;
  ASSERT_EQ(blocked.feed("GET / HTTP/1.1\r\nHost: evil.example\r\nX: $MSB_KEY\r\n\r\n"), Status::kBlocked);
  EXPECT_FALSE(blocked.rw.at_message_boundary());
}

TEST(RewriterBoundary, AssumedFlowOffersOnlyIdentityFromTheFirstRequest) {
  // The connection's earlier requests carried a value under another rewriter: its upstream may
  // echo it, so the responses must stay readable by the scrubber (here no secret is eligible).
  Fixture f(false);
  EXPECT_FALSE(f.rw.values_may_flow());
  f.rw.assume_values_may_flow();
  EXPECT_TRUE(f.rw.values_may_flow());
  ASSERT_EQ(f.feed(kHead + "Accept-Encoding: gzip\r\n\r\n"), Status::kOk);
  EXPECT_EQ(f.up, kHead + "Accept-Encoding: identity\r\n\r\n");

  Fixture fresh(false);  // without it, nothing flowed: the request leaves as it came
  ASSERT_EQ(fresh.feed(kHead + "Accept-Encoding: gzip\r\n\r\n"), Status::kOk);
  EXPECT_EQ(fresh.up, kHead + "Accept-Encoding: gzip\r\n\r\n");
}

}  // namespace
}  // namespace airlock::secrets
