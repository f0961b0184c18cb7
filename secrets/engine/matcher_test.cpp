// The placeholder matchers of §4 on their own: every form, partial forms at the end of the
// data, base64 at each alignment, split invariance of the streaming detector, and the codecs.
#include <secrets/engine/matcher.hpp>
#include <secrets/engine/engine_test_util.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::secrets {
namespace {

using testing::make_secrets;
using testing::SecretSpec;

// Secret 0: $MSB_KEY, 1: $MSB_OTHER, 2: custom "?>?>?>" (base64 with '/'), 3: custom "éTOK",
// 4: custom "100%25" (a '%' inside the placeholder), 5: custom "%PH!" (starts with '%').
std::vector<SecretSpec> specs() {
  return {
      {"KEY", "k-FAKE", {"api.example.com"}, {}},
      {"OTHER", "o-FAKE", {"api.example.com"}, {}},
      {"Q", "q-FAKE", {"api.example.com"}, {}, true, false, "?>?>?>"},
      {"E", "e-FAKE", {"api.example.com"}, {}, true, false, "\xc3\xa9TOK"},
      {"P", "p-FAKE", {"api.example.com"}, {}, true, false, "100%25"},
      {"PCT", "c-FAKE", {"api.example.com"}, {}, true, false, "%PH!"},
  };
}

class MatcherTest : public ::testing::Test {
 protected:
  SecretSet set{make_secrets(specs()), ViolationAction::kUnset};
  const SecretSet::Compiled& c = set.compiled();

