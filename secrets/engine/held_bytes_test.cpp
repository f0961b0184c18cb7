// What the rewriter tells the gateway for its memory budget and its head deadline.
#include "secrets/engine/engine_test_util.hpp"

#include <gtest/gtest.h>

namespace airlock::secrets {
namespace {

using namespace testing;

struct Held : ::testing::Test {
  FakePins pins;
  std::shared_ptr<SecretSet> set;
  void SetUp() override {
    pins.pin(api_ip(), "api.example.com");
    InjectionScopes body;
    body.body = true;
    set = std::make_shared<SecretSet>(make_secrets({SecretSpec("KEY", "fake-held-value", {"api.example.com"}, body)}),
                                      ViolationAction::kUnset);
  }
};

TEST_F(Held, ABodyBufferedToRewriteCountsItsDeclaredLengthFromItsHead) {
  RequestRewriter rw(*set, tls_context(&pins));
  std::string up, guest;
  EXPECT_EQ(rw.feed("POST /x HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 1000000\r\n\r\n", up, guest),
            Status::kOk);
  EXPECT_GE(rw.held_bytes(), 1000000u);  // reserved at the head: the budget sees it before the upload
  EXPECT_EQ(rw.feed(std::string(1000000, 'a'), up, guest), Status::kOk);
  EXPECT_FALSE(up.empty());               // the whole request went out
  EXPECT_LT(rw.held_bytes(), 64u * 1024);  // and its buffers were given back
}

// The head's violation scan notes where the placeholders' first bytes are (for the rewrite): a
// head full of them leaves no list behind, beyond what a head of other bytes leaves.
TEST_F(Held, AHeadFullOfFirstBytesLeavesNoListBehind) {
  FakePins both;
  both.pin(api_ip(), "api.example.com");
  const SecretSet two(make_secrets({SecretSpec("KEY", "fake-held-value", {"api.example.com"}),
                                    SecretSpec("OTHER", "fake-other-value", {"other.example.com"})}),
                      ViolationAction::kUnset);
  const auto held_after = [&](char filler) {
    RequestRewriter rw(two, tls_context(&both));
    std::string up, guest;
    const std::string head = "GET / HTTP/1.1\r\nHost: api.example.com\r\nX: $MSB_KEY " + std::string(12000, filler) + "\r\n\r\n";
    EXPECT_EQ(rw.feed(head, up, guest), Status::kOk);
    EXPECT_NE(up.find("fake-held-value"), std::string::npos);  // rewritten, with the list
    return rw.held_bytes();
  };
  const std::size_t plain = held_after('a');
  const std::size_t dollars = held_after('$');
  EXPECT_LT(dollars, plain + 1024) << plain;
}

TEST_F(Held, InHeadFromTheFirstByteToTheEmptyLine) {
  RequestRewriter rw(*set, tls_context(&pins));
  std::string up, guest;
  EXPECT_FALSE(rw.in_head());
  rw.feed("GET /x HTTP/1.1\r\nHost: api.exa", up, guest);
  EXPECT_TRUE(rw.in_head());
  rw.feed("mple.com\r\n", up, guest);
  EXPECT_TRUE(rw.in_head());
  rw.feed("\r\n", up, guest);
  EXPECT_FALSE(rw.in_head());  // a complete head, no body: between requests again
  rw.feed("POST /y HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 5\r\n\r\nab", up, guest);
  EXPECT_FALSE(rw.in_head());  // in a body, not a head
}

}  // namespace
}  // namespace airlock::secrets
