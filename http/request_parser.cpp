// Incremental HTTP/1.1 request parser: an explicit state machine over bytes (RFC 9112).
//
// The head (request line through the empty line) is accumulated in head_.raw, byte by byte as far
// as validation goes, and handed to the sink whole. Body bytes are passed through as they arrive.
// Chunk framing lines are accumulated in line_buf_ (bounded) and handed to the sink whole. Every
// byte is checked when it arrives, so an error is reported at the first byte that makes the input
// invalid, and no buffer ever grows past its limit. A request line or field line that is whole in
// the input and valid is read in one pass (whole_request_line, whole_field_line); those fast paths
// only accept, and every other line goes through the byte machine, so the events, spans and errors
// are the same however the input is split (request_parser_test.cpp compares them with a feed of
// one byte at a time).
#include "http/request_parser.hpp"

#include <emmintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>

namespace airlock::http {

enum class RequestParser::State : std::uint8_t {
  kMessageStart,    // before a request line; one stray CRLF tolerated
  kEmptyLineLf,     // saw the CR of a stray CRLF
  kMethod,          // in the method token
  kTarget,          // in the request target
  kVersion,         // in HTTP-version
  kRequestLineLf,   // saw the CR ending the request line
  kFieldStart,      // at the start of a field line, or of the empty line ending the head
  kFieldName,       // in a field name
  kFieldOws,        // after the colon, before the value
  kFieldValue,      // in a field value
  kFieldLf,         // saw the CR ending a field line
  kHeadEndLf,       // saw the CR of the empty line ending the head
  kIdentityBody,    // Content-Length body bytes
  kChunkSizeStart,  // at the first chunk-size digit
  kChunkSize,       // in chunk-size
  kChunkExt,        // in chunk extensions, after `;`
  kChunkSizeLf,     // saw the CR ending the chunk line
  kChunkData,       // chunk data bytes
  kChunkDataCr,     // expecting the CR after chunk data
  kChunkDataLf,     // expecting the LF after chunk data
  kTrailerStart,    // at the start of a trailer field line or the final empty line
  kTrailerName,     // in a trailer field name
  kTrailerValue,    // in a trailer field value
  kTrailerLf,       // saw the CR ending a trailer field line
  kTrailerEndLf,    // saw the CR of the final empty line
  kAwaitingUpgrade, // the message that asked for an upgrade has ended: its response decides
  kUpgraded,        // the server switched protocols: the rest is opaque
  kFailed,          // an error was reported; nothing more is consumed
};

namespace {

constexpr std::uint64_t kMaxLength = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
//         / DIGIT / ALPHA
constexpr std::array<bool, 256> make_tchar() {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr std::array<bool, 256> kTchar = make_tchar();

// Field value bytes: VCHAR, obs-text, SP, HTAB (no other control character, no DEL).
constexpr std::array<bool, 256> make_value_char() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c <= 0xff; ++c) t[c] = c != 0x7f;
  t['\t'] = true;
  return t;
}
constexpr std::array<bool, 256> kValueChar = make_value_char();

// Request-target bytes: visible ASCII only.
constexpr bool is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }
constexpr bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// ASCII lower case by table (every field name of every head is compared with a few names).
constexpr std::array<char, 256> make_lower() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return t;
}
constexpr std::array<char, 256> kLower = make_lower();

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (kLower[static_cast<unsigned char>(a[i])] != kLower[static_cast<unsigned char>(b[i])]) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Content-Length = 1*DIGIT, also accepted as a list of identical values ("5, 5").
ParseError parse_content_length(std::string_view v, std::uint64_t& out) {
  bool have = false;
  std::uint64_t first = 0;
  std::size_t p = 0;
  for (;;) {
    while (p < v.size() && is_ows(static_cast<unsigned char>(v[p]))) ++p;
    std::uint64_t value = 0;
    const std::size_t digits_start = p;
    while (p < v.size() && v[p] >= '0' && v[p] <= '9') {
      const auto d = static_cast<std::uint64_t>(v[p] - '0');
      if (value > (kMaxLength - d) / 10) return ParseError::kBadContentLength;
      value = value * 10 + d;
      ++p;
    }
    if (p == digits_start) return ParseError::kBadContentLength;
    while (p < v.size() && is_ows(static_cast<unsigned char>(v[p]))) ++p;
    if (have && value != first) return ParseError::kConflictingContentLength;
    have = true;
    first = value;
    if (p == v.size()) break;
    if (v[p] != ',') return ParseError::kBadContentLength;
    ++p;
  }
  out = first;
  return ParseError::kNone;
}

