// Response framing as a line-oriented state machine: status line, field lines, then the body
// by RFC 9112 §6.3 (no body for HEAD, 1xx, 204, 304; chunked when Transfer-Encoding ends with
// chunked; Content-Length; otherwise until the connection closes). A line ends at LF, after an
// optional CR (§2.2 lets a recipient accept a bare LF); a CR anywhere else is an error.
#include "http/response_reader.hpp"

#include <openssl/crypto.h>

#include <emmintrin.h>

#include <algorithm>
#include <array>
#include <limits>

namespace airlock::http {
namespace {

constexpr std::uint64_t kMaxLength = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Byte classes by table lookup (a field line is checked byte by byte on every response).
enum : std::uint8_t { kTchar = 1, kValueChar = 2 };
constexpr std::array<std::uint8_t, 256> make_byte_classes() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0x20; c <= 0xff; ++c) t[c] = c != 0x7f ? kValueChar : 0;
  t['\t'] = kValueChar;
  for (int c = '0'; c <= '9'; ++c) t[c] |= kTchar;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kTchar;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kTchar;
  for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] |= kTchar;
  return t;
}
constexpr std::array<std::uint8_t, 256> kByteClass = make_byte_classes();

bool is_tchar(unsigned char c) { return (kByteClass[c] & kTchar) != 0; }
bool is_value_char(unsigned char c) { return (kByteClass[c] & kValueChar) != 0; }

