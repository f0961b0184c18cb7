#include "cli/command_line.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::cli {
namespace {

struct Argv {
  explicit Argv(std::vector<std::string> args) : storage(std::move(args)) {
    for (std::string& a : storage) pointers.push_back(a.data());
  }
  int argc() const { return static_cast<int>(pointers.size()); }
  std::vector<std::string> storage;
  std::vector<char*> pointers;
};

std::vector<std::string> strings(const std::vector<char*>& v) { return {v.begin(), v.end()}; }

TEST(SplitCommandLine, EverythingAfterTheFirstSeparatorIsTheCommandVerbatim) {
  const std::string odd = "\xff\xfe-not-utf8";
  Argv argv({"airlock", "run", "-t", "--env", "A=B", "--", "python3", "[1,2]", "", "--", "-t",
             "{a,b}", "two words", odd, "--x=y", "a=b"});
  const SplitCommandLine split = split_command_line(argv.argc(), argv.pointers.data());
  EXPECT_EQ(strings(split.options),
            (std::vector<std::string>{"airlock", "run", "-t", "--env", "A=B"}));
  ASSERT_TRUE(split.command.has_value());
  EXPECT_EQ(*split.command, (std::vector<std::string>{"python3", "[1,2]", "", "--", "-t", "{a,b}",
                                                      "two words", odd, "--x=y", "a=b"}));
}

TEST(SplitCommandLine, ASeparatorWithNothingAfterItGivesAnEmptyCommand) {
  Argv argv({"airlock", "run", "--"});
  const SplitCommandLine split = split_command_line(argv.argc(), argv.pointers.data());
  EXPECT_EQ(split.options.size(), 2u);
  ASSERT_TRUE(split.command.has_value());
  EXPECT_TRUE(split.command->empty());
}

TEST(SplitCommandLine, WithoutASeparatorOrForAnotherCommandTheParserGetsEverything) {
  Argv run({"airlock", "run", "true"});
  SplitCommandLine split = split_command_line(run.argc(), run.pointers.data());
  EXPECT_EQ(strings(split.options), run.storage);
  EXPECT_FALSE(split.command.has_value());

  Argv gateway({"airlock", "gateway", "--", "x"});
  split = split_command_line(gateway.argc(), gateway.pointers.data());
  EXPECT_EQ(strings(split.options), gateway.storage);
  EXPECT_FALSE(split.command.has_value());
}

}  // namespace
}  // namespace airlock::cli
