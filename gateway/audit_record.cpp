#include "gateway/audit_record.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

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

// Bytes copied as they are: printable ASCII but the quote and the backslash.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

bool plain_ascii(unsigned char c) { return kPlain[c]; }

// Whether all 8 bytes of `w` are plain (as kPlain): none below 0x20, none from 0x80, no quote
// and no backslash. Exact as a test of the whole word (the bit tricks may flag the wrong byte of
// a word that has one, never a word that has none).
bool plain_word(std::uint64_t w) {
  constexpr std::uint64_t kOnes = 0x0101010101010101u, kHigh = 0x8080808080808080u;
  const auto has_zero = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  const std::uint64_t below_space = (w - 0x20 * kOnes) & ~w & kHigh;
  return ((w & kHigh) | below_space | has_zero(w ^ ('"' * kOnes)) | has_zero(w ^ ('\\' * kOnes))) == 0;
}

// The first byte of s from `i` on that is not plain, else s.size().
std::size_t plain_run_end(std::string_view s, std::size_t i) {
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, s.data() + i, sizeof w);
    if (!plain_word(w)) break;
  }
  while (i < s.size() && plain_ascii(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// The buffer the thread's next record writes into (AuditRecord's constructor takes it, its
// destructor gives it back): records never hold a value, so nothing needs wiping.
thread_local std::string spare_text;
constexpr std::size_t kRecordReserve = 256, kMaxSpare = 4096;

}  // namespace

AuditRecord::AuditRecord(std::string_view event) {
  text_.swap(spare_text);
  text_.clear();
  if (text_.capacity() < kRecordReserve) text_.reserve(kRecordReserve);
  string("event", event);
}

AuditRecord::~AuditRecord() {
  // A string without a buffer of its own has its short-string capacity (moved-from, or the spare
  // already taken back by another record).
  const std::size_t none = std::string().capacity();
  if (text_.capacity() <= none || text_.capacity() > kMaxSpare || spare_text.capacity() > none) return;
  text_.clear();
  spare_text.swap(text_);
}

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::size_t i = plain_run_end(s, 0);
  if (i == s.size()) {  // the common case: nothing to escape, one append
    const std::size_t at = out.size();
    out.resize(at + s.size() + 2);
    char* p = out.data() + at;
    p[0] = '"';
    s.copy(p + 1, s.size());
    p[s.size() + 1] = '"';
    return;
  }
  out.push_back('"');
  out.append(s.data(), i);
  while (i < s.size()) {
    const std::size_t run = plain_run_end(s, i);
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
