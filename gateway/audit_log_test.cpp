// The audit log when its file cannot take a record: RLIMIT_FSIZE stands in for a full disk (a
// write past it stops short, the next one fails with EFBIG), which is exact and needs no mount.
#include "gateway/audit_log.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <sys/resource.h>
#include <unistd.h>

namespace airlock::gateway {
namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

nlohmann::ordered_json record(int n) {
  nlohmann::ordered_json r;
  r["event"] = "substitution";
  r["n"] = n;
  r["padding"] = std::string(200, 'x');
  return r;
}

struct FileSizeLimit {
  rlimit saved{};
  void (*old_handler)(int) = nullptr;
  FileSizeLimit() {
    ::getrlimit(RLIMIT_FSIZE, &saved);
    old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
  }
  void set(rlim_t bytes) {
    rlimit l = saved;
    l.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &l);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
  }
};

TEST(AuditLog, AFailedWriteLeavesNoTornRecordIsCountedAndRecovers) {
  const fs::path path = fs::temp_directory_path() / ("airlock-audit-full-" + std::to_string(::getpid()) + ".jsonl");
  fs::remove(path);
  std::FILE* err = std::tmpfile();
  Logger logger(LogLevel::kInfo, err);
  {
    AuditLog log(path);
    log.report_to(&logger);
    ASSERT_TRUE(log.write(record(1)));
    const auto size = fs::file_size(path);
    FileSizeLimit limit;
    limit.set(size + 100);  // room for part of the next record only
    EXPECT_FALSE(log.write(record(2)));
    EXPECT_FALSE(log.write(record(3)));
    EXPECT_TRUE(log.failing());
    EXPECT_EQ(log.lost(), 2u);
    EXPECT_EQ(fs::file_size(path), size);  // what the short write left was cut off again
    limit.set(RLIM_INFINITY);
    EXPECT_TRUE(log.write(record(4)));
    EXPECT_FALSE(log.failing());
  }
  std::istringstream lines(read_all(path));
  std::string line;
  std::vector<nlohmann::json> records;
  while (std::getline(lines, line)) records.push_back(nlohmann::json::parse(line));  // every line whole
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0]["n"], 1);
  EXPECT_EQ(records[1]["event"], "audit_lost");
  EXPECT_EQ(records[1]["lost"], 2);
  EXPECT_EQ(records[2]["n"], 4);
  std::rewind(err);
  std::string said;
  char buf[512];
  while (std::fgets(buf, sizeof buf, err)) said += buf;
  std::fclose(err);
  EXPECT_NE(said.find("error: cannot write the audit log: File too large"), std::string::npos) << said;
  EXPECT_NE(said.find("the audit log is written again; 2 records were lost"), std::string::npos) << said;
  fs::remove(path);
}

// A batch's records reach the file together at commit(), in order, each a whole line; records of
// a batch that cannot be written are all counted lost, and none is left torn.
TEST(AuditBatch, RecordsLeaveTogetherAtCommitOrAreAllCountedLost) {
  const fs::path path = fs::temp_directory_path() / ("airlock-audit-batch-" + std::to_string(::getpid()) + ".jsonl");
  fs::remove(path);
  {
    AuditLog log(path);
    {
      AuditBatch batch(log);
      AuditBatch inner(log);  // a second batch on the thread holds nothing of its own
      for (int n = 1; n <= 3; ++n) EXPECT_TRUE(log.write(record(n)));
      EXPECT_TRUE(inner.commit());
      EXPECT_EQ(fs::file_size(path), 0u) << "a record left before the batch's commit";
      EXPECT_TRUE(batch.commit());
    }
    const auto size = fs::file_size(path);
    EXPECT_GT(size, 0u);
    {
      FileSizeLimit limit;
      limit.set(size + 300);  // room for part of the next batch only
      AuditBatch batch(log);
      for (int n = 4; n <= 6; ++n) EXPECT_TRUE(log.write(record(n)));
      EXPECT_FALSE(batch.commit());
      EXPECT_EQ(log.lost(), 3u);
      EXPECT_EQ(fs::file_size(path), size);  // what the short write left was cut off again
    }
    {
      AuditBatch batch(log);
      EXPECT_TRUE(log.write(record(7)));
    }  // committed when it ends
  }
  std::istringstream lines(read_all(path));
  std::string line;
  std::vector<nlohmann::json> records;
  while (std::getline(lines, line)) records.push_back(nlohmann::json::parse(line));  // every line whole
  ASSERT_EQ(records.size(), 5u);
  for (int n = 1; n <= 3; ++n) EXPECT_EQ(records[n - 1]["n"], n);
  EXPECT_EQ(records[3]["event"], "audit_lost");
  EXPECT_EQ(records[3]["lost"], 3);
  EXPECT_EQ(records[4]["n"], 7);
  fs::remove(path);
}

TEST(AuditLog, DevFullFailsEveryWrite) {
  AuditLog log("/dev/full");
  EXPECT_FALSE(log.write(record(1)));
  EXPECT_FALSE(log.write(record(2)));
  EXPECT_EQ(log.lost(), 2u);
  AuditLog disabled("");
  EXPECT_TRUE(disabled.write(record(1)));
}

}  // namespace
}  // namespace airlock::gateway