constexpr bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

// RFC 3986 reg-name / IPv4address characters: unreserved, sub-delims and pct-encoded.
bool valid_reg_name(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_alpha(c) || is_digit(c) || std::string_view("-._~!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos) {
      continue;
    }
    if (c == '%' && i + 2 < s.size() && hex_value(static_cast<unsigned char>(s[i + 1])) >= 0 &&
        hex_value(static_cast<unsigned char>(s[i + 2])) >= 0) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

// The index of the first byte of d[i, n) that is not a field-value byte (n when there is none),
// 16 bytes at a time: a control byte other than HTAB, or DEL.
std::size_t first_non_value(const unsigned char* d, std::size_t i, std::size_t n) {
  const __m128i below_space = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
  for (; i + 16 <= n; i += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
    const __m128i control = _mm_andnot_si128(_mm_cmpeq_epi8(a, tab), _mm_cmpeq_epi8(_mm_min_epu8(a, below_space), a));
    const int bad = _mm_movemask_epi8(_mm_or_si128(control, _mm_cmpeq_epi8(a, del)));
    if (bad != 0) return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(bad)));
  }
  while (i < n && kValueChar[d[i]]) ++i;
  return i;
}

// Where the byte machine's fast paths found the parts of a line (indexes into the input).
struct LineParts {
  std::size_t a = 0;    // request line: the space after the method; field line: the colon
  std::size_t b = 0;    // request line: the space after the target; field line: the value's start
  std::size_t c = 0;    // field line: one past the value's last byte that is not OWS
  std::size_t end = 0;  // one past the line's LF
};

// A whole, valid request line `method SP target SP HTTP/1.x CRLF` at in[j, stop), stop bounding
// the request-line limit. False when it is not whole there or not valid: the byte machine then
// reads it and reports what is wrong at the byte where it is wrong, so the fast path decides
// nothing the machine would decide otherwise.
bool whole_request_line(std::string_view in, std::size_t j, std::size_t stop, LineParts& p) {
  const auto* d = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t k = j;
  while (k < stop && kTchar[d[k]]) ++k;
  if (k == j || k >= stop || d[k] != ' ') return false;
  p.a = k;
  std::size_t t = k + 1;
  while (t < stop && is_target_char(d[t])) ++t;
  if (t == k + 1 || t >= stop || d[t] != ' ') return false;
  p.b = t;
  if (stop - t < 11) return false;  // SP HTTP/1.x CR LF
  if (std::memcmp(d + t + 1, "HTTP/1.", 7) != 0 || (d[t + 8] != '1' && d[t + 8] != '0') || d[t + 9] != '\r' ||
      d[t + 10] != '\n') {
    return false;
  }
  p.end = t + 11;
  return true;
}

// A whole, valid field line `name ":" OWS value OWS CRLF` at in[j, stop), stop bounding the
// header-section limit; false as for whole_request_line.
bool whole_field_line(std::string_view in, std::size_t j, std::size_t stop, LineParts& p) {
  const auto* d = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t k = j;
  while (k < stop && kTchar[d[k]]) ++k;
  if (k == j || k >= stop || d[k] != ':') return false;
  p.a = k;
  std::size_t v = k + 1;
  while (v < stop && is_ows(d[v])) ++v;
  const std::size_t e = first_non_value(d, v, stop);  // the CR, if the line is valid
  if (stop - e < 2 || d[e] != '\r' || d[e + 1] != '\n') return false;
  std::size_t last = e;
  while (last > v && is_ows(d[last - 1])) --last;
  p.b = v;
  p.c = last;
  p.end = e + 2;
  return true;
}

}  // namespace

