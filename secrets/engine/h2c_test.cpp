// Cleartext HTTP/2 (h2c) on a connection the HTTP/1 rewriter handles (issue 13 item 6): the
// prior-knowledge preface is refused, never forwarded; `Upgrade: h2c` never leaves with a request
// that may carry a value; after a 101 the stream is opaque (no substitution ever, a placeholder
// in it is a violation). Values are fake.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <string>

namespace airlock::secrets {
namespace {

using testing::FakePins;
using testing::make_secrets;
using testing::run_rewriter;

const std::string kKey = "sk-live-FAKE-two";
const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Fixture {
  Fixture() : set(make_secrets({{"KEY", kKey, {"api.example.com"}, {}, /*require_tls=*/false}}), ViolationAction::kBlockAndLog) {
    pins.pin(testing::api_ip(), "api.example.com");
  }
  FakePins pins;
  SecretSet set;
};

TEST(H2c, PriorKnowledgePrefaceIsRefusedOnPlainHttp) {
  Fixture fx;
  // A SETTINGS frame and a HEADERS frame whose (literal, unindexed) header block holds the
  // placeholder in the clear follow the preface.
  std::string frames = kPreface + std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9) + "x-key: $MSB_KEY";
  const auto r = run_rewriter(fx.set, testing::plain_context(&fx.pins), frames);
  EXPECT_EQ(r.status, Status::kBlocked);
  ASSERT_TRUE(r.block);
  EXPECT_FALSE(r.block->violation);
  EXPECT_NE(r.block->reason.find("malformed request"), std::string::npos) << r.block->reason;
  EXPECT_TRUE(r.upstream.empty()) << "nothing of the preface or its frames is forwarded";
}

TEST(H2c, PriorKnowledgePrefaceIsRefusedInsideHttp11Tls) {
  // ALPN said http/1.1 (the upstream speaks only HTTP/1.1): HTTP/2 bytes there are refused too.
  Fixture fx;
  for (std::size_t cut = 1; cut < kPreface.size(); ++cut) {
    const auto r = run_rewriter(fx.set, testing::tls_context(&fx.pins), kPreface, {cut});
    EXPECT_EQ(r.status, Status::kBlocked) << cut;
    EXPECT_TRUE(r.upstream.empty()) << cut;
  }
}

TEST(H2c, PrefaceAfterARequestIsRefused) {
  Fixture fx;
  const std::string get = "GET / HTTP/1.1\r\nHost: other.example\r\n\r\n";
  const auto r = run_rewriter(fx.set, testing::plain_context(&fx.pins), get + kPreface);
  EXPECT_EQ(r.status, Status::kBlocked);
  EXPECT_EQ(r.upstream, get);  // only the complete request before it left
}

TEST(H2c, UpgradeNeverLeavesWithARequestThatMayCarryAValue) {
  Fixture fx;
  const std::string req =
      "GET / HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"
      "Connection: Upgrade, HTTP2-Settings\r\nX-Key: $MSB_KEY\r\n\r\n";
  const auto r = run_rewriter(fx.set, testing::plain_context(&fx.pins), req);
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.upstream.find("h2c"), std::string::npos) << r.upstream;
  EXPECT_EQ(r.upstream.find("HTTP2-Settings"), std::string::npos);
  EXPECT_NE(r.upstream.find(kKey), std::string::npos);
}

TEST(H2c, AfterA101TheStreamIsOpaqueAndNeverSubstituted) {
  // No value may flow on the first request (its host is not allowed), so its h2c offer goes and
  // the server switches. What follows is HTTP/2: a raw
  // placeholder in it is a violation, and a request-shaped text in it is never rewritten.
  Fixture fx;
  const std::string req = "GET / HTTP/1.1\r\nHost: other.example\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
  const std::string h2_bytes = kPreface + "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Key: $MSB_KEY\r\n\r\n";
  const auto r = run_rewriter(fx.set, testing::plain_context(&fx.pins), req + h2_bytes, {}, true, /*switched=*/true);
  EXPECT_EQ(r.status, Status::kBlocked);
  ASSERT_TRUE(r.block);
  EXPECT_TRUE(r.block->violation);
  EXPECT_EQ(r.block->location, Location::kStream);
  EXPECT_EQ(r.upstream.find(kKey), std::string::npos);
}

}  // namespace
}  // namespace airlock::secrets
