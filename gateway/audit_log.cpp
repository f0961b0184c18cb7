#include "gateway/audit_log.hpp"

#include <airlock/errors.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

namespace airlock::gateway {

std::optional<LogLevel> parse_log_level(std::string_view text) {
  if (text == "error") return LogLevel::kError;
  if (text == "warn" || text == "warning") return LogLevel::kWarn;
  if (text == "info") return LogLevel::kInfo;
  if (text == "debug" || text == "trace") return LogLevel::kDebug;
  return std::nullopt;
}

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kError: return "error";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kInfo: return "info";
    case LogLevel::kDebug: return "debug";
  }
  return "info";
}

void Logger::log(LogLevel level, std::string_view message) {
  if (!enabled(level)) return;
  std::string line = "airlock gateway: ";
  line += to_string(level);
  line += ": ";
  for (char c : message) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      line += buf;
    } else {
      line.push_back(c);
    }
  }
  line.push_back('\n');
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= std::chrono::seconds(1)) {
    window_start_ = now;
    window_lines_ = 0;
  }
  if (level != LogLevel::kError && window_lines_ >= kMaxLinesPerSecond) {
    ++suppressed_;
    return;
  }
  ++window_lines_;
  if (suppressed_ > 0) {
    std::fprintf(out_, "airlock gateway: warn: %llu more lines not shown (over %u a second; the audit log has every record)\n",
                 static_cast<unsigned long long>(suppressed_), kMaxLinesPerSecond);
    suppressed_ = 0;
  }
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

std::string utc_timestamp() {
  char buf[kTimestampSize];
  return std::string(format_utc_timestamp(buf));
}

