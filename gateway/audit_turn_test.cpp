// Per-request audit records batched per event-loop turn: one write for the records of one turn,
// and every waiter told whether its records are in the log (fail closed: false when the batch
// could not be written whole).
#include "gateway/audit_turn.hpp"

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;

fs::path temp_log(const char* name) {
  fs::path p = fs::temp_directory_path() / (std::string("airlock-audit-turn-") + name + "-" + std::to_string(::getpid()) + ".jsonl");
  fs::remove(p);
  return p;
}

std::vector<nlohmann::json> read_records(const fs::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));  // throws on a torn line
  return out;
}

AuditRecord record(int n) {
  AuditRecord r("substitution");
  r.number("n", n).string("padding", std::string(200, 'x'));
  return r;
}

// `count` requests become ready in the same turn; each adds its record and waits for the write.
std::vector<int> run_turn(asio::io_context& io, AuditLog& log, int first, int count) {
  std::vector<int> results(static_cast<std::size_t>(count), -1);
  for (int i = 0; i < count; ++i) {
    asio::co_spawn(io, [&, i]() -> asio::awaitable<void> {
      auto turn = add_to_turn(log, record(first + i), co_await asio::this_coro::executor);
      results[static_cast<std::size_t>(i)] = turn ? co_await turn->written() : 1;
    }, asio::detached);
  }
  io.restart();
  io.run();
  return results;
}

TEST(AuditTurn, TheRecordsOfOneTurnGoOutInOneWriteAndEveryWaiterLearnsTheyAreWritten) {
  const fs::path path = temp_log("one");
  {
    asio::io_context io(1);
    AuditLog log(path);
    EXPECT_EQ(run_turn(io, log, 0, 8), std::vector<int>(8, 1));
    EXPECT_EQ(log.write_calls(), 1u);
    EXPECT_EQ(run_turn(io, log, 8, 3), std::vector<int>(3, 1));  // a later turn: its own write
    EXPECT_EQ(log.write_calls(), 2u);
    EXPECT_EQ(log.lost(), 0u);
  }
  const auto records = read_records(path);
  ASSERT_EQ(records.size(), 11u);
  for (int i = 0; i < 11; ++i) {
    EXPECT_EQ(records[static_cast<std::size_t>(i)]["n"], i);  // in the order they were added
    EXPECT_TRUE(records[static_cast<std::size_t>(i)].contains("time"));
  }
  fs::remove(path);
}

TEST(AuditTurn, ABatchThatCannotBeWrittenWholeFailsEveryRequestOfTheTurnAndLeavesNoTornRecord) {
  const fs::path path = temp_log("full");
  {
    asio::io_context io(1);
    AuditLog log(path);
    EXPECT_EQ(run_turn(io, log, 0, 1), std::vector<int>(1, 1));
    const auto size = fs::file_size(path);
    rlimit saved{};
    ::getrlimit(RLIMIT_FSIZE, &saved);
    auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
    rlimit limited = saved;
    limited.rlim_cur = size + 3 * 250;  // room for three of the eight records only
    ::setrlimit(RLIMIT_FSIZE, &limited);
    const std::vector<int> failed = run_turn(io, log, 1, 8);
    const auto size_after = fs::file_size(path);
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    EXPECT_EQ(failed, std::vector<int>(8, 0));  // none of them may leave: their records are not all there
    EXPECT_EQ(log.lost(), 8u);
    EXPECT_EQ(size_after, size);  // the part that was written was cut off again
    EXPECT_EQ(run_turn(io, log, 9, 2), std::vector<int>(2, 1));
  }
  const auto records = read_records(path);
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0]["n"], 0);
  EXPECT_EQ(records[1]["event"], "audit_lost");
  EXPECT_EQ(records[1]["lost"], 8);
  EXPECT_EQ(records[2]["n"], 9);
  EXPECT_EQ(records[3]["n"], 10);
  fs::remove(path);
}

TEST(AuditTurn, DevFullFailsEveryRequestAndADisabledLogHasNothingToWaitFor) {
  asio::io_context io(1);
  AuditLog full("/dev/full");
  EXPECT_EQ(run_turn(io, full, 0, 4), std::vector<int>(4, 0));
  EXPECT_EQ(full.lost(), 4u);
  AuditLog disabled("");
  int seen = 0;
  disabled.set_observer([&](const nlohmann::ordered_json& r) { seen += r["event"] == "substitution"; });
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    EXPECT_EQ(add_to_turn(disabled, record(1), co_await asio::this_coro::executor), nullptr);
    co_return;
  }, asio::detached);
  io.restart();
  io.run();
  EXPECT_EQ(seen, 1);  // the observer (metrics) still sees the record
}

}  // namespace
}  // namespace airlock::gateway