  Match at0(std::string_view s, const std::uint8_t* want = nullptr) {
    return match_at(c, reinterpret_cast<const unsigned char*>(s.data()), s.size(), 0, want);
  }
};

struct FormCase {
  std::string input;
  Match::Kind kind;
  std::uint32_t secret;
  std::uint32_t length;
  std::uint8_t forms;
};

TEST_F(MatcherTest, EveryFormAtPositionZero) {
  const std::vector<FormCase> table = {
      {"$MSB_KEY", Match::kFound, 0, 8, kFormRaw},
      {"$MSB_KEY!", Match::kFound, 0, 8, kFormRaw},
      {"$MSB_OTHER", Match::kFound, 1, 10, kFormRaw},
      {"%24MSB_KEY", Match::kFound, 0, 10, kFormPercent},
      {"%24%4D%53%42%5F%4B%45%59", Match::kFound, 0, 24, kFormPercent},
      {"%24%4d%53%42%5f%4b%45%59", Match::kFound, 0, 24, kFormPercent},
      {"$MSB%5fKEY", Match::kFound, 0, 10, kFormPercent},
      {"$MSB_KE%59", Match::kFound, 0, 10, kFormPercent},
      {"\\u0024MSB_KEY", Match::kFound, 0, 13, kFormJson},
      {"\\u0024\\u004D\\u0053B_KEY", Match::kFound, 0, 23, kFormJson},
      {"\\u0024\\u004d\\u0053B_KEY", Match::kFound, 0, 23, kFormJson},
      {"$MSB\\u005fKEY", Match::kFound, 0, 13, kFormJson},
      {"%24\\u004dSB_KEY", Match::kFound, 0, 15, kFormPercent | kFormJson},
      {"\\/", Match::kNone, 0, 0, kFormRaw},
      {"?>?>?>", Match::kFound, 2, 6, kFormRaw},
      {"?>?%3e?>", Match::kFound, 2, 8, kFormPercent},
      {"\xc3\xa9TOK", Match::kFound, 3, 5, kFormRaw},
      {"%C3%A9TOK", Match::kFound, 3, 9, kFormPercent},
      {"\\u00e9TOK", Match::kFound, 3, 9, kFormJson},
      {"\\u00E9TOK", Match::kFound, 3, 9, kFormJson},
      {"100%25", Match::kFound, 4, 6, kFormRaw},
      {"100%2525", Match::kFound, 4, 6, kFormRaw},  // the raw placeholder is a prefix
      {"1%300%25", Match::kFound, 4, 8, kFormPercent},
      {"%PH!", Match::kFound, 5, 4, kFormRaw},
      {"%25PH!", Match::kFound, 5, 6, kFormPercent},
      {"%25%50H%21", Match::kFound, 5, 10, kFormPercent},
      {"\\u0025PH!", Match::kFound, 5, 9, kFormJson},
      {"$MSB_K%45Y", Match::kFound, 0, 10, kFormPercent},
      {"$MSB_O%54HER", Match::kFound, 1, 12, kFormPercent},
      {"$MSB_%4fTHER", Match::kFound, 1, 12, kFormPercent},
      // Not a placeholder.
      {"$MSB_KEX", Match::kNone, 0, 0, kFormRaw},
      {"$MSB-KEY", Match::kNone, 0, 0, kFormRaw},
      {"$msb_key", Match::kNone, 0, 0, kFormRaw},
      {"%24msb_key", Match::kNone, 0, 0, kFormRaw},
      {"%2", Match::kPartial, 0, 0, kFormRaw},
      {"%2G", Match::kNone, 0, 0, kFormRaw},
      {"%24MSB_KEZ", Match::kNone, 0, 0, kFormRaw},
      {"\\u00", Match::kPartial, 0, 0, kFormRaw},
      {"\\u002", Match::kPartial, 0, 0, kFormRaw},
      {"\\u002x", Match::kNone, 0, 0, kFormRaw},
      {"\\x24MSB_KEY", Match::kNone, 0, 0, kFormRaw},
      {"\\", Match::kPartial, 0, 0, kFormRaw},
      {"%", Match::kPartial, 0, 0, kFormRaw},
      // Partial at the end of the data.
      {"$", Match::kPartial, 0, 0, kFormRaw},
      {"$MSB_KE", Match::kPartial, 0, 0, kFormRaw},
      {"$MSB_KE%5", Match::kPartial, 0, 0, kFormRaw},
      {"$MSB_KE\\u00", Match::kPartial, 0, 0, kFormRaw},
      {"%24MSB_O", Match::kPartial, 0, 0, kFormRaw},
      {"abc", Match::kNone, 0, 0, kFormRaw},
  };
  for (const FormCase& fc : table) {
    const Match m = at0(fc.input);
    EXPECT_EQ(m.kind, fc.kind) << fc.input;
    if (fc.kind == Match::kFound && m.kind == Match::kFound) {
      EXPECT_EQ(m.secret, fc.secret) << fc.input;
      EXPECT_EQ(m.length, fc.length) << fc.input;
      EXPECT_EQ(m.forms, fc.forms) << fc.input;
    }
  }
}

TEST_F(MatcherTest, WantFiltersSecrets) {
  const std::uint8_t only_other[] = {0, 1, 0, 0, 0, 0};
  EXPECT_EQ(at0("$MSB_KEY", only_other).kind, Match::kNone);
  EXPECT_EQ(at0("$MSB_OTHER", only_other).kind, Match::kFound);
  EXPECT_EQ(at0("$MSB_OTH", only_other).kind, Match::kPartial);
}

TEST_F(MatcherTest, ScanFindsEveryOccurrence) {
  const std::string text = "a $MSB_KEY b %24MSB_OTHER c \\u0024MSB_KEY $MSB_ d ?>?>?>";
  std::vector<std::pair<std::size_t, std::uint32_t>> found;
  const auto* d = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t stop = scan_forms(c, d, 0, text.size(), text.size(), nullptr, true, [&](std::size_t pos, const Match& m) {
    found.emplace_back(pos, m.secret);
    return true;
  });
  EXPECT_EQ(stop, text.size());
  const std::vector<std::pair<std::size_t, std::uint32_t>> expected = {{2, 0}, {13, 1}, {28, 0}, {50, 2}};
  EXPECT_EQ(found, expected);
}

TEST_F(MatcherTest, ScanStopsAtAPartialTailUnlessFinal) {
  const std::string text = "hello $MSB_K";
  const auto* d = reinterpret_cast<const unsigned char*>(text.data());
  auto none = [](std::size_t, const Match&) { return true; };
  EXPECT_EQ(scan_forms(c, d, 0, text.size(), text.size(), nullptr, false, none), 6u);
  EXPECT_EQ(scan_forms(c, d, 0, text.size(), text.size(), nullptr, true, none), text.size());
}

TEST_F(MatcherTest, NextTriggerSkipsLongRuns) {
  std::string text(1000, 'a');
  text[777] = '\\';
  const auto* d = reinterpret_cast<const unsigned char*>(text.data());
  EXPECT_EQ(next_trigger(c, d, 0, text.size()), 777u);
  EXPECT_EQ(next_trigger(c, d, 778, text.size()), text.size());
  EXPECT_EQ(next_trigger(c, d, 0, text.size(), true), text.size());  // '\\' starts no raw placeholder
  text[900] = '$';
  EXPECT_EQ(next_trigger(c, d, 0, text.size(), true), 900u);
}

// The detector's verdict and match offset do not depend on how the stream is cut.
TEST_F(MatcherTest, StreamDetectorIsSplitInvariant) {
  const std::vector<std::string> streams = {
      std::string(100, 'x') + "$MSB_OTHER" + std::string(50, 'y'),
      "abc %24%4d%53%42_OTHER def",
      "\\u0024\\u004dSB_OTHER",
      "$MSB_KE $MSB_OTHE %24MSB_OTHER",
      "nothing here $ % \\ $MSB",
      // base64 (issue 12 item 7): each alignment, and the url alphabet of "?>?>?>"
      "data: " + base64_encode("$MSB_OTHER") + " end",
      "data: " + base64_encode("x$MSB_OTHER!") + " end",
      "data: " + base64_encode("xy$MSB_OTHER") + " end",
      "u=Pz4_Pj8- and more",
      "not quite: " + base64_encode("$MSB_OTHER").substr(0, 10) + "!",
      // A base64 form and a raw one close together: the first one is reported however cut.
      "E1TQl9" + base64_encode("$MSB_KEY") + "$MSB_OTHER@",
      base64_encode("x$MSB_KEY").substr(0, 12) + "$MSB_OTHER" + base64_encode("x$MSB_KEY").substr(12),
      "$MSB_OTH" + base64_encode("$MSB_KEY") + "ER",
  };
  for (const std::string& s : streams) {
    StreamDetector whole(c);
    Match wm;
    std::uint64_t wat = 0;
    bool wclean = whole.feed(s, nullptr, &wm, &wat);
    if (wclean) wclean = whole.finish(nullptr, &wm, &wat);
    for (std::size_t a = 0; a <= s.size(); ++a) {
      for (std::size_t b = a; b <= s.size(); ++b) {
        StreamDetector det(c);
        Match m;
        std::uint64_t at = 0;
        bool clean = det.feed(std::string_view(s).substr(0, a), nullptr, &m, &at);
        if (clean) clean = det.feed(std::string_view(s).substr(a, b - a), nullptr, &m, &at);
        if (clean) clean = det.feed(std::string_view(s).substr(b), nullptr, &m, &at);
        if (clean) clean = det.finish(nullptr, &m, &at);
        ASSERT_EQ(clean, wclean) << s << " cut " << a << "," << b;
        if (!clean) {
          ASSERT_EQ(at, wat) << s << " cut " << a << "," << b;
          ASSERT_EQ(m.secret, wm.secret);
        }
        ASSERT_LT(det.carry_size(), c.max_form);
      }
    }
  }
}

TEST_F(MatcherTest, Base64AtEveryAlignmentAndAlphabet) {
  // Each placeholder after 0, 1 and 2 leading bytes, standard and url alphabets.
  for (const std::string& p : {std::string("$MSB_OTHER"), std::string("?>?>?>")}) {
    for (std::size_t lead = 0; lead < 3; ++lead) {
      for (std::size_t trail = 0; trail < 3; ++trail) {
        const std::string plain = std::string(lead, '\x01') + p + std::string(trail, '\x02');
        std::string enc = base64_encode(plain);
        for (int url = 0; url < 2; ++url) {
          if (url) {
            for (char& ch : enc) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
          }
          std::size_t at = 0;
          const std::string text = "X-Data: " + enc + "\r\n";
          const Match m = find_base64_form(c, text, nullptr, &at);
          ASSERT_EQ(m.kind, Match::kFound) << p << " lead " << lead << " trail " << trail << " url " << url;
          EXPECT_EQ(m.secret, p == "$MSB_OTHER" ? 1u : 2u);
        }
      }
    }
  }
  std::size_t at = 0;
  EXPECT_EQ(find_base64_form(c, "X-Data: aGVsbG8gd29ybGQ=\r\n", nullptr, &at).kind, Match::kNone);
  const std::uint8_t only_key[] = {1, 0, 0, 0, 0, 0};
  EXPECT_EQ(find_base64_form(c, base64_encode("$MSB_OTHER"), only_key, &at).kind, Match::kNone);
}

TEST(Codecs, Base64RoundTrip) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("user:sk-live-FAKE"), "dXNlcjpzay1saXZlLUZBS0U=");
  std::string out;
  EXPECT_TRUE(base64_decode("Zm9v", out));
  EXPECT_EQ(out, "foo");
  EXPECT_TRUE(base64_decode("Zm8", out));
  EXPECT_EQ(out, "fo");
  EXPECT_TRUE(base64_decode("_-8=", out));
  EXPECT_EQ(out, "\xff\xef");
  EXPECT_FALSE(base64_decode("Zm9v!", out));
  EXPECT_FALSE(base64_decode("Z", out));
}

