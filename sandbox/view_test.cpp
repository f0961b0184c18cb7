#include "sandbox/view.hpp"

#include <airlock/errors.hpp>

#include <gtest/gtest.h>

namespace airlock::sandbox {
namespace {

std::optional<std::string> replace(std::string_view content, const std::vector<ValueReplacement>& values,
                                   std::vector<std::size_t>* found = nullptr) {
  return replace_values(content, values, found);
}

TEST(ReplaceValues, NoValueNoCopy) {
  EXPECT_EQ(replace("KEY=other\n", {{"sk-live-123", "$MSB_KEY"}}), std::nullopt);
  EXPECT_EQ(replace("", {{"sk-live-123", "$MSB_KEY"}}), std::nullopt);
  EXPECT_EQ(replace("anything", {{"", "$MSB_KEY"}}), std::nullopt);  // an empty value matches nothing
}

TEST(ReplaceValues, EveryOccurrenceOfEveryValue) {
  std::vector<std::size_t> found;
  const auto out = replace("A=sk-1\nB=tok-2 sk-1\nC=sk-1sk-1", {{"sk-1", "$MSB_A"}, {"tok-2", "$MSB_B"}}, &found);
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "A=$MSB_A\nB=$MSB_B $MSB_A\nC=$MSB_A$MSB_A");
  EXPECT_EQ(found, (std::vector<std::size_t>{0, 1}));
}

TEST(ReplaceValues, LongestValueWinsAtTheSameOffset) {
  const auto out = replace("x=abcdef;", {{"abc", "$MSB_SHORT"}, {"abcdef", "$MSB_LONG"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "x=$MSB_LONG;");
}

TEST(ReplaceValues, OverlappingOccurrencesLeaveNoValue) {
  const auto out = replace("aaaa", {{"aa", "P"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, "PP");
  const auto odd = replace("aaa", {{"aa", "P"}});
  ASSERT_TRUE(odd);
  EXPECT_EQ(*odd, "Pa");
}

TEST(ReplaceValues, AValueFormedAgainByThePlaceholderIsReplacedOrTheFileEmptied) {
  // The placeholder ends in "X"; the value is "X1": "X11" -> "$MSB_X" + "1" holds "X1" again.
  const auto out = replace("X11", {{"X1", "$MSB_X"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->find("X1"), std::string::npos);
  // A placeholder that holds its own value can never be made value-free: shown empty.
  const auto self = replace("key", {{"key", "a-key-b"}});
  ASSERT_TRUE(self);
  EXPECT_EQ(*self, "");
}

TEST(ReplaceValues, BinaryContent) {
  const std::string content("\0\xffsk-9\0", 7);
  const auto out = replace(content, {{"sk-9", "$P"}});
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, std::string("\0\xff$P\0", 5));
}

TEST(IdRange, Parse) {
  EXPECT_EQ(parse_id_range("1879048192-2147352575"), (IdRange{1879048192u, 2147352575u - 1879048192u + 1}));
  EXPECT_EQ(parse_id_range("200000-265535").count, 65536u);
  for (const char* bad : {"", "1-", "-5", "x-y", "200000-200001", "300000-200000", "0-65535",
                          "4294901760-4294967295", "1 - 70000"}) {
    EXPECT_THROW(parse_id_range(bad), ConfigError) << bad;
  }
}

TEST(HostIds, Passwd) {
  const std::string passwd =
      "root:x:0:0:root:/root:/bin/bash\n# comment\nbad line\nalice:x:1000:1001::/home/alice:/bin/sh\r\n"
      "weird:x:notanumber:5::/:/bin/false\n";
  EXPECT_EQ(ids_in_passwd(passwd, true), (std::vector<std::uint64_t>{0, 0, 1000, 1001, 5}));
  EXPECT_EQ(ids_in_passwd("staff:x:50:alice\n", false), (std::vector<std::uint64_t>{50}));
}

TEST(HostIds, Subid) {
  EXPECT_EQ(ranges_in_subid("alice:100000:65536\nbob:x:1\n\ncarol:200000:0\ndave:300000:10\n"),
            (std::vector<IdRange>{{100000, 65536}, {300000, 10}}));
}

TEST(HostIds, FreeSlotsAvoidUsersAndRanges) {
  const IdRange pool{1000000, 4 * kIdsPerSandbox};
  const auto all = free_slots(pool, {}, {});
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[1], (IdRange{1000000 + kIdsPerSandbox, kIdsPerSandbox}));
  // A user inside slot 0, a subordinate range over the end of slot 1 and start of slot 2.
  const auto some = free_slots(pool, {1000005}, {{1000000 + 2 * kIdsPerSandbox - 1, 2}});
  ASSERT_EQ(some.size(), 1u);
  EXPECT_EQ(some[0].first, 1000000 + 3 * kIdsPerSandbox);
  // A pool smaller than a slot has none; the default pool has 4094.
  EXPECT_TRUE(free_slots({1000000, 100}, {}, {}).empty());
  EXPECT_EQ(free_slots(kDefaultIdPool, {}, {}).size(), 4094u);
}

}  // namespace
}  // namespace airlock::sandbox
