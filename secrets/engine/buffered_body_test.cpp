// A length-framed body with an injection due is rewritten as it arrives (issue 15, upload4):
// each read is scanned and copied once into the rewritten request, a form cut by a read is
// scanned again with the next one, and base64 forms are looked for across reads. These tests
// feed the same requests whole and cut into random reads (short and longer than the longest
// form) and require the same upstream bytes, substitutions and verdicts; bodies are dense in
// placeholders, their prefixes and their percent, JSON and base64 forms. Values are fake.
#include <secrets/engine/engine.hpp>
#include <secrets/engine/engine_test_util.hpp>
#include <secrets/engine/matcher.hpp>

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace airlock::secrets {
namespace {

using testing::body_scope;
using testing::FakePins;
using testing::make_secrets;
using testing::run_rewriter;
using testing::SecretSpec;


// BK, BK_LONG and LONG_BODY_SECRET_NAME are due in the body for api.example.com; OTHER and
// OTHER_LONGER are not (in each pair one placeholder is the other's prefix).
std::vector<SecretSpec> secrets() {
  return {{"BK", "body-FAKE", {"api.example.com"}, body_scope()},
          {"BK_LONG", "bk-long-FAKE", {"api.example.com"}, body_scope()},  // BK's placeholder is its prefix
          {"LONG_BODY_SECRET_NAME", "long-body-FAKE", {"api.example.com"}, body_scope()},
          {"OTHER", "other-FAKE", {"other.example.net"}, {}},
          {"OTHER_LONGER", "other-longer-FAKE", {"other.example.net"}, {}}};
}

std::string post(const std::string& body) {
  return "POST /v1 HTTP/1.1\r\nHost: api.example.com\r\nAccept-Encoding: identity\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         body;
}

std::string b64_of(std::mt19937& rng, const std::string& placeholder) {
  static const std::vector<std::string> prefixes = {"", "x", "xy"};
  std::string t = base64_encode(prefixes[rng() % 3] + placeholder + "yy");
  if (rng() % 2) {
    for (char& ch : t) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
  }
  return t;
}

// Mostly due placeholders and near misses; with `violations`, forms of the others too.
std::string random_body(std::mt19937& rng, bool violations) {
  static const std::vector<std::string> safe = {
      "$MSB_BK", "$MSB_BK_LONG", "$MSB_BK_LON", "$MSB_LONG_BODY_SECRET_NAME", "$MSB_LONG_BODY_SECRET", "$MSB_B", "$MS", "$", "%", "\\", "%24MSB_BK",
      "\\u0024MSB_BK", "$MSB_OTHE", "$MSB_OTHER_LONGE", "%24MSB_OTH", "\\u0024MSB_OT", "aaaa", "{\"k\":\"", "\"}"};
  static const std::vector<std::string> bad = {"$MSB_OTHER", "$MSB_OTHER_LONGER", "%24MSB_OTHER", "\\u0024MSB_OTHER",
                                               "%24MSB_OTHER_LONGER"};
  std::string body;
  const std::size_t parts = 1 + rng() % 40;
  for (std::size_t k = 0; k < parts; ++k) {
    const unsigned pick = rng() % 10;
    if (pick < 5) {
      body += safe[rng() % safe.size()];
    } else if (pick < 8) {
      body += std::string(rng() % 300, static_cast<char>('a' + rng() % 26));  // longer than a form
    } else if (violations && pick == 8) {
      body += bad[rng() % bad.size()];
    } else if (violations) {
      body += b64_of(rng, rng() % 2 ? "$MSB_OTHER" : "$MSB_OTHER_LONGER");
    } else {
      body += b64_of(rng, "$MSB_BK");  // a due secret's base64 is left alone
    }
  }
  return body;
}

std::vector<std::size_t> random_cuts(std::mt19937& rng, std::size_t size) {
  std::vector<std::size_t> cuts;
  std::size_t at = 0;
  while (true) {
    // Short reads (inside a form) and long ones (past the window of an open tail).
    at += rng() % 3 == 0 ? 1 + rng() % 8 : 1 + rng() % 400;
    if (at >= size) break;
    cuts.push_back(at);
  }
  return cuts;
}

struct Lab {
  FakePins pins;
  SecretSet set{make_secrets(secrets()), ViolationAction::kUnset};
  Lab() { pins.pin(testing::api_ip(), "api.example.com"); }
};

std::vector<std::pair<std::string, Location>> names(const std::vector<Substitution>& subs) {
  std::vector<std::pair<std::string, Location>> out;
  for (const Substitution& s : subs) out.emplace_back(s.secret_env, s.location);
  return out;
}

void compare(Lab& lab, const std::string& input, std::mt19937& rng, int& blocked, int& rewritten) {
  const auto ctx = testing::tls_context(&lab.pins);
  const testing::RunResult whole = run_rewriter(lab.set, ctx, input);
  if (whole.status == Status::kBlocked) ++blocked;
  else if (!whole.subs.empty()) ++rewritten;
  for (int round = 0; round < 4; ++round) {
    const std::vector<std::size_t> cuts = random_cuts(rng, input.size());
    const testing::RunResult split = run_rewriter(lab.set, ctx, input, cuts);
    ASSERT_EQ(split.status, whole.status) << input;
    if (whole.status == Status::kBlocked) {
      // Nothing of the blocked request leaves, and the verdict is the whole body's.
      EXPECT_EQ(split.upstream, "") << input;
      ASSERT_TRUE(split.block && whole.block);
      EXPECT_EQ(split.block->secret_env, whole.block->secret_env) << input;
      EXPECT_EQ(split.block->reason, whole.block->reason) << input;
      EXPECT_EQ(split.block->location, Location::kBody);
    } else {
      ASSERT_EQ(split.upstream, whole.upstream) << input;
      EXPECT_EQ(names(split.subs), names(whole.subs)) << input;
    }
  }
}

TEST(BufferedBody, RandomReadsGiveTheSameRequestAsOneRead) {
  Lab lab;
  std::mt19937 rng(20261202);
  int blocked = 0, rewritten = 0;
  for (int n = 0; n < 1000; ++n) {
    compare(lab, post(random_body(rng, n % 3 == 0)), rng, blocked, rewritten);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::printf("compared 1000 bodies: %d blocked, %d rewritten\n", blocked, rewritten);
  // Both outcomes are exercised in numbers.
  EXPECT_GT(blocked, 200);
  EXPECT_GT(rewritten, 80);
}

// One read's body is the whole body rewritten at once: the expected bytes, built by hand.
TEST(BufferedBody, OneReadRewritesEveryDuePlaceholder) {
  Lab lab;
  const std::string body = "a$MSB_BK$MSB_LONG_BODY_SECRET_NAME$MSB_B%24MSB_BK" + std::string(500, 'z') + "$MSB_BK";
  const testing::RunResult r = run_rewriter(lab.set, testing::tls_context(&lab.pins), post(body));
  ASSERT_EQ(r.status, Status::kOk);
  EXPECT_EQ(r.upstream, post("abody-FAKElong-body-FAKE$MSB_B%24MSB_BK" + std::string(500, 'z') + "body-FAKE"));
  EXPECT_EQ(r.subs.size(), 3u);
}

// A placeholder cut right after its first byte by a read of more than the longest form: the
// open tail goes through the scan again with the next read's first bytes.
TEST(BufferedBody, PlaceholderCutByALongReadIsRewritten) {
  Lab lab;
  const std::string tail(1000, 'q');
  const std::string input = post(std::string(700, 'p') + "$MSB_LONG_BODY_SECRET_NAME" + tail);
  const std::size_t at = input.find('$');
  for (std::size_t cut = at; cut <= at + 27; ++cut) {
    const testing::RunResult r = run_rewriter(lab.set, testing::tls_context(&lab.pins), input, {cut});
    ASSERT_EQ(r.status, Status::kOk) << cut;
    EXPECT_EQ(r.upstream, post(std::string(700, 'p') + "long-body-FAKE" + tail)) << cut;
  }
}

// A placeholder whose prefix is another's ($MSB_BK in $MSB_BK_LONG), cut at every byte by a long
// read: the same request as one read gives.
TEST(BufferedBody, APlaceholderWithAnotherAsPrefixCutByAReadIsRewrittenAsWhole) {
  Lab lab;
  const std::string input = post(std::string(700, 'p') + "$MSB_BK_LONG" + std::string(1000, 'q'));
  const testing::RunResult whole = run_rewriter(lab.set, testing::tls_context(&lab.pins), input);
  ASSERT_EQ(whole.status, Status::kOk);
  ASSERT_NE(whole.upstream.find("FAKE"), std::string::npos);
  const std::size_t at = input.find('$');
  for (std::size_t cut = at; cut <= at + 12; ++cut) {
    const testing::RunResult r = run_rewriter(lab.set, testing::tls_context(&lab.pins), input, {cut});
    ASSERT_EQ(r.status, Status::kOk) << cut;
    EXPECT_EQ(r.upstream, whole.upstream) << cut;
  }
}

// The base64 forms of the secrets not allowed here (every alignment, both alphabets), cut at
// every byte after a long read and again 1, 2 or 5 bytes later (a short read inside the form):
// blocked.
TEST(BufferedBody, Base64FormCutByReadsBlocks) {
  Lab lab;
  for (const std::string env : {"OTHER", "OTHER_LONGER"}) {
    for (const std::string prefix : {"", "x", "xy"}) {
      for (const bool url : {false, true}) {
        std::string form = base64_encode(prefix + "$MSB_" + env + "yy");
        if (url) {
          for (char& ch : form) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
        }
        const std::string input = post(std::string(500, 'p') + form + std::string(500, '.'));
        const std::size_t at = input.find(form);
        for (std::size_t cut = at; cut <= at + form.size(); ++cut) {
          for (const std::size_t second : {1, 2, 5}) {
            const testing::RunResult r =
                run_rewriter(lab.set, testing::tls_context(&lab.pins), input, {cut, cut + second});
            ASSERT_EQ(r.status, Status::kBlocked) << form << " cut at " << cut << " and " << cut + second;
            EXPECT_EQ(r.upstream, "");
            ASSERT_TRUE(r.block);
            // OTHER_LONGER's base64 begins with OTHER's (found first, as in a whole body).
            EXPECT_TRUE(r.block->secret_env == env || r.block->secret_env == "OTHER") << r.block->secret_env;
          }
        }
      }
    }
  }
}

// The guest stops inside the body right after a placeholder not allowed here: the request is
// blocked once the body is known to end (here: the guest's end), as when the body was scanned
// only once complete; nothing of it left before.
TEST(BufferedBody, AFormInAnIncompleteBodyBlocksAtFinish) {
  Lab lab;
  const std::string input = post(std::string(300, 'p') + "$MSB_OTHER" + "_LONGER and more");
  RequestRewriter rw(lab.set, testing::tls_context(&lab.pins));
  std::string up, guest;
  ASSERT_EQ(rw.feed(std::string_view(input).substr(0, input.find("_LONGER")), up, guest), Status::kOk);
  EXPECT_EQ(up, "");
  EXPECT_EQ(rw.finish(up), Status::kBlocked);
  EXPECT_EQ(up, "");
  ASSERT_TRUE(rw.blocked());
  EXPECT_EQ(rw.blocked()->secret_env, "OTHER");
}

// A raw form of one secret early in the body and a base64 form of another after it: the verdict
// is the base64 one (a whole body is looked at for base64 forms first), however the reads cut it.
TEST(BufferedBody, TheVerdictDoesNotDependOnTheReads) {
  Lab lab;
  const std::string input = post(std::string(200, 'p') + "$MSB_OTHER_LONGER" + std::string(900, 'q') +
                                 base64_encode("x$MSB_OTHERyy") + std::string(300, 'r'));
  for (std::size_t cut = 100; cut < input.size(); cut += 37) {
    const testing::RunResult r = run_rewriter(lab.set, testing::tls_context(&lab.pins), input, {cut, cut + 600});
    ASSERT_EQ(r.status, Status::kBlocked) << cut;
    EXPECT_EQ(r.upstream, "");
    ASSERT_TRUE(r.block);
    EXPECT_EQ(r.block->secret_env, "OTHER") << cut;
    EXPECT_NE(r.block->reason.find("base64"), std::string::npos) << r.block->reason;
  }
}

// The guest stops inside a form: it stays open, finish() forwards nothing of the incomplete
// request and, as for a whole body, a form cut by the end is no form.
TEST(BufferedBody, IncompleteBodyEndingInsideAFormForwardsNothing) {
  Lab lab;
  const std::string input = post(std::string(300, 'p') + "$MSB_BK %24MSB_OTHE" + "R and more");
  RequestRewriter rw(lab.set, testing::tls_context(&lab.pins));
  std::string up, guest;
  ASSERT_EQ(rw.feed(std::string_view(input).substr(0, input.find("R and")), up, guest), Status::kOk);
  EXPECT_EQ(up, "");
  EXPECT_EQ(rw.finish(up), Status::kOk);
  EXPECT_EQ(up, "");
}

}  // namespace
}  // namespace airlock::secrets
