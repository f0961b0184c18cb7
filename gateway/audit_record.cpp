#include "gateway/audit_record.hpp"

#include <cstddef>

namespace airlock::gateway {

namespace {

// The length of the well-formed UTF-8 sequence (Unicode 15, table 3-7) that starts at s[i]
// with a byte >= 0x80, or 0 when it is not one; then `matched` is how many of its bytes were
// acceptable before the first that is not (at least 1: a bad lead byte is consumed on its own).
std::size_t utf8_sequence(std::string_view s, std::size_t i, std::size_t& matched) {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t length = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) lo = 0xA0;       // no overlong forms
    else if (lead == 0xED) hi = 0x9F;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) lo = 0x90;       // no overlong forms
    else if (lead == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
  } else {
    matched = 1;
    return 0;
  }
  matched = 1;
  for (std::size_t k = 1; k < length; ++k) {
    if (i + k >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < lo || b > hi) return 0;
    lo = 0x80;
    hi = 0xBF;
    ++matched;
  }
  return length;
}

bool plain_ascii(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t run = i;
    while (run < s.size() && plain_ascii(static_cast<unsigned char>(s[run]))) ++run;
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out.append("\\\""); break;
        case '\\': out.append("\\\\"); break;
        case '\b': out.append("\\b"); break;
        case '\t': out.append("\\t"); break;
        case '\n': out.append("\\n"); break;
        case '\f': out.append("\\f"); break;
        case '\r': out.append("\\r"); break;
        default: {
          const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
          out.append(u, sizeof u);
        }
      }
      ++i;
      continue;
    }
    std::size_t matched = 0;
    const std::size_t length = utf8_sequence(s, i, matched);
    if (length > 0) {
      out.append(s.data() + i, length);
      i += length;
    } else {
      // What was read of the bad sequence becomes one U+FFFD; the byte that broke it (if any)
      // is read again as the start of the next character.
      out.append("\xEF\xBF\xBD");
      i += matched;
    }
  }
  out.push_back('"');
}

}  // namespace airlock::gateway