TEST(Codecs, PercentEncodeKeepsUnreserved) {
  std::string out;
  percent_encode_append("aZ09-._~ /?&=%\r\n\xff", out);
  EXPECT_EQ(out, "aZ09-._~%20%2F%3F%26%3D%25%0D%0A%FF");
}

TEST(Codecs, FormNames) {
  EXPECT_EQ(form_name(kFormRaw), "raw");
  EXPECT_EQ(form_name(kFormPercent), "percent-encoded");
  EXPECT_EQ(form_name(kFormJson), "JSON-escaped");
  EXPECT_EQ(form_name(kFormPercent | kFormJson), "percent- and JSON-escaped");
  EXPECT_EQ(form_name(kFormBase64), "base64");
  EXPECT_EQ(form_name(kFormBasic | kFormPercent), "base64 in Basic auth");
}

TEST(Codecs, WipeZeroesTheWholeBuffer) {
  std::string s = "sensitive-FAKE-value-longer-than-sso";
  const std::size_t cap = s.capacity();
  wipe(s);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.capacity(), cap);
  for (std::size_t i = 0; i < cap; ++i) ASSERT_EQ(s.data()[i], '\0');
}

// Bytes past size() may have held a value (a string that shrank after a substitution): the one
// pass covers the whole capacity, not only the bytes in use.
TEST(Codecs, WipeZeroesTheBytesPastTheSizeToo) {
  std::string s(200, 'v');
  s.resize(7);  // the capacity (and the 'v' bytes past the size) stay
  const std::size_t cap = s.capacity();
  ASSERT_GE(cap, 200u);
  wipe(s);
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.capacity(), cap);
  for (std::size_t i = 0; i < cap; ++i) ASSERT_EQ(s.data()[i], '\0') << "byte " << i;
}

}  // namespace
}  // namespace airlock::secrets