// Whether every byte of s is a value byte (is_value_char: HTAB, 0x20-0x7E, 0x80-0xFF), 16 at a
// time; the callers look byte by byte only for the error of a line that has another.
bool all_value_chars(std::string_view s) {
  const auto* d = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  const __m128i below_space = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
  for (; i + 16 <= s.size(); i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
    const __m128i control = _mm_andnot_si128(_mm_cmpeq_epi8(a, tab), _mm_cmpeq_epi8(_mm_min_epu8(a, below_space), a));
    if (_mm_movemask_epi8(_mm_or_si128(control, _mm_cmpeq_epi8(a, del))) != 0) return false;
  }
  for (; i < s.size(); ++i) {
    if (!is_value_char(d[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Each coding of a comma list, as sent (parameters such as q= are not the coding; empty items
// are skipped).
template <typename F>
void for_each_coding(std::string_view v, F&& f) {
  while (true) {
    const std::size_t comma = v.find(',');
    std::string_view item = trim(v.substr(0, comma));
    item = trim(item.substr(0, item.find(';')));
    if (!item.empty()) f(item);
    if (comma == std::string_view::npos) return;
    v.remove_prefix(comma + 1);
  }
}

// 1*DIGIT, or a list of identical values; false otherwise.
bool parse_length(std::string_view v, std::uint64_t& out) {
  bool have = false;
  while (true) {
    const std::size_t comma = v.find(',');
    const std::string_view item = trim(v.substr(0, comma));
    if (item.empty()) return false;
    std::uint64_t value = 0;
    for (const char c : item) {
      if (c < '0' || c > '9') return false;
      const auto d = static_cast<std::uint64_t>(c - '0');
      if (value > (kMaxLength - d) / 10) return false;
      value = value * 10 + d;
    }
    if (have && value != out) return false;
    have = true;
    out = value;
    if (comma == std::string_view::npos) return true;
    v.remove_prefix(comma + 1);
  }
}

void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace

// The previous head's bytes are wiped; the field buffer (and the fields vectors) keep their
// capacity for the next head while it is small, so a keep-alive connection reads a response
// head without allocating.
void ResponseReader::reset_head() {
  wipe(field_bytes_);
  if (field_bytes_.capacity() > kMaxKeptFieldBytes) std::string().swap(field_bytes_);
  field_spans_.clear();
  wipe(head_.status_line);
  // Every other member back to its default; the two buffers kept.
  ResponseHead fresh;
  fresh.fields.swap(head_.fields);
  fresh.fields.clear();
  fresh.status_line.swap(head_.status_line);
  head_ = std::move(fresh);
}

ResponseReader::~ResponseReader() {
  wipe(line_);
  wipe(trailers_);
  reset_head();
}

std::string_view to_string(ResponseError error) noexcept {
  switch (error) {
    case ResponseError::kNone: return "none";
    case ResponseError::kHeadTooLarge: return "response_head_too_large";
    case ResponseError::kBadStatusLine: return "bad_status_line";
    case ResponseError::kBadHeaderField: return "bad_response_header_field";
    case ResponseError::kBareCr: return "bare_cr";
    case ResponseError::kAmbiguousFraming: return "content_length_with_transfer_encoding";
    case ResponseError::kBadContentLength: return "bad_content_length";
    case ResponseError::kBadChunk: return "bad_chunk";
    case ResponseError::kTrailersTooLarge: return "trailers_too_large";
    case ResponseError::kUnrequestedResponse: return "response_without_request";
    case ResponseError::kUnrequestedSwitch: return "switching_protocols_without_upgrade_offer";
  }
  return "unknown";
}

std::vector<std::string_view> ResponseHead::values(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [n, v] : fields) {
    if (iequals(n, name)) out.push_back(v);
  }
  return out;
}

std::vector<std::string> ResponseHead::codings(std::string_view name) const {
  std::vector<std::string> out;
  for (std::string_view v : values(name)) {
    for_each_coding(v, [&](std::string_view item) {
      std::string c(item);
      for (char& ch : c) ch = lower(ch);
      out.push_back(std::move(c));
    });
  }
  return out;
}

bool ResponseReader::take_line(std::string_view in, std::size_t& i, std::size_t used, std::size_t limit,
                               bool& too_long, std::string_view* view) {
  const std::size_t lf = in.find('\n', i);
  const std::size_t end = lf == std::string_view::npos ? in.size() : lf;
  if (used + (end - i) > limit) {  // `used`: what the section (head, trailers, line) already holds
    i += limit - std::min(used, limit);  // up to the limit, so the error is at the same byte however split
    too_long = true;
    return false;
  }
  if (view != nullptr && line_.empty() && lf != std::string_view::npos) {
    // The whole line is in `in`: read in place, not copied.
    std::string_view l = in.substr(i, end - i);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    *view = l;
    i = lf + 1;
    return true;
  }
  line_.append(in.substr(i, end - i));
  i = lf == std::string_view::npos ? in.size() : lf + 1;
  if (lf == std::string_view::npos) return false;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  if (view != nullptr) *view = line_;
  return true;
}

ResponseReader::Event ResponseReader::feed(std::string_view in, std::size_t& used) {
  std::size_t i = 0;
  Event event = Event::kNeedMore;
  body_ = {};
  while (event == Event::kNeedMore && i < in.size()) {
    switch (state_) {
      case State::kFailed:
        used = i;
        return Event::kError;
      case State::kOpaque:
        used = i;
        return Event::kOpaque;
      case State::kStatusLine:
      case State::kFields: {
        bool too_long = false;
        const std::size_t before = i;
        std::string_view l;
        const bool line = take_line(in, i, head_bytes_, limits_.max_head, too_long, &l);
        head_bytes_ += i - before;
        if (too_long) {
          event = fail(ResponseError::kHeadTooLarge);
          break;
        }
        if (!line) break;
        event = state_ == State::kStatusLine ? on_status_line(l) : on_field_line(l);
        wipe(line_);
        break;
      }
      case State::kBodyLength:
      case State::kChunkData: {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - i));
        body_ = in.substr(i, n);
        i += n;
        remaining_ -= n;
        event = Event::kBody;
        if (remaining_ == 0) {
          if (state_ == State::kBodyLength) {
            message_end();
            event = Event::kEnd;
          } else {
            state_ = State::kChunkDataEnd;
          }
        }
        break;
      }
      case State::kBodyUntilClose:
        body_ = in.substr(i);
        i = in.size();
        event = Event::kBody;
        break;
      case State::kChunkLine:
      case State::kChunkDataEnd:
      case State::kTrailers: {
        bool too_long = false;
        const bool trailers = state_ == State::kTrailers;
        const std::size_t before = i;
        const bool line = take_line(in, i, trailers ? trailer_bytes_ : line_.size(),
                                    trailers ? limits_.max_trailers : limits_.max_chunk_line, too_long);
        if (state_ == State::kTrailers) trailer_bytes_ += i - before;
        if (too_long) {
          event = fail(state_ == State::kTrailers ? ResponseError::kTrailersTooLarge : ResponseError::kBadChunk);
          break;
        }
        if (!line) break;
        if (line_.find('\r') != std::string::npos) {
          event = fail(ResponseError::kBareCr);
        } else if (state_ == State::kChunkDataEnd) {
          if (!line_.empty()) event = fail(ResponseError::kBadChunk);
          else state_ = State::kChunkLine;
        } else if (state_ == State::kChunkLine) {
          event = on_chunk_line();
        } else if (line_.empty()) {
          message_end();  // the empty line after the trailers
          event = Event::kEnd;
        } else if (line_.find(':') == std::string::npos || line_.front() == ' ' || line_.front() == '\t') {
          event = fail(ResponseError::kBadChunk);
        } else {
          trailers_.append(line_).append("\r\n");  // within max_trailers, like the section
        }
        wipe(line_);
        break;
      }
    }
  }
  used = i;
  return event;
}

ResponseReader::Event ResponseReader::on_status_line(std::string_view l) {
  // An empty line before a status line is tolerated (a stray CRLF after a body).
  if (l.empty() && head_bytes_ <= 2) {
    head_bytes_ = 0;
    return Event::kNeedMore;
  }
  // HTTP-version SP 3DIGIT SP [ reason-phrase ]  (the SP after the code is sometimes missing)
  if (l.size() < 12 || l.substr(0, 7) != "HTTP/1." || (l[7] != '0' && l[7] != '1') || l[8] != ' ') {
    return fail(ResponseError::kBadStatusLine);
  }
  for (std::size_t k = 9; k < 12; ++k) {
    if (l[k] < '0' || l[k] > '9') return fail(ResponseError::kBadStatusLine);
  }
  if (l.size() > 12 && l[12] != ' ') return fail(ResponseError::kBadStatusLine);
  if (!all_value_chars(l.substr(12))) return fail(ResponseError::kBadStatusLine);
  reset_head();
  head_.status_line.assign(l);
  head_.minor_version = static_cast<std::uint8_t>(l[7] - '0');
  head_.status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
  if (head_.status < 100) return fail(ResponseError::kBadStatusLine);
  state_ = State::kFields;
  return Event::kNeedMore;
}

ResponseReader::Event ResponseReader::on_field_line(std::string_view l) {
  if (l.empty()) return on_head_end();
  const std::size_t colon = l.find(':');
  if (colon == std::string::npos || colon == 0 || field_spans_.size() >= limits_.max_fields) {
    return fail(ResponseError::kBadHeaderField);
  }
  for (std::size_t k = 0; k < colon; ++k) {
    if (!is_tchar(static_cast<unsigned char>(l[k]))) return fail(ResponseError::kBadHeaderField);
  }
  if (!all_value_chars(l.substr(colon + 1))) {
    for (std::size_t k = colon + 1; k < l.size(); ++k) {
      const auto c = static_cast<unsigned char>(l[k]);
      if (!is_value_char(c)) return fail(c == '\r' ? ResponseError::kBareCr : ResponseError::kBadHeaderField);
    }
  }
  const std::string_view name = l.substr(0, colon), value = trim(l.substr(colon + 1));
  // Within the head limit: the field bytes are fewer than the head's.
  const auto at = static_cast<std::uint32_t>(field_bytes_.size());
  field_bytes_.append(name).append(value);
  field_spans_.push_back({at, static_cast<std::uint32_t>(name.size()), static_cast<std::uint32_t>(at + name.size()),
                          static_cast<std::uint32_t>(value.size())});
  return Event::kNeedMore;
}

// §6.3: the length of the body this head announces, and whether the stream stays HTTP.
ResponseReader::Event ResponseReader::on_head_end() {
  head_bytes_ = 0;
  // The field bytes grow no more until the next head: the fields can view them now.
  head_.fields.clear();
  const std::string_view bytes = field_bytes_;
  for (const FieldSpan& f : field_spans_) {
    head_.fields.emplace_back(bytes.substr(f.name, f.name_size), bytes.substr(f.value, f.value_size));
  }
  const int status = head_.status;
  if (expected_.empty()) return fail(ResponseError::kUnrequestedResponse);
  head_.request = expected_.front();
  if (status == 101) {
    if (!head_.request.upgrade) return fail(ResponseError::kUnrequestedSwitch);
    head_.switched = true;
    expected_.pop_front();
    state_ = State::kOpaque;
    return Event::kHead;
  }
  if (status < 200) {
    head_.interim = true;  // 100, 102, 103: the final response is still to come
    state_ = State::kStatusLine;
    return Event::kHead;
  }
  expected_.pop_front();
  if (head_.request.connect && status < 300) {
    head_.switched = true;
    state_ = State::kOpaque;
    return Event::kHead;
  }
  // The framing fields in one pass over the head, without copies: whether a transfer coding is
  // listed and which is last (as codings() lists them), and every Content-Length.
  bool has_te = false, has_cl = false, bad_length = false;
  std::string_view last_te;
  std::uint64_t length = 0;
  for (const auto& [name, value] : head_.fields) {
    if (iequals(name, "transfer-encoding")) {
      for_each_coding(value, [&](std::string_view coding) {
        has_te = true;
        last_te = coding;
      });
    } else if (iequals(name, "content-length")) {
      has_cl = true;
      std::uint64_t one = 0;
      if (!parse_length(value, one) || (length != 0 && one != length)) bad_length = true;
      length = one;
    }
  }
  if (has_te && has_cl) return fail(ResponseError::kAmbiguousFraming);
  if (bad_length) return fail(ResponseError::kBadContentLength);
  using Body = ResponseHead::Body;
  if (head_.request.head || status == 204 || status == 304) {
    message_end();
  } else if (has_te) {
    if (iequals(last_te, "chunked")) {
      state_ = State::kChunkLine;
      head_.body = Body::kChunked;
    } else {
      state_ = State::kBodyUntilClose;  // §6.3 rule 4: a response read until the close
      head_.body = Body::kClose;
    }
  } else if (has_cl) {
    remaining_ = length;
    head_.length = length;
    if (length == 0) {
      message_end();
    } else {
      state_ = State::kBodyLength;
      head_.body = Body::kLength;
    }
  } else {
    state_ = State::kBodyUntilClose;
    head_.body = Body::kClose;
  }
  return Event::kHead;
}

ResponseReader::Event ResponseReader::on_chunk_line() {
  std::uint64_t size = 0;
  std::size_t k = 0;
  for (; k < line_.size(); ++k) {
    const int d = hex_value(line_[k]);
    if (d < 0) break;
    if (size > (kMaxLength - static_cast<std::uint64_t>(d)) / 16) return fail(ResponseError::kBadChunk);
    size = size * 16 + static_cast<std::uint64_t>(d);
  }
  if (k == 0) return fail(ResponseError::kBadChunk);
  const std::string_view rest = std::string_view(line_).substr(k);
  const std::string_view after = trim(rest);
  if (!after.empty() && after.front() != ';') return fail(ResponseError::kBadChunk);
  for (const char c : rest) {
    if (!is_value_char(static_cast<unsigned char>(c))) return fail(ResponseError::kBadChunk);
  }
  if (size == 0) {
    trailer_bytes_ = 0;
    wipe(trailers_);
    state_ = State::kTrailers;
  } else {
    remaining_ = size;
    state_ = State::kChunkData;
  }
  return Event::kNeedMore;
}

ResponseError ResponseReader::finish() const noexcept {
  switch (state_) {
    case State::kStatusLine:
      return line_.empty() ? ResponseError::kNone : ResponseError::kBadStatusLine;
    case State::kBodyUntilClose:
    case State::kOpaque:
      return ResponseError::kNone;
    case State::kFailed:
      return error_;
    default:
      return ResponseError::kBadChunk;  // cut short
  }
}

}  // namespace airlock::http
