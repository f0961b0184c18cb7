#pragma once
// An audit record written member by member into one string, without a JSON document in between
// (issue 15): every substitution writes a record, i.e. one per request, and building it as an
// nlohmann object cost ~20 allocations and ~20k instructions. The text is exactly what
// `nlohmann::ordered_json::dump(-1, ' ', false, error_handler_t::replace)` makes of the same
// members in the same order (audit_record_test.cpp compares the two over hostile and random
// strings): control bytes escaped, invalid UTF-8 replaced by U+FFFD, everything else as is.
#include <charconv>
#include <concepts>
#include <string>
#include <string_view>

namespace airlock::gateway {

// Appends `s` as a JSON string (quotes included) to `out`, escaped as above.
void append_json_string(std::string& out, std::string_view s);

class AuditRecord {
 public:
  // A record whose first member is "event": `event`.
  explicit AuditRecord(std::string_view event) {
    text_.reserve(256);
    string("event", event);
  }
  AuditRecord& string(std::string_view key, std::string_view value) {
    begin_member(key);
    append_json_string(text_, value);
    return *this;
  }
  template <std::integral T>
  AuditRecord& number(std::string_view key, T value) {
    begin_member(key);
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, value);
    text_.append(buf, r.ptr);
    return *this;
  }
  // The members, comma-separated, without the braces: `"event":"substitution","connection":7`.
  std::string_view members() const noexcept { return text_; }
  // The whole JSON object: the members in braces.
  std::string object() const {
    std::string o;
    o.reserve(text_.size() + 2);
    o.push_back('{');
    o.append(text_);
    o.push_back('}');
    return o;
  }

 private:
  void begin_member(std::string_view key) {
    if (!text_.empty()) text_.push_back(',');
    append_json_string(text_, key);
    text_.push_back(':');
  }
  std::string text_;
};

}  // namespace airlock::gateway
