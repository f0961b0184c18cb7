#pragma once
// The gateway's two outputs for people: the audit log (JSON lines, one record per connection,
// substitution and violation; never a value) and human-readable lines on stderr with a level.
#include "gateway/audit_record.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::gateway {

enum class LogLevel : unsigned char { kError, kWarn, kInfo, kDebug };
// "error", "warn", "info", "debug" ("trace" is debug). nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view text);
std::string_view to_string(LogLevel level) noexcept;

class Logger {
 public:
  explicit Logger(LogLevel level = LogLevel::kInfo, std::FILE* out = stderr) : level_(level), out_(out) {}
  bool enabled(LogLevel level) const noexcept { return level <= level_; }
  // One line: "airlock gateway: <level>: <message>". Control bytes in `message` are escaped.
  // Below error level, at most kMaxLinesPerSecond lines a second: a guest that repeats what gets
  // logged (a denied or blocked connection in a loop) can neither flood the host's terminal nor
  // stall the gateway on a slow stderr. The next line that is shown says how many were not (the
  // audit log keeps every record).
  void log(LogLevel level, std::string_view message);
  static constexpr unsigned kMaxLinesPerSecond = 20;

 private:
  LogLevel level_;
  std::FILE* out_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point window_start_{};
  unsigned window_lines_ = 0;
  std::uint64_t suppressed_ = 0;
};

// What an observer of the audit log (the admin listener's metrics) reads of a record: its event
// and the members it counts, without a JSON document. Views, valid during the call.
struct AuditFacts {
  std::string_view event;
  // String members (absent when the record has none, or not as a string).
  std::optional<std::string_view> decision{}, action{}, reason{}, secret{};
  // Unsigned members (0 when absent).
  std::uint64_t bytes_up = 0, bytes_down = 0, duration_ms = 0;
  // The facts of a JSON record (views into it).
  static AuditFacts of(const nlohmann::ordered_json& record);
};

class AuditLog {
 public:
  // Appends to `path` (created with mode 0600). An empty path disables the log.
  // Throws ConfigError when the file cannot be opened.
  explicit AuditLog(const std::string& path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  bool enabled() const noexcept { return fd_ >= 0; }
  // Also hands every record's facts to `observer` (the admin listener's metrics), file or no
  // file. Set before the gateway starts; called on the writing thread, so it must be quick and
  // thread-safe.
  using Observer = std::function<void(const AuditFacts& facts)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }
  // Writes `record` (a JSON object without a "time" member) with a "time" field (RFC 3339, UTC,
  // milliseconds) first, as one line. False when it could not be written whole (disk full, I/O
  // error): what a failed write left is cut off again, so a torn record never runs into the next
  // one, and the record is counted as lost. The first record written after a failure is
  // preceded by an "audit_lost" record with the count. A disabled log returns true.
  bool write(const nlohmann::ordered_json& record);
  // The same for a record written without a JSON document (the per-request ones): same line,
  // same failure handling. The observer gets `facts`, which say what the record says (its event,
  // and the members it has of those AuditFacts names): the record is never parsed back.
  bool write(const AuditRecord& record, const AuditFacts& facts);
  std::uint64_t lost() const noexcept { return lost_; }
  bool failing() const;
  // Where the log says that it starts failing and that it writes again (stderr lines).
  void report_to(Logger* logger) { logger_ = logger; }

 private:
  friend class AuditBatch;
  bool write_line(std::string_view members);  // "time" and the members, as one line
  // `lines` (`records` whole records) in one write, after an audit_lost record if one is owed.
  bool write_lines(std::string_view lines, std::uint64_t records, std::string_view time);
  bool append(std::string_view text);  // under write_mutex()

  int fd_ = -1;
  Observer observer_;
  Logger* logger_ = nullptr;
  std::uint64_t lost_ = 0;          // under write_mutex()
  std::uint64_t lost_reported_ = 0; // lost_ when the last audit_lost record was written
  bool failing_ = false;
};

// Records this thread writes to `log` while a batch is open leave together, in one write, at
// commit() (or when the batch ends): the HTTP/2 pump's substitutions of a batch of streams, before
// the bytes that carry them, instead of a write per stream. Each write() inside reports success;
// commit() says whether they were written (false: all counted as lost). A batch opened while
// another is open on the thread, or on a disabled log, holds nothing.
class AuditBatch {
 public:
  explicit AuditBatch(AuditLog& log);
  ~AuditBatch() { commit(); }
  AuditBatch(const AuditBatch&) = delete;
  AuditBatch& operator=(const AuditBatch&) = delete;
  bool commit();

 private:
  AuditLog* log_ = nullptr;  // null: holds nothing (or committed)
};

std::string utc_timestamp();
// The same into `buf`, without an allocation; the view points into `buf`.
inline constexpr std::size_t kTimestampSize = 96;
std::string_view format_utc_timestamp(char (&buf)[kTimestampSize]);

}  // namespace airlock::gateway
