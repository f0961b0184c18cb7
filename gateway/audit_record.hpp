#pragma once
// An audit record written member by member into one string, without a JSON document in between
// (issue 15): every substitution writes a record, i.e. one per request, and building it as an
// nlohmann object cost ~20 allocations and ~20k instructions. The text is exactly what
// `nlohmann::ordered_json::dump(-1, ' ', false, error_handler_t::replace)` makes of the same
// members in the same order (audit_record_test.cpp compares the two over hostile and random
// strings): control bytes escaped, invalid UTF-8 replaced by U+FFFD, everything else as is.
#include <charconv>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

namespace airlock::gateway {

// Appends `s` as a JSON string (quotes included) to `out`, escaped as above.
void append_json_string(std::string& out, std::string_view s);

// Members written member by member, as a record writes them: a record takes them whole
// (AuditRecord::members), so members that are the same for many records (a connection's own) are
// escaped and written once.
class AuditMembers {
 public:
  // A member name: a string literal of printable ASCII without a quote or a backslash, checked
  // when the program is compiled, so it is written as it is, without escaping.
  class Key {
   public:
    template <std::size_t N>
    consteval Key(const char (&text)[N]) : text_(text, N - 1) {  // NOLINT: implicit from a literal
      static_assert(N - 1 <= kMaxKey, "an audit member name longer than kMaxKey");
      for (char c : text_) {
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') throw "an audit member name that needs escaping";
      }
    }
    std::string_view text() const noexcept { return text_; }

   private:
    std::string_view text_;
  };
  static constexpr std::size_t kMaxKey = 32;

  AuditMembers& string(Key key, std::string_view value) {
    begin_member(key);
    append_json_string(text_, value);
    return *this;
  }
  template <std::integral T>
  AuditMembers& number(Key key, T value) {
    begin_member(key);
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, value);
    text_.append(buf, r.ptr);
    return *this;
  }
  // The members, comma-separated, without the braces: `"event":"substitution","connection":7`.
  std::string_view members() const noexcept { return text_; }
  void clear() noexcept { text_.clear(); }

 protected:
  // `,"key":` (no comma for the first member), as one append.
  void begin_member(Key key) {
    char buf[kMaxKey + 4];
    std::size_t n = 0;
    if (!text_.empty()) buf[n++] = ',';
    buf[n++] = '"';
    key.text().copy(buf + n, key.text().size());
    n += key.text().size();
    buf[n++] = '"';
    buf[n++] = ':';
    text_.append(buf, n);
  }
  std::string text_;
};

class AuditRecord : public AuditMembers {
 public:
  // A record whose first member is "event": `event`. Its text is written into a buffer the
  // thread reuses (one record after another: no allocation per record).
  explicit AuditRecord(std::string_view event);
  ~AuditRecord();
  AuditRecord(AuditRecord&&) noexcept = default;
  AuditRecord(const AuditRecord&) = delete;
  AuditRecord& operator=(const AuditRecord&) = delete;
  AuditRecord& operator=(AuditRecord&&) = delete;

  // Appends `m`'s members after this record's: the same text as writing each of them here.
  AuditRecord& members(const AuditMembers& m) {
    const std::string_view more = m.members();
    if (more.empty()) return *this;
    if (!text_.empty()) text_.push_back(',');
    text_.append(more);
    return *this;
  }
  using AuditMembers::members;
  // The whole JSON object: the members in braces.
  std::string object() const {
    std::string o;
    o.reserve(text_.size() + 2);
    o.push_back('{');
    o.append(text_);
    o.push_back('}');
    return o;
  }
};

}  // namespace airlock::gateway