std::string_view format_utc_timestamp(char (&buf)[kTimestampSize]) {
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  // The date and time change once a second; formatting them for every record showed in profiles.
  thread_local std::time_t formatted_second = -1;
  thread_local char seconds[64];
  thread_local std::size_t seconds_length = 0;
  if (t != formatted_second) {
    std::tm tm{};
    gmtime_r(&t, &tm);
    const int n = std::snprintf(seconds, sizeof seconds, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    seconds_length = n < 0 ? 0 : std::min(static_cast<std::size_t>(n), sizeof seconds - 1);
    formatted_second = t;
  }
  // "<seconds>.mmmZ" (no printf per record: it showed in the keep-alive profile).
  static_assert(sizeof seconds + 5 <= kTimestampSize);
  const auto millis = static_cast<unsigned>(ms < 0 ? 0 : ms);
  std::memcpy(buf, seconds, seconds_length);
  char* p = buf + seconds_length;
  *p++ = '.';
  *p++ = static_cast<char>('0' + millis / 100);
  *p++ = static_cast<char>('0' + millis / 10 % 10);
  *p++ = static_cast<char>('0' + millis % 10);
  *p++ = 'Z';
  return std::string_view(buf, static_cast<std::size_t>(p - buf));
}

AuditLog::AuditLog(const std::string& path) {
  if (path.empty()) return;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) throw ConfigError("cannot open the audit log " + quote_for_message(path) + ": " + std::strerror(errno));
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {
// Every audit log of the process writes under one lock (the sandbox's DNS records go to the same
// file through a second AuditLog): a failed write can then be cut off without cutting another's.
std::mutex& write_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

bool AuditLog::failing() const {
  std::lock_guard lock(write_mutex());
  return failing_;
}

bool AuditLog::append(std::string_view text) {
  std::size_t done = 0;
  errno = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  if (done == text.size()) return true;
  const int error = errno != 0 ? errno : EIO;
  // Where the record started: O_APPEND leaves the offset after the bytes this call wrote (no
  // lseek before every record, which cost a syscall per request; and no window between finding
  // the end and writing there).
  const off_t after = done > 0 ? ::lseek(fd_, 0, SEEK_CUR) : -1;
  const off_t before = after >= static_cast<off_t>(done) ? after - static_cast<off_t>(done) : -1;
  if (done > 0 && before >= 0 && ::ftruncate(fd_, before) != 0) {
    // Cannot cut it off: end the fragment, so the next record starts on a line of its own.
    ssize_t ignored = ::write(fd_, "\n", 1);
    (void)ignored;
  }
  errno = error;
  return false;
}

AuditFacts AuditFacts::of(const nlohmann::ordered_json& record) {
  AuditFacts f;
  if (!record.is_object()) return f;
  const auto text = [&](const char* key) -> std::optional<std::string_view> {
    const auto it = record.find(key);
    if (it == record.end() || !it->is_string()) return std::nullopt;
    return std::string_view(it->get_ref<const std::string&>());
  };
  const auto number = [&](const char* key) -> std::uint64_t {
    const auto it = record.find(key);
    return it != record.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
  };
  f.event = text("event").value_or(std::string_view());
  f.decision = text("decision");
  f.action = text("action");
  f.reason = text("reason");
  f.secret = text("secret");
  f.bytes_up = number("bytes_up");
  f.bytes_down = number("bytes_down");
  f.duration_ms = number("duration_ms");
  return f;
}

bool AuditLog::write(const nlohmann::ordered_json& record) {
  if (observer_) observer_(AuditFacts::of(record));
  if (fd_ < 0) return true;
  // Replacement instead of throwing on invalid UTF-8: a hostile SNI or authority cannot break the log.
  // The record is serialized once and "time" spliced in front (no copy of the record as JSON).
  const std::string text = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::string_view members = text.size() > 2 ? std::string_view(text).substr(1, text.size() - 2) : std::string_view();
  return write_line(members);
}

bool AuditLog::write(const AuditRecord& record, const AuditFacts& facts) {
  if (observer_) observer_(facts);
  if (fd_ < 0) return true;
  return write_line(record.members());
}

namespace {
// The records of this thread's open batch (AuditBatch), if any.
struct Held {
  AuditLog* log = nullptr;
  std::string lines;
  std::uint64_t records = 0;
};
thread_local Held held;
}  // namespace

AuditBatch::AuditBatch(AuditLog& log) {
  if (held.log != nullptr || !log.enabled()) return;
  held.log = &log;
  log_ = &log;
}

bool AuditBatch::commit() {
  if (log_ == nullptr) return true;
  AuditLog& log = *std::exchange(log_, nullptr);
  held.log = nullptr;
  if (held.records == 0) return true;
  char time_buf[kTimestampSize];
  const bool written = log.write_lines(held.lines, std::exchange(held.records, 0), format_utc_timestamp(time_buf));
  held.lines.clear();
  return written;
}

bool AuditLog::write_line(std::string_view members) {
  char time_buf[kTimestampSize];
  const std::string_view time = format_utc_timestamp(time_buf);
  thread_local std::string line;  // reused: no allocation per record
  const bool holding = held.log == this;  // an open batch: the line joins its others
  std::string& text = holding ? held.lines : line;
  if (!holding) text.clear();
  text.append("{\"time\":\"").append(time).push_back('"');
  if (!members.empty()) text.append(",").append(members);
  text.append("}\n");
  if (!holding) return write_lines(text, 1, time);
  ++held.records;
  return true;
}

bool AuditLog::write_lines(std::string_view lines, std::uint64_t records, std::string_view time) {
  std::lock_guard lock(write_mutex());
  if (lost_ > lost_reported_) {
    const std::string note = "{\"time\":\"" + std::string(time) + "\",\"event\":\"audit_lost\",\"lost\":" +
                             std::to_string(lost_) + ",\"reason\":\"records that could not be written\"}\n";
    if (append(note)) lost_reported_ = lost_;
  }
  const bool written = lost_ == lost_reported_ && append(lines);
  if (written && failing_) {
    failing_ = false;
    if (logger_) logger_->log(LogLevel::kError, "the audit log is written again; " + std::to_string(lost_) +
                                                   " records were lost in all (an audit_lost record says so)");
  }
  if (!written) {
    const int error = errno;
    lost_ += records;
    if (!failing_) {
      failing_ = true;
      if (logger_) logger_->log(LogLevel::kError, std::string("cannot write the audit log: ") + std::strerror(error) +
                                                      "; records are lost (counted) until it can be written again");
    }
  }
  return written;
}

}  // namespace airlock::gateway