// Host = uri-host [ ":" port ] (RFC 9110 §7.2); uri-host = IP-literal / IPv4address / reg-name.
// An empty value is allowed (a target without authority).
bool valid_host_value(std::string_view v) {
  std::string_view host = v, port;
  if (!v.empty() && v.front() == '[') {
    const std::size_t close = v.find(']');
    if (close == std::string_view::npos || close < 2) return false;
    for (const char ch : v.substr(1, close - 1)) {
      const auto c = static_cast<unsigned char>(ch);
      if (!(hex_value(c) >= 0 || c == ':' || c == '.' || c == 'v' || c == 'V')) return false;
    }
    const std::string_view rest = v.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    port = rest.empty() ? rest : rest.substr(1);
    host = {};
  } else if (const std::size_t colon = v.rfind(':'); colon != std::string_view::npos) {
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
  }
  if (!valid_reg_name(host)) return false;
  for (const char ch : port) {
    if (!is_digit(static_cast<unsigned char>(ch))) return false;
  }
  return true;
}

// RFC 9112 §3.2: origin-form for every method, absolute-form (a scheme, then ':') for every
// method, authority-form only and always for CONNECT, asterisk-form only for OPTIONS.
bool valid_target_form(std::string_view method, std::string_view target) {
  if (method == "CONNECT") return !target.empty() && target.front() != '/' && target.find('/') == std::string_view::npos;
  if (target == "*") return method == "OPTIONS";
  if (!target.empty() && target.front() == '/') return true;
  std::size_t i = 0;
  if (i >= target.size() || !is_alpha(static_cast<unsigned char>(target[i]))) return false;
  while (i < target.size()) {
    const auto c = static_cast<unsigned char>(target[i]);
    if (c == ':') return i > 0;
    if (!(is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.')) return false;
    ++i;
  }
  return false;
}

bool valid_chunk_extensions(std::string_view ext) {
  std::size_t i = 0;
  const std::size_t n = ext.size();
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(ext[k]); };
  auto skip_ows = [&] {
    while (i < n && is_ows(at(i))) ++i;
  };
  auto token = [&] {
    const std::size_t start = i;
    while (i < n && kTchar[at(i)]) ++i;
    return i > start;
  };
  while (i < n) {
    if (at(i) != ';') return false;
    ++i;
    skip_ows();
    if (!token()) return false;
    skip_ows();
    if (i < n && at(i) == '=') {
      ++i;
      skip_ows();
      if (i < n && at(i) == '"') {
        ++i;
        bool closed = false;
        while (i < n && !closed) {
          const unsigned char c = at(i);
          if (c == '"') {
            closed = true;
          } else if (c == '\\') {
            if (++i >= n || !kValueChar[at(i)]) return false;
          } else if (!kValueChar[c]) {
            return false;
          }
          ++i;
        }
        if (!closed) return false;
      } else if (!token()) {
        return false;
      }
      skip_ows();
    }
  }
  return true;
}

bool forbidden_in_trailers(std::string_view name) {
  for (const std::string_view f : {"content-length", "transfer-encoding", "host", "trailer", "te", "connection",
                                   "upgrade", "content-encoding", "authorization", "proxy-authorization"}) {
    if (iequals(name, f)) return true;
  }
  return false;
}

namespace {

bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    const std::string_view item = trim_ows(list.substr(0, comma));
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string_view to_string(ParseError error) noexcept {
  switch (error) {
    case ParseError::kNone: return "none";
    case ParseError::kRequestLineTooLong: return "request_line_too_long";
    case ParseError::kHeaderSectionTooLarge: return "header_section_too_large";
    case ParseError::kTooManyHeaders: return "too_many_headers";
    case ParseError::kBadRequestLine: return "bad_request_line";
    case ParseError::kUnsupportedVersion: return "unsupported_version";
    case ParseError::kBadHeaderName: return "bad_header_name";
    case ParseError::kBadHeaderValue: return "bad_header_value";
    case ParseError::kObsoleteLineFolding: return "obsolete_line_folding";
    case ParseError::kBareCr: return "bare_cr";
    case ParseError::kBareLf: return "bare_lf";
    case ParseError::kNulInHead: return "nul_in_head";
    case ParseError::kContentLengthWithTransferEncoding: return "content_length_with_transfer_encoding";
    case ParseError::kConflictingContentLength: return "conflicting_content_length";
    case ParseError::kBadContentLength: return "bad_content_length";
    case ParseError::kUnsupportedTransferCoding: return "unsupported_transfer_coding";
    case ParseError::kBadChunkSize: return "bad_chunk_size";
    case ParseError::kBadChunkTerminator: return "bad_chunk_terminator";
    case ParseError::kTrailerSectionTooLarge: return "trailer_section_too_large";
    case ParseError::kBadTrailer: return "bad_trailer";
    case ParseError::kMultipleHost: return "multiple_host";
    case ParseError::kTransferEncodingInHttp10: return "transfer_encoding_in_http10";
    case ParseError::kBadHost: return "bad_host";
    case ParseError::kBadRequestTarget: return "bad_request_target";
    case ParseError::kBadChunkExtension: return "bad_chunk_extension";
    case ParseError::kForbiddenTrailer: return "forbidden_trailer";
  }
  return "unknown";
}

std::vector<std::string_view> RequestHead::values(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const HeaderField& f : fields) {
    if (iequals(view(f.name), name)) out.push_back(view(f.value));
  }
  return out;
}

RequestParser::RequestParser(Limits limits) noexcept : limits_(limits), state_(State::kMessageStart) {}

bool RequestParser::upgraded() const noexcept { return state_ == State::kUpgraded; }
bool RequestParser::awaiting_upgrade() const noexcept { return state_ == State::kAwaitingUpgrade; }

void RequestParser::resolve_upgrade(bool switched) noexcept {
  if (state_ == State::kAwaitingUpgrade) state_ = switched ? State::kUpgraded : State::kMessageStart;
}

bool RequestParser::at_message_boundary() const noexcept {
  return state_ == State::kMessageStart || state_ == State::kUpgraded || state_ == State::kAwaitingUpgrade;
}

bool RequestParser::in_head() const noexcept {
  return state_ >= State::kEmptyLineLf && state_ <= State::kHeadEndLf;
}

std::size_t RequestParser::fail(ParseError error, std::size_t at) noexcept {
  error_ = error;
  state_ = State::kFailed;
  return at;
}

std::size_t RequestParser::parse(std::string_view in, RequestSink& sink) {
  std::size_t i = 0;
  while (i < in.size()) {
    const auto c = static_cast<unsigned char>(in[i]);
    switch (state_) {
      case State::kFailed:
      case State::kAwaitingUpgrade:
      case State::kUpgraded:
        return i;

      case State::kMessageStart:
        if (kTchar[c]) {
          state_ = State::kMethod;  // parse_head takes this byte
          i = parse_head(in, i, sink);
        } else if (c == '\r') {
          if (empty_line_seen_) return fail(ParseError::kBadRequestLine, i);
          line_buf_.assign(1, '\r');
          state_ = State::kEmptyLineLf;
          ++i;
        } else if (c == '\n') {
          return fail(ParseError::kBareLf, i);
        } else if (c == 0) {
          return fail(ParseError::kNulInHead, i);
        } else {
          return fail(ParseError::kBadRequestLine, i);
        }
        break;

      case State::kEmptyLineLf:
        if (c != '\n') return fail(ParseError::kBareCr, i);
        line_buf_.push_back('\n');
        ++i;
        empty_line_seen_ = true;
        state_ = State::kMessageStart;
        sink.on_framing(FramingKind::kEmptyLine, line_buf_);
        line_buf_.clear();
        break;

      case State::kMethod:
      case State::kTarget:
      case State::kVersion:
      case State::kRequestLineLf:
      case State::kFieldStart:
      case State::kFieldName:
      case State::kFieldOws:
      case State::kFieldValue:
      case State::kFieldLf:
      case State::kHeadEndLf:
        i = parse_head(in, i, sink);
        break;

      case State::kIdentityBody:
      case State::kChunkData: {
        const std::size_t n = static_cast<std::size_t>(
            std::min<std::uint64_t>(remaining_, in.size() - i));
        sink.on_body(in.substr(i, n));
        i += n;
        remaining_ -= n;
        if (remaining_ == 0) {
          if (state_ == State::kIdentityBody) {
            end_message(sink);
          } else {
            state_ = State::kChunkDataCr;
          }
        }
        break;
      }

      default:
        i = parse_chunk_line(in, i, sink);
        break;
    }
  }
  return i;
}

std::size_t RequestParser::parse_head(std::string_view in, std::size_t i, RequestSink& sink) {
  std::string& raw = head_.raw;
  // The bytes in[begin, j) are appended to raw in one go (flush); raw offset of in[begin] is base.
  std::size_t begin = i;
  std::size_t base = raw.size();
  // Index in `in` of the first byte past the header-section limit (bounds the fast scans).
  std::size_t head_stop = 0;
  auto restart = [&](std::size_t at) {
    begin = at;
    base = raw.size();
    head_stop = begin + std::min(in.size() - begin,
                                 limits_.max_header_section - std::min(base, limits_.max_header_section));
  };
  restart(i);
  auto flush = [&](std::size_t end) { raw.append(in.data() + begin, end - begin); };
  auto failed = [&](ParseError e, std::size_t at) {
    flush(at);
    return fail(e, at);
  };
  auto pos_of = [&](std::size_t k) { return static_cast<std::uint32_t>(base + (k - begin)); };
  // A field line read whole (line_start_ ... value_end_ set, its LF at in[lf]): checked and
  // recorded, or the error.
  auto add_field = [&](std::string_view name, std::string_view value, std::size_t lf) {
    const ParseError e = on_field(name, value);
    if (e != ParseError::kNone) return e;
    head_.fields.push_back(HeaderField{
        .line = {line_start_, pos_of(lf) + 1 - line_start_},
        .name = {line_start_, name_end_ - line_start_},
        .value = {value_start_, value_end_ - value_start_},
    });
    state_ = State::kFieldStart;
    return ParseError::kNone;
  };
  for (std::size_t j = i; j < in.size(); ++j) {
    const std::size_t pos = base + (j - begin);
    const auto c = static_cast<unsigned char>(in[j]);
    const bool in_request_line = state_ == State::kMethod || state_ == State::kTarget ||
                                 state_ == State::kVersion || state_ == State::kRequestLineLf;
    if (in_request_line && pos >= limits_.max_request_line) {
      return failed(ParseError::kRequestLineTooLong, j);
    }
    if (pos >= limits_.max_header_section) return failed(ParseError::kHeaderSectionTooLarge, j);
    if (c == 0) return failed(ParseError::kNulInHead, j);
    if (c == '\n' && state_ != State::kRequestLineLf && state_ != State::kFieldLf &&
        state_ != State::kHeadEndLf) {
      return failed(ParseError::kBareLf, j);
    }

    switch (state_) {
      case State::kMethod:
        if (pos == 0) {
          // Fast path: the whole line is here and valid (else the bytes below say what is wrong).
          const std::size_t stop = std::min(head_stop, j + limits_.max_request_line);
          if (LineParts p; whole_request_line(in, j, stop, p)) {
            head_.method = {0, pos_of(p.a)};
            head_.target = {pos_of(p.a) + 1, static_cast<std::uint32_t>(p.b - p.a - 1)};
            head_.version = {pos_of(p.b) + 1, 8};
            head_.minor_version = static_cast<std::uint8_t>(in[p.b + 8] - '0');
            state_ = State::kFieldStart;
            j = p.end - 1;
            break;
          }
        }
        if (c == ' ') {
          head_.method = {0, static_cast<std::uint32_t>(pos)};
          head_.target = {static_cast<std::uint32_t>(pos + 1), 0};
          state_ = State::kTarget;
        } else if (!kTchar[c]) {
          return failed(ParseError::kBadRequestLine, j);
        }
        break;

      case State::kTarget:
        if (is_target_char(c)) {
          const std::size_t stop =
              std::min(head_stop, begin + (limits_.max_request_line - std::min(base, limits_.max_request_line)));
          std::size_t k = j + 1;
          while (k < stop && is_target_char(static_cast<unsigned char>(in[k]))) ++k;
          j = k - 1;
        } else if (c == ' ' && pos > head_.target.offset) {
          head_.target.length = static_cast<std::uint32_t>(pos - head_.target.offset);
          head_.version = {static_cast<std::uint32_t>(pos + 1), 0};
          state_ = State::kVersion;
        } else {
          return failed(ParseError::kBadRequestLine, j);
        }
        break;

      case State::kVersion: {
        const std::size_t k = pos - head_.version.offset;
        static constexpr std::string_view kPrefix = "HTTP/";
        if (k < kPrefix.size()) {
          if (c != static_cast<unsigned char>(kPrefix[k])) return failed(ParseError::kBadRequestLine, j);
        } else if (k == 5 || k == 7) {  // major, minor digit
          if (c < '0' || c > '9') return failed(ParseError::kBadRequestLine, j);
          if (c != '1' && !(k == 7 && c == '0')) return failed(ParseError::kUnsupportedVersion, j);
          if (k == 7) head_.minor_version = static_cast<std::uint8_t>(c - '0');
        } else if (k == 6) {
          if (c != '.') return failed(ParseError::kBadRequestLine, j);
        } else if (c == '\r') {
          head_.version.length = 8;
          state_ = State::kRequestLineLf;
        } else {
          return failed(ParseError::kBadRequestLine, j);
        }
        break;
      }

      case State::kRequestLineLf:
        if (c != '\n') return failed(ParseError::kBareCr, j);
        state_ = State::kFieldStart;
        break;

      case State::kFieldStart:
        if (c == '\r') {
          state_ = State::kHeadEndLf;
        } else if (is_ows(c)) {
          return failed(ParseError::kObsoleteLineFolding, j);
        } else if (kTchar[c]) {
          if (head_.fields.size() >= limits_.max_headers) return failed(ParseError::kTooManyHeaders, j);
          line_start_ = static_cast<std::uint32_t>(pos);
          // Fast path: the whole line is here and valid (else the bytes below say what is wrong).
          if (LineParts p; whole_field_line(in, j, head_stop, p)) {
            name_end_ = pos_of(p.a);
            value_start_ = pos_of(p.b);
            value_end_ = pos_of(p.c);
            // Read in place: the line joins raw with the next flush.
            const ParseError e = add_field(in.substr(j, p.a - j), in.substr(p.b, p.c - p.b), p.end - 1);
            if (e != ParseError::kNone) return failed(e, p.end - 1);  // the LF is not consumed
            j = p.end - 1;
            break;
          }
          state_ = State::kFieldName;
        } else {
          return failed(ParseError::kBadHeaderName, j);
        }
        break;

      case State::kFieldName:
        if (kTchar[c]) {
          std::size_t k = j + 1;
          while (k < head_stop && kTchar[static_cast<unsigned char>(in[k])]) ++k;
          j = k - 1;
        } else if (c == ':') {
          name_end_ = static_cast<std::uint32_t>(pos);
          state_ = State::kFieldOws;
        } else {
          return failed(ParseError::kBadHeaderName, j);
        }
        break;

      case State::kFieldOws:
        if (is_ows(c)) break;
        if (c == '\r') {
          value_start_ = value_end_ = static_cast<std::uint32_t>(pos);
          state_ = State::kFieldLf;
          break;
        }
        if (!kValueChar[c]) return failed(ParseError::kBadHeaderValue, j);
        value_start_ = static_cast<std::uint32_t>(pos);
        state_ = State::kFieldValue;
        [[fallthrough]];

      case State::kFieldValue:
        if (kValueChar[c]) {
          std::size_t last = is_ows(c) ? std::string_view::npos : j;
          std::size_t k = j + 1;
          while (k < head_stop) {
            const auto d = static_cast<unsigned char>(in[k]);
            if (!kValueChar[d]) break;
            if (!is_ows(d)) last = k;
            ++k;
          }
          if (last != std::string_view::npos) value_end_ = static_cast<std::uint32_t>(base + (last - begin) + 1);
          j = k - 1;
        } else if (c == '\r') {
          state_ = State::kFieldLf;
        } else {
          return failed(ParseError::kBadHeaderValue, j);
        }
        break;

      case State::kFieldLf: {
        if (c != '\n') return failed(ParseError::kBareCr, j);
        flush(j + 1);  // the line may have come in pieces: read it from raw
        const ParseError e = add_field(std::string_view(raw.data() + line_start_, name_end_ - line_start_),
                                       std::string_view(raw.data() + value_start_, value_end_ - value_start_), j);
        if (e != ParseError::kNone) {
          raw.pop_back();  // the LF is not consumed
          return fail(e, j);
        }
        restart(j + 1);
        break;
      }

      case State::kHeadEndLf: {
        if (c != '\n') return failed(ParseError::kBareCr, j);
        flush(j + 1);
        const ParseError e = check_head();
        if (e != ParseError::kNone) {
          raw.pop_back();  // the LF is not consumed
          return fail(e, j);
        }
        finish_head(sink);
        return j + 1;
      }

      default:
        return failed(ParseError::kBadRequestLine, j);  // unreachable: not a head state
    }
  }
  flush(in.size());
  return in.size();
}

ParseError RequestParser::on_field(std::string_view name, std::string_view value) {
  // By length first: most fields are none of these, and each length names at most one.
  switch (name.size()) {
    case 4:
      if (!iequals(name, "host")) break;
      if (++host_count_ > 1) return ParseError::kMultipleHost;
      if (!valid_host_value(value)) return ParseError::kBadHost;
      break;
    case 14: {
      if (!iequals(name, "content-length")) break;
      if (has_transfer_encoding_) return ParseError::kContentLengthWithTransferEncoding;
      std::uint64_t length = 0;
      const ParseError e = parse_content_length(value, length);
      if (e != ParseError::kNone) return e;
      if (has_content_length_ && length != head_.content_length) return ParseError::kConflictingContentLength;
      has_content_length_ = true;
      head_.content_length = length;
      break;
    }
    case 17:
      if (!iequals(name, "transfer-encoding")) break;
      if (head_.minor_version == 0) return ParseError::kTransferEncodingInHttp10;
      if (has_content_length_) return ParseError::kContentLengthWithTransferEncoding;
      // Only a single `chunked`: a second field would apply a coding after (or twice) chunked.
      if (has_transfer_encoding_ || !iequals(value, "chunked")) return ParseError::kUnsupportedTransferCoding;
      has_transfer_encoding_ = true;
      break;
    case 6:
      if (iequals(name, "expect") && iequals(value, "100-continue")) head_.expect_continue = true;
      break;
    case 7:
      if (iequals(name, "upgrade")) has_upgrade_field_ = true;
      break;
    case 10:
      if (iequals(name, "connection")) {
        if (has_token(value, "upgrade")) connection_upgrade_ = true;
        if (has_token(value, "close")) head_.close = true;
      }
      break;
    default:
      break;
  }
  return ParseError::kNone;
}

// What can only be judged once the whole head is in: the target's form. (An HTTP/1.1 request
// without Host is left to the server's 400, RFC 9112 §3.2: the engine never finds a secret
// eligible for it, since gate 4 needs one Host equal to the SNI.)
ParseError RequestParser::check_head() const {
  if (!valid_target_form(head_.view(head_.method), head_.view(head_.target))) return ParseError::kBadRequestTarget;
  return ParseError::kNone;
}

void RequestParser::finish_head(RequestSink& sink) {
  if (has_transfer_encoding_) {
    head_.framing = BodyFraming::kChunked;
  } else if (has_content_length_) {
    head_.framing = BodyFraming::kContentLength;
  } else {
    head_.framing = BodyFraming::kNone;  // requests never read until close
  }
  head_.upgrade = head_.view(head_.method) == "CONNECT" || (has_upgrade_field_ && connection_upgrade_);
  const BodyFraming framing = head_.framing;
  const std::uint64_t length = head_.content_length;

  sink.on_head(head_);
  // After on_head: a sink that removed the upgrade offer from what it forwards clears it.
  upgrade_pending_ = head_.upgrade;

  // Ready for the next head (the sink may have moved from head_; clear() restores a valid state).
  head_.raw.clear();
  head_.fields.clear();
  head_.method = head_.target = head_.version = Span{};
  head_.framing = BodyFraming::kNone;
  head_.content_length = 0;
  head_.expect_continue = false;
  head_.upgrade = false;
  head_.close = false;
  head_.minor_version = 1;
  host_count_ = 0;
  has_content_length_ = has_transfer_encoding_ = has_upgrade_field_ = connection_upgrade_ = false;

  if (framing == BodyFraming::kChunked) {
    state_ = State::kChunkSizeStart;
    line_buf_.clear();
  } else if (framing == BodyFraming::kContentLength && length > 0) {
    remaining_ = length;
    state_ = State::kIdentityBody;
  } else {
    end_message(sink);
  }
}

void RequestParser::end_message(RequestSink& sink) {
  line_buf_.clear();
  trailer_bytes_ = 0;
  remaining_ = 0;
  empty_line_seen_ = false;
  state_ = upgrade_pending_ ? State::kAwaitingUpgrade : State::kMessageStart;
  upgrade_pending_ = false;
  sink.on_message_end();
}

// Chunk lines, the CRLF after chunk data, the last chunk and the trailer section: byte by byte
// into line_buf_, bounded by max_chunk_line and max_trailer_section.
std::size_t RequestParser::parse_chunk_line(std::string_view in, std::size_t i, RequestSink& sink) {
  for (; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    switch (state_) {
      case State::kChunkSizeStart:
      case State::kChunkSize:
      case State::kChunkExt:
      case State::kChunkSizeLf:
        if (line_buf_.size() >= limits_.max_chunk_line) return fail(ParseError::kBadChunkSize, i);
        break;
      case State::kTrailerStart:
      case State::kTrailerName:
      case State::kTrailerValue:
      case State::kTrailerLf:
      case State::kTrailerEndLf:
        if (trailer_bytes_ >= limits_.max_trailer_section) {
          return fail(ParseError::kTrailerSectionTooLarge, i);
        }
        ++trailer_bytes_;
        break;
      default:
        break;
    }

    switch (state_) {
      case State::kChunkSizeStart: {
        const int d = hex_value(c);
        if (d < 0) return fail(ParseError::kBadChunkSize, i);
        chunk_size_ = static_cast<std::uint64_t>(d);
        state_ = State::kChunkSize;
        break;
      }
      case State::kChunkSize: {
        const int d = hex_value(c);
        if (d >= 0) {
          if (chunk_size_ > (kMaxLength - static_cast<std::uint64_t>(d)) / 16) {
            return fail(ParseError::kBadChunkSize, i);
          }
          chunk_size_ = chunk_size_ * 16 + static_cast<std::uint64_t>(d);
        } else if (c == ';') {
          state_ = State::kChunkExt;
        } else if (c == '\r') {
          state_ = State::kChunkSizeLf;
        } else {
          return fail(ParseError::kBadChunkSize, i);
        }
        break;
      }
      case State::kChunkExt:
        if (c == '\r') {
          if (!valid_chunk_extensions(std::string_view(line_buf_).substr(line_buf_.find(';')))) {
            return fail(ParseError::kBadChunkExtension, i);
          }
          state_ = State::kChunkSizeLf;
        } else if (!kValueChar[c]) {
          return fail(ParseError::kBadChunkSize, i);
        }
        break;
      case State::kChunkSizeLf:
        if (c != '\n') return fail(ParseError::kBadChunkSize, i);
        line_buf_.push_back('\n');
        if (chunk_size_ == 0) {
          state_ = State::kTrailerStart;  // last-chunk: the framing event waits for the trailers
        } else {
          remaining_ = chunk_size_;
          state_ = State::kChunkData;
          sink.on_framing(FramingKind::kChunkHeader, line_buf_);
          line_buf_.clear();
          return i + 1;
        }
        continue;

      case State::kChunkDataCr:
        if (c != '\r') return fail(ParseError::kBadChunkTerminator, i);
        state_ = State::kChunkDataLf;
        break;
      case State::kChunkDataLf:
        if (c != '\n') return fail(ParseError::kBadChunkTerminator, i);
        state_ = State::kChunkSizeStart;
        sink.on_framing(FramingKind::kChunkEnd, "\r\n");
        line_buf_.clear();
        continue;

      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kTrailerEndLf;
        } else if (kTchar[c]) {
          trailer_name_start_ = line_buf_.size();
          state_ = State::kTrailerName;
        } else {
          return fail(ParseError::kBadTrailer, i);
        }
        break;
      case State::kTrailerName:
        if (c == ':') {
          if (forbidden_in_trailers(std::string_view(line_buf_).substr(trailer_name_start_))) {
            return fail(ParseError::kForbiddenTrailer, i);
          }
          state_ = State::kTrailerValue;
        } else if (!kTchar[c]) {
          return fail(ParseError::kBadTrailer, i);
        }
        break;
      case State::kTrailerValue:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (!kValueChar[c]) {
          return fail(ParseError::kBadTrailer, i);
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail(ParseError::kBadTrailer, i);
        state_ = State::kTrailerStart;
        break;
      case State::kTrailerEndLf:
        if (c != '\n') return fail(ParseError::kBadTrailer, i);
        line_buf_.push_back('\n');
        sink.on_framing(FramingKind::kLastChunk, line_buf_);
        end_message(sink);
        return i + 1;

      default:
        return i;  // not a chunk-line state: the caller dispatches
    }
    line_buf_.push_back(static_cast<char>(c));
  }
  return i;
}

}  // namespace airlock::http
