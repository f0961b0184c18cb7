// AuditRecord must write exactly what the nlohmann path wrote (the audit format is unchanged):
// compared here over hostile strings and many random ones, member by member and as a record.
#include "gateway/audit_record.hpp"

#include "gateway/audit_log.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace airlock::gateway {
namespace {

using Json = nlohmann::ordered_json;

std::string reference(std::string_view s) {
  return Json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string ours(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

std::vector<std::string> hostile_strings() {
  std::vector<std::string> v = {
      "",
      "plain host.example",
      "\"quoted\"",
      "back\\slash",
      "\\\"",
      "\"},\"event\":\"forged\",\"x\":{\"",  // a member forged from inside a value
      "line\nbreak\r\n",
      "\b\f\t",
      std::string("nul\0byte", 8),
      "\x01\x02\x1f\x7f",
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x94\x91",  // valid 2-, 3- and 4-byte characters
      "\xC3",                                        // truncated at the end
      "\xE2\x82",
      "\xF0\x9F\x94",
      "\x80",                                        // a lone continuation byte
      "\xBF\xBF",
      "\xC0\xAF",                                    // overlong '/'
      "\xC1\xBF",
      "\xE0\x80\xAF",                                // overlong 3-byte
      "\xE0\x9F\xBF",
      "\xF0\x80\x80\xAF",                            // overlong 4-byte
      "\xF0\x8F\xBF\xBF",
      "\xED\xA0\x80",                                // a surrogate (U+D800)
      "\xED\xBF\xBF",
      "\xED\x9F\xBF",                                // U+D7FF, valid
      "\xF4\x8F\xBF\xBF",                            // U+10FFFF, valid
      "\xF4\x90\x80\x80",                            // past U+10FFFF
      "\xF5\x80\x80\x80",
      "\xFE\xFF",
      "\xFF",
      "\xE2\x28\xA1",                                // a bad continuation that is ASCII
      "\xE2\x82\x28",
      "\xC3\"",                                      // a truncated character before a quote
      "\xE2\x82\n",
      "a\xC3\xC3\xA9z",                              // a new lead where a continuation was due
      "\xF0\x9F\xF0\x9F\x94\x91",
      "\xEF\xBB\xBF" "bom",
      "\xEF\xBF\xBD",                                // U+FFFD itself
      "\xEF\xBF\xBE\xEF\xBF\xBF",                    // noncharacters are valid UTF-8
      std::string(300, '"'),
      std::string(300, '\x01'),
      std::string(300, '\x80'),
  };
  return v;
}

TEST(AuditRecord, EscapesHostileStringsLikeTheJsonLibrary) {
  for (const std::string& s : hostile_strings()) EXPECT_EQ(ours(s), reference(s)) << testing::PrintToString(s);
}

TEST(AuditRecord, EveryOneAndTwoByteStringMatchesTheJsonLibrary) {
  for (int a = 0; a < 256; ++a) {
    const std::string one(1, static_cast<char>(a));
    ASSERT_EQ(ours(one), reference(one)) << a;
    for (int b = 0; b < 256; ++b) {
      const std::string two{static_cast<char>(a), static_cast<char>(b)};
      ASSERT_EQ(ours(two), reference(two)) << a << " " << b;
    }
  }
}

// Every lead byte with every second byte and a few third and fourth bytes, at the end of the
// string and before more text: the boundaries of table 3-7.
TEST(AuditRecord, EveryMultiByteBoundaryMatchesTheJsonLibrary) {
  const unsigned char tails[] = {0x00, 0x22, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF};
  for (int lead = 0xC0; lead < 256; ++lead) {
    for (int second = 0; second < 256; ++second) {
      for (unsigned char third : tails) {
        for (unsigned char fourth : {0x41, 0x80, 0xBF, 0xC2}) {
          const std::string s{static_cast<char>(lead), static_cast<char>(second), static_cast<char>(third),
                              static_cast<char>(fourth)};  // NOLINT
          ASSERT_EQ(ours(s), reference(s)) << testing::PrintToString(s);
          ASSERT_EQ(ours(s + "x"), reference(s + "x"));
        }
      }
    }
  }
}

TEST(AuditRecord, RandomStringsMatchTheJsonLibrary) {
  std::mt19937 rng(15);
  // Biased towards the bytes that matter: ASCII, escapes, leads and continuations.
  const std::string alphabet = std::string("aZ09 .:/\"\\\b\f\n\r\t\x01\x1f\x7f", 19) +
                               "\x80\x8f\x90\x9f\xa0\xbf\xc0\xc1\xc2\xdf\xe0\xe1\xec\xed\xee\xef\xf0\xf1\xf3\xf4\xf5\xff";
  for (int n = 0; n < 200000; ++n) {
    const std::size_t len = rng() % 24;
    std::string s;
    for (std::size_t i = 0; i < len; ++i) {
      s.push_back(rng() % 4 == 0 ? static_cast<char>(rng() & 0xFF) : alphabet[rng() % alphabet.size()]);
    }
    ASSERT_EQ(ours(s), reference(s)) << testing::PrintToString(s);
  }
}

TEST(AuditRecord, ARecordIsTheSameTextAsTheJsonObject) {
  for (const std::string& hostile : hostile_strings()) {
    Json j;
    j["event"] = "substitution";
    j["connection"] = std::uint64_t{18446744073709551615u};
    j["destination"] = "203.0.113.2:443";
    j["sni"] = hostile;
    j["stream"] = std::int32_t{-7};
    j["secret"] = "KEY";
    j["host"] = hostile;
    j["location"] = "header";
    AuditRecord r("substitution");
    r.number("connection", std::uint64_t{18446744073709551615u}).string("destination", "203.0.113.2:443");
    r.string("sni", hostile).number("stream", std::int32_t{-7}).string("secret", "KEY").string("host", hostile);
    r.string("location", "header");
    EXPECT_EQ(r.object(), j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    // What the observer (admin metrics) gets back is the same document.
    EXPECT_EQ(Json::parse(r.object()), Json::parse(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
  }
}

// Both writers put the same line in the file: "time" first, then the members.
TEST(AuditRecord, TheLogWritesTheSameLineForBothKinds) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("airlock-audit-record-" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(path);
  std::vector<std::string> observed;  // each record's event and secret, as its observer saw them
  {
    AuditLog log(path.string());
    log.set_observer([&](const AuditFacts& f) { observed.push_back(std::string(f.event) + "/" + std::string(f.secret.value_or("-"))); });
    Json j;
    j["event"] = "substitution";
    j["connection"] = 3;
    j["sni"] = "a\"b\xC3";
    j["secret"] = "KEY";
    ASSERT_TRUE(log.write(j));
    AuditRecord r("substitution");
    r.number("connection", 3).string("sni", "a\"b\xC3").string("secret", "KEY");
    ASSERT_TRUE(log.write(r, {.event = "substitution", .secret = "KEY"}));
  }
  std::ifstream in(path);
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  std::filesystem::remove(path);
  const std::string tail = R"(","event":"substitution","connection":3,"sni":"a\"b)" "\xEF\xBF\xBD" R"(","secret":"KEY"})";
  ASSERT_EQ(first.rfind("{\"time\":\"", 0), 0u) << first;
  ASSERT_GT(first.size(), tail.size());
  EXPECT_EQ(first.substr(first.size() - tail.size()), tail);
  EXPECT_EQ(second.substr(second.size() - tail.size()), tail);
  EXPECT_EQ(first.size(), second.size());  // the same shape of timestamp
  ASSERT_EQ(observed.size(), 2u);
  EXPECT_EQ(observed[0], "substitution/KEY");
  EXPECT_EQ(observed[1], "substitution/KEY");
}

// The escaping reads 8 bytes at a time where it can: every byte that needs escaping or checking
// (control bytes, quote, backslash, DEL, every byte from 0x80, a UTF-8 sequence) at every offset
// of plain strings of several lengths, alone and next to another one.
TEST(AuditRecord, EachSpecialByteAtEveryOffsetIsEscapedAsTheJsonLibraryDoes) {
  std::vector<std::string> specials;
  for (int c = 0; c < 0x20; ++c) specials.emplace_back(1, static_cast<char>(c));
  for (int c = 0x7f; c < 0x100; ++c) specials.emplace_back(1, static_cast<char>(c));
  for (const char* s : {"\"", "\\", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x94\x91", "\xED\xA0\x80"}) specials.emplace_back(s);
  std::size_t checked = 0;
  for (std::size_t length : {1u, 7u, 8u, 9u, 16u, 23u, 40u}) {
    const std::string plain = std::string("abcdefghijklmnopqrstuvwxyz0123456789 ./:-~").substr(0, length);
    for (std::size_t at = 0; at <= plain.size(); ++at) {
      for (const std::string& special : specials) {
        std::string s = plain;
        s.insert(at, special);
        ASSERT_EQ(ours(s), reference(s)) << "length " << length << ", offset " << at << ", byte " << static_cast<int>(static_cast<unsigned char>(special[0]));
        s.insert(std::min(s.size(), at + special.size() + at % 9), special);
        ASSERT_EQ(ours(s), reference(s)) << "two, length " << length << ", offset " << at;
        checked += 2;
      }
    }
  }
  EXPECT_GT(checked, 30000u);
}

// Records reuse the thread's buffer: each one, after a longer one or while another is being
// built, has exactly its own members.
TEST(AuditRecord, ARecordAfterOrBesideAnotherHasOnlyItsOwnMembers) {
  {
    AuditRecord longer("violation");
    longer.string("sni", std::string(300, 'x')).string("reason", "a long reason that the next record must not show");
  }
  AuditRecord first("substitution");
  first.number("connection", 1).string("secret", "KEY");
  {
    AuditRecord beside("connection");
    beside.number("connection", 2);
    EXPECT_EQ(beside.object(), R"({"event":"connection","connection":2})");
  }
  EXPECT_EQ(first.object(), R"({"event":"substitution","connection":1,"secret":"KEY"})");
  AuditRecord moved = std::move(first);
  EXPECT_EQ(moved.object(), R"({"event":"substitution","connection":1,"secret":"KEY"})");
  AuditRecord next("substitution");
  EXPECT_EQ(next.object(), R"({"event":"substitution"})");
}

// A connection's members written once (AuditMembers) and taken by many records: each record is
// the same text as one that wrote those members itself, after another record, and with none.
TEST(AuditRecord, MembersWrittenOnceAreTheSameTextAsMembersWrittenInPlace) {
  std::size_t checked = 0;
  for (const std::string& hostile : hostile_strings()) {
    AuditMembers own;
    own.number("connection", std::uint64_t{18446744073709551615u}).string("destination", "[2001:db8::1]:443");
    own.string("sni", hostile);
    for (int round = 0; round < 3; ++round) {
      AuditRecord direct("substitution");
      direct.number("connection", std::uint64_t{18446744073709551615u}).string("destination", "[2001:db8::1]:443");
      direct.string("sni", hostile).string("secret", "KEY").string("host", hostile).string("location", "header");
      const std::string expected = direct.object();
      AuditRecord reused("substitution");
      reused.members(own).string("secret", "KEY").string("host", hostile).string("location", "header");
      ASSERT_EQ(reused.object(), expected) << testing::PrintToString(hostile);
      ++checked;
    }
  }
  EXPECT_GT(checked, 10u);
  AuditMembers none;
  AuditRecord alone("substitution");
  alone.members(none).string("secret", "KEY");
  EXPECT_EQ(alone.object(), R"({"event":"substitution","secret":"KEY"})");
  AuditMembers one;
  one.number("connection", 7);
  one.clear();
  one.string("sni", "a\"b");
  AuditRecord after("substitution");
  after.members(one);
  EXPECT_EQ(after.object(), R"({"event":"substitution","sni":"a\"b"})");
}

TEST(AuditRecord, TimestampsAreRfc3339UtcWithMilliseconds) {
  const std::regex shape(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");
  for (int i = 0; i < 50; ++i) {
    const std::string t = utc_timestamp();
    ASSERT_TRUE(std::regex_match(t, shape)) << t;
  }
}

}  // namespace
}  // namespace airlock::gateway
