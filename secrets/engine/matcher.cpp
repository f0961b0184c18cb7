#include <secrets/engine/matcher.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>

#include <emmintrin.h>
#include <string.h>  // explicit_bzero

namespace airlock::secrets {
namespace {

constexpr std::uint8_t kNotHex = 0xff;

constexpr std::array<std::uint8_t, 256> make_hex_table() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = kNotHex;
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<std::uint8_t>(i);
  for (int i = 0; i < 6; ++i) {
    t['a' + i] = static_cast<std::uint8_t>(10 + i);
    t['A' + i] = static_cast<std::uint8_t>(10 + i);
  }
  return t;
}
constexpr std::array<std::uint8_t, 256> kHex = make_hex_table();

// UTF-8 of a BMP code point outside the surrogates; returns the byte count (0: not encodable).
int utf8_encode(std::uint32_t cp, unsigned char out[3]) noexcept {
  if (cp < 0x80) {
    out[0] = static_cast<unsigned char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<unsigned char>(0xc0 | (cp >> 6));
    out[1] = static_cast<unsigned char>(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp >= 0xd800 && cp <= 0xdfff) return 0;
  out[0] = static_cast<unsigned char>(0xe0 | (cp >> 12));
  out[1] = static_cast<unsigned char>(0x80 | ((cp >> 6) & 0x3f));
  out[2] = static_cast<unsigned char>(0x80 | (cp & 0x3f));
  return 3;
}

// One decoding step at data[o]: a JSON `\uXXXX`. Returns 1 decoded, 0 not this form,
// -1 the data ended while it still looked like this form.
int decode_json_u(const unsigned char* d, std::size_t n, std::size_t o, std::uint32_t* cp) noexcept {
  if (o + 1 >= n) return -1;
  if (d[o + 1] != 'u') return 0;
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    if (o + 2 + k >= n) return -1;
    const std::uint8_t h = kHex[d[o + 2 + k]];
    if (h == kNotHex) return 0;
    v = (v << 4) | h;
  }
  *cp = v;
  return 1;
}

// Same for `%XX`.
int decode_percent(const unsigned char* d, std::size_t n, std::size_t o, unsigned char* byte) noexcept {
  if (o + 1 >= n) return -1;
  const std::uint8_t h1 = kHex[d[o + 1]];
  if (h1 == kNotHex) return 0;
  if (o + 2 >= n) return -1;
  const std::uint8_t h2 = kHex[d[o + 2]];
  if (h2 == kNotHex) return 0;
  *byte = static_cast<unsigned char>((h1 << 4) | h2);
  return 1;
}

bool is_short_json_escape(unsigned char c) noexcept { return c == '"' || c == '\\' || c == '/'; }

// Upper bound on the work for one candidate (a placeholder made of many `%` or `\` can make
// the paths branch); past it the candidate is reported as found, which blocks (fail closed).
constexpr std::size_t kMaxSteps = 8192;

// Does placeholder `p` start at d[pos] in some per-character mix of raw, %XX and JSON escapes?
Match::Kind match_one(std::string_view p, const unsigned char* d, std::size_t n, std::size_t pos,
                      std::uint32_t* length, std::uint8_t* forms) noexcept {
  const auto* pp = reinterpret_cast<const unsigned char*>(p.data());
  const std::size_t len = p.size();
  // Fast path: the raw placeholder, or a mismatch before any escape character.
  {
    const std::size_t avail = n - pos;
    const std::size_t cmp = std::min(avail, len);
    std::size_t j = 0;
    while (j < cmp && d[pos + j] == pp[j]) ++j;
    if (j == len) {
      *length = static_cast<std::uint32_t>(len);
      *forms = kFormRaw;
      return Match::kFound;
    }
    bool escape_seen = false;
    const std::size_t upto = std::min(j + 1, avail);
    for (std::size_t k = 0; k < upto; ++k) {
      if (d[pos + k] == '%' || d[pos + k] == '\\') {
        escape_seen = true;
        break;
      }
    }
    if (!escape_seen) return j == avail ? Match::kPartial : Match::kNone;
  }
  struct State {
    std::uint32_t o, k;
    std::uint8_t forms;
  };
  State stack[128];
  std::size_t sp = 0;
  stack[sp++] = {static_cast<std::uint32_t>(pos), 0, kFormRaw};
  bool partial = false;
  std::size_t steps = 0;
  while (sp > 0) {
    const State s = stack[--sp];
    if (s.k == len) {
      *length = s.o - static_cast<std::uint32_t>(pos);
      *forms = s.forms;
      return Match::kFound;
    }
    if (++steps > kMaxSteps || sp + 3 > std::size(stack)) {
      *length = s.o - static_cast<std::uint32_t>(pos);
      *forms = s.forms;
      return Match::kFound;
    }
    if (s.o >= n) {
      partial = true;
      continue;
    }
    const unsigned char b = d[s.o];
    const unsigned char want = pp[s.k];
    if (b == '%') {
      unsigned char v = 0;
      const int r = decode_percent(d, n, s.o, &v);
      if (r < 0) partial = true;
      else if (r > 0 && v == want) stack[sp++] = {s.o + 3, s.k + 1, static_cast<std::uint8_t>(s.forms | kFormPercent)};
    } else if (b == '\\') {
      std::uint32_t cp = 0;
      const int r = decode_json_u(d, n, s.o, &cp);
      if (r < 0) {
        partial = true;
      } else if (r > 0) {
        unsigned char u[3];
        const int m = utf8_encode(cp, u);
        if (m > 0 && s.k + static_cast<std::size_t>(m) <= len && std::memcmp(pp + s.k, u, static_cast<std::size_t>(m)) == 0) {
          stack[sp++] = {s.o + 6, s.k + static_cast<std::uint32_t>(m), static_cast<std::uint8_t>(s.forms | kFormJson)};
        }
      } else if (is_short_json_escape(d[s.o + 1]) && d[s.o + 1] == want) {
        stack[sp++] = {s.o + 2, s.k + 1, static_cast<std::uint8_t>(s.forms | kFormJson)};
      }
    }
    if (b == want) stack[sp++] = {s.o + 1, s.k + 1, s.forms};  // raw first (popped first)
  }
  return partial ? Match::kPartial : Match::kNone;
}

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<std::uint8_t, 256> make_b64_table() {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = 0xff;
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(kB64[i])] = static_cast<std::uint8_t>(i);
  t['-'] = 62;
  t['_'] = 63;
  return t;
}
constexpr std::array<std::uint8_t, 256> kB64Value = make_b64_table();

unsigned char fold_b64(unsigned char c) noexcept { return c == '-' ? '+' : c == '_' ? '/' : c; }

std::size_t pair_key(unsigned char a, unsigned char b) noexcept {
  return (static_cast<std::size_t>(fold_b64(a)) << 8) | fold_b64(b);
}

bool base64_form_in(const SecretSet::Compiled& c, std::string_view text, std::size_t from, std::size_t to,
                    const std::uint8_t* want, Match* found, std::size_t* at) noexcept;

constexpr std::size_t kB64Gram = 4;  // every base64 form is at least this long

// The hash of 4 characters as they stand (no folding: the filter holds every spelling).
std::uint32_t b64_gram_hash(const unsigned char* p) noexcept {
  std::uint32_t g;
  std::memcpy(&g, p, sizeof g);
  return g * 0x9E3779B1u;
}

void build_base64_filter(SecretSet::Compiled& c) {
  if (c.base64_forms.empty()) return;
  std::size_t shortest = c.base64_forms.front().text.size();
  for (const auto& f : c.base64_forms) shortest = std::min(shortest, f.text.size());
  c.base64_stride = shortest - kB64Gram + 1;
  // About 64 filter bits per (form, offset) pair: few sampled positions of unrelated text pass.
  const std::size_t entries = c.base64_forms.size() * c.base64_stride;
  unsigned log = 12;
  while (log < 24 && (std::size_t{1} << log) < 64 * entries) ++log;
  c.base64_filter_shift = 32 - log;
  c.base64_filter.assign((std::size_t{1} << log) / 64, 0);
  // Each gram in every mix of the two alphabets ('+' or '-', '/' or '_'), as find_base64_form
  // folds them: the probe then hashes the text's bytes without folding.
  for (const auto& f : c.base64_forms) {
    for (std::size_t o = 0; o < c.base64_stride; ++o) {
      const auto* g = reinterpret_cast<const unsigned char*>(f.text.data()) + o;
      for (unsigned mix = 0; mix < 16; ++mix) {
        unsigned char v[kB64Gram];
        bool used = true;  // every bit of mix selects a url character where there is one to select
        for (std::size_t k = 0; k < kB64Gram; ++k) {
          const bool url = (mix >> k) & 1;
          const bool special = g[k] == '+' || g[k] == '/';
          if (url && !special) used = false;
          v[k] = url && special ? (g[k] == '+' ? '-' : '_') : g[k];
        }
        if (!used) continue;
        const std::uint32_t bit = b64_gram_hash(v) >> c.base64_filter_shift;
        c.base64_filter[bit / 64] |= std::uint64_t{1} << (bit % 64);
      }
    }
  }
}

}  // namespace

std::string_view form_name(std::uint8_t forms) noexcept {
  if (forms & kFormBasic) return "base64 in Basic auth";
  if (forms & kFormBase64) return "base64";
  const bool pct = forms & kFormPercent, json = forms & kFormJson;
  if (pct && json) return "percent- and JSON-escaped";
  if (pct) return "percent-encoded";
  if (json) return "JSON-escaped";
  return "raw";
}

SecretSet::Compiled::Compiled(const std::vector<SecretBinding>& secrets) {
  placeholders.reserve(secrets.size());
  for (std::uint32_t i = 0; i < secrets.size(); ++i) {
    const SecretBinding& s = secrets[i];
    placeholders.push_back(s.placeholder());
    value_unsafe_for_head.push_back(s.value().contains_any_of(std::string_view("\r\n\0", 3)) ? 1 : 0);
    const std::string& p = placeholders.back();
    if (p.empty()) continue;
    const auto first = static_cast<unsigned char>(p[0]);
    trigger[first] |= kTriggerRaw;
    by_first[first].push_back(i);
    max_placeholder = std::max(max_placeholder, p.size());

    // Base64 at the three alignments: the placeholder after k = 0, 1, 2 unknown bytes. Output
    // character j covers bits [6j, 6j+6); keep those inside the placeholder's bits.
    for (std::size_t k = 0; k < 3; ++k) {
      std::string bytes(k, '\0');
      bytes += p;
      bytes.append(2, '\0');
      const std::string enc = base64_encode(bytes);
      const std::size_t begin = (8 * k + 5) / 6;
      const std::size_t end = (8 * (k + p.size())) / 6;  // exclusive
      if (end <= begin || end - begin < 4) continue;
      base64_forms.push_back({i, enc.substr(begin, end - begin)});
      max_base64_form = std::max(max_base64_form, end - begin);
    }
  }
  for (int b = 0; b < 256; ++b) {
    if (by_first[b].empty()) continue;
    std::string prefix = placeholders[by_first[b][0]];
    for (const std::uint32_t s : by_first[b]) {
      const std::string& p = placeholders[s];
      std::size_t k = 0;
      while (k < prefix.size() && k < p.size() && prefix[k] == p[k]) ++k;
      prefix.resize(k);
    }
    const std::size_t l = prefix.size();
    auto next_of = [&](std::uint32_t s) -> std::uint16_t {
      const std::string& p = placeholders[s];
      return p.size() > l ? static_cast<unsigned char>(p[l]) : 256;
    };
    std::stable_sort(by_first[b].begin(), by_first[b].end(),
                     [&](std::uint32_t x, std::uint32_t y) { return next_of(x) < next_of(y); });
    for (const std::uint32_t s : by_first[b]) next_byte[b].push_back(next_of(s));
    common_prefix[b] = std::move(prefix);
  }
  trigger['%'] |= kTriggerEscape;
  trigger['\\'] |= kTriggerEscape;
  for (int b = 0; b < 256; ++b) {
    if (trigger[b]) trigger_bytes.push_back(static_cast<unsigned char>(b));
    if (trigger[b] & kTriggerRaw) raw_first_bytes.push_back(static_cast<unsigned char>(b));
  }
  max_form = 6 * max_placeholder;
  base64_pair_bits.assign(65536 / 64, 0);
  auto key_of = [](const Base64Form& f) {
    return static_cast<std::uint32_t>(pair_key(static_cast<unsigned char>(f.text[0]), static_cast<unsigned char>(f.text[1])));
  };
  std::stable_sort(base64_forms.begin(), base64_forms.end(),
                   [&](const Base64Form& x, const Base64Form& y) { return key_of(x) < key_of(y); });
  for (const Base64Form& f : base64_forms) {
    const std::uint32_t key = key_of(f);
    base64_keys.push_back(key);
    base64_pair_bits[key / 64] |= std::uint64_t{1} << (key % 64);
  }
  build_base64_filter(*this);
}

std::size_t next_trigger(const SecretSet::Compiled& c, const unsigned char* data, std::size_t from,
                         std::size_t size, bool raw_only) noexcept {
  const std::vector<unsigned char>& bytes = raw_only ? c.raw_first_bytes : c.trigger_bytes;
  std::size_t i = from;
  if (bytes.empty()) return size;
  const std::size_t nb = bytes.size();
  if (nb <= 4) {
    const __m128i v0 = _mm_set1_epi8(static_cast<char>(bytes[0]));
    const __m128i v1 = _mm_set1_epi8(static_cast<char>(bytes[std::min<std::size_t>(1, nb - 1)]));
    const __m128i v2 = _mm_set1_epi8(static_cast<char>(bytes[std::min<std::size_t>(2, nb - 1)]));
    const __m128i v3 = _mm_set1_epi8(static_cast<char>(bytes[std::min<std::size_t>(3, nb - 1)]));
    while (i + 32 <= size) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i + 16));
      const __m128i ma = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(a, v0), _mm_cmpeq_epi8(a, v1)),
                                      _mm_or_si128(_mm_cmpeq_epi8(a, v2), _mm_cmpeq_epi8(a, v3)));
      const __m128i mb = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(b, v0), _mm_cmpeq_epi8(b, v1)),
                                      _mm_or_si128(_mm_cmpeq_epi8(b, v2), _mm_cmpeq_epi8(b, v3)));
      const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(ma)) |
                            (static_cast<unsigned>(_mm_movemask_epi8(mb)) << 16);
      if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(mask));
      i += 32;
    }
  } else if (nb <= 8) {
    __m128i v[8];
    for (std::size_t k = 0; k < 8; ++k) v[k] = _mm_set1_epi8(static_cast<char>(bytes[std::min(k, nb - 1)]));
    while (i + 16 <= size) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + i));
      __m128i m = _mm_cmpeq_epi8(a, v[0]);
      for (std::size_t k = 1; k < 8; ++k) m = _mm_or_si128(m, _mm_cmpeq_epi8(a, v[k]));
      const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(m));
      if (mask != 0) return i + static_cast<std::size_t>(__builtin_ctz(mask));
      i += 16;
    }
  }
  const std::uint8_t bits = raw_only ? SecretSet::Compiled::kTriggerRaw : 0xff;
  for (; i < size; ++i) {
    if (c.trigger[data[i]] & bits) return i;
  }
  return size;
}

std::span<const std::uint32_t> raw_candidates(const SecretSet::Compiled& c, const unsigned char* d, std::size_t n,
                                              std::size_t p) noexcept {
  const unsigned char b = d[p];
  const std::vector<std::uint32_t>& all = c.by_first[b];
  if (all.size() <= 1) return all;
  const std::string& prefix = c.common_prefix[b];
  const std::size_t l = prefix.size();
  if (n - p <= l) return all;
  if (std::memcmp(d + p, prefix.data(), l) != 0) return {};
  const std::vector<std::uint16_t>& next = c.next_byte[b];
  const auto range = std::equal_range(next.begin(), next.end(), static_cast<std::uint16_t>(d[p + l]));
  return std::span<const std::uint32_t>(all.data() + (range.first - next.begin()),
                                        static_cast<std::size_t>(range.second - range.first));
}

Match match_at(const SecretSet::Compiled& c, const unsigned char* d, std::size_t n, std::size_t p,
               const std::uint8_t* want) noexcept {
  Match result;
  if (p >= n) return result;
  const unsigned char b = d[p];
  unsigned char firsts[3];
  std::size_t nf = 0;
  bool partial = false;
  bool raw_list_done = false;  // by_first[b] tried in full
  // Tries each wanted candidate at p; true (with result filled) on the first full match.
  const auto try_candidates = [&](std::span<const std::uint32_t> candidates) noexcept {
    for (const std::uint32_t s : candidates) {
      if (want != nullptr && want[s] == 0) continue;
      std::uint32_t length = 0;
      std::uint8_t forms = 0;
      const Match::Kind k = match_one(c.placeholders[s], d, n, p, &length, &forms);
      if (k == Match::kFound) {
        result.kind = Match::kFound;
        result.secret = s;
        result.length = length;
        result.forms = forms;
        return true;
      }
      if (k == Match::kPartial) partial = true;
    }
    return false;
  };
  if (c.trigger[b] & SecretSet::Compiled::kTriggerRaw) {
    // Quick reject of the raw candidates in the common case: a raw first byte (e.g. `$`) not
    // followed by the prefix every candidate shares, and no escape that could encode the rest.
    const std::string& prefix = c.common_prefix[b];
    const std::size_t cmp = std::min(prefix.size(), n - p);
    std::size_t j = 1;
    while (j < cmp && d[p + j] == static_cast<unsigned char>(prefix[j])) ++j;
    bool escape = false;
    const std::size_t upto = std::min(j + 1, n - p);
    for (std::size_t k = 1; !escape && k < upto; ++k) escape = d[p + k] == '%' || d[p + k] == '\\';
    raw_list_done = escape;
    if (escape || j >= cmp) {
      // Without escapes in reach, only the raw candidates narrowed by the next byte can match.
      const std::span<const std::uint32_t> cands =
          escape ? std::span<const std::uint32_t>(c.by_first[b]) : raw_candidates(c, d, n, p);
      if (try_candidates(cands)) return result;
    }
  }
  if (b == '%') {
    unsigned char v = 0;
    const int r = decode_percent(d, n, p, &v);
    if (r < 0) partial = true;
    else if (r > 0) firsts[nf++] = v;
  } else if (b == '\\') {
    std::uint32_t cp = 0;
    const int r = decode_json_u(d, n, p, &cp);
    if (r < 0) {
      partial = true;
    } else if (r > 0) {
      unsigned char u[3];
      if (utf8_encode(cp, u) > 0) firsts[nf++] = u[0];
    } else if (is_short_json_escape(d[p + 1])) {
      firsts[nf++] = d[p + 1];
    }
  }
  for (std::size_t f = 0; f < nf; ++f) {
    if (firsts[f] == b && raw_list_done) continue;
    if (try_candidates(c.by_first[firsts[f]])) return result;
  }
  if (partial) result.kind = Match::kPartial;
  return result;
}

// One carry for both searches: the stream from the first position where a form of either kind
// (raw/percent/JSON, or base64) may still begin. A match is reported only when no form still open
// starts before it, so that any split of the stream reports the same first match as one feed.
bool StreamDetector::feed(std::string_view data, const std::uint8_t* want, Match* found, std::uint64_t* found_at) {
  const SecretSet::Compiled& c = *c_;
  constexpr std::uint64_t kNowhere = ~std::uint64_t{0};
  const std::uint64_t start = offset_ - carry_.size();  // stream offset of carry_[0]
  Match best;
  std::uint64_t best_at = kNowhere;
  auto offer = [&](const Match& m, std::uint64_t at) {
    if (at < best_at) {
      best = m;
      best_at = at;
    }
  };
  auto first_form = [&](const unsigned char* d, std::size_t n, std::size_t limit, std::uint64_t base) {
    bool hit = false;
    const std::size_t stop = scan_forms(c, d, 0, n, limit, want, false, [&](std::size_t pos, const Match& m) {
      offer(m, base + pos);
      hit = true;
      return false;
    });
    return hit ? n : stop;  // where a form is still open (n: none)
  };
  std::uint64_t open_at = kNowhere;  // the first position where a raw form is still open
  bool data_scanned = false;
  if (!carry_.empty()) {
    // Forms that begin in the carry end within the next max_form bytes.
    window_.assign(carry_);
    window_.append(data.substr(0, std::min(data.size(), c.max_form)));
    const auto* w = reinterpret_cast<const unsigned char*>(window_.data());
    const std::size_t stop = first_form(w, window_.size(), carry_.size(), start);
    if (stop < carry_.size()) {
      open_at = start + stop;  // still open: then all of `data` is in the window
      data_scanned = true;     // and the raw scan resumes there next time
    }
    std::size_t at = 0;
    if (!c.base64_forms.empty()) {
      const Match m = find_base64_form(c, window_, want, &at);
      if (m.kind == Match::kFound && at < carry_.size()) offer(m, start + at);
    }
  }
  const auto* d = reinterpret_cast<const unsigned char*>(data.data());
  if (!data_scanned) {
    const std::size_t stop = first_form(d, data.size(), data.size(), offset_);
    if (stop < data.size()) open_at = std::min(open_at, offset_ + stop);
  }
  if (!c.base64_forms.empty()) {
    std::size_t at = 0;
    const Match m = find_base64_form(c, data, want, &at);
    if (m.kind == Match::kFound) offer(m, offset_ + at);
    // The tail of the stream that may begin a base64 form.
    const std::size_t keep = c.max_base64_form - 1;
    std::string_view tail;
    if (data.size() >= keep) {
      tail = data.substr(data.size() - keep);
    } else {
      window_.assign(carry_);
      window_.append(data);
      tail = std::string_view(window_).substr(window_.size() - std::min(window_.size(), keep));
    }
    const std::size_t p = base64_partial_start(c, tail, want);
    if (p < tail.size()) open_at = std::min(open_at, offset_ + data.size() - (tail.size() - p));
  }
  if (best_at != kNowhere && best_at < open_at) {
    *found = best;
    *found_at = best_at;
    return false;
  }
  // Keep the stream from the first open form (a match after it waits for the form to settle).
  const std::uint64_t end = offset_ + data.size();
  if (open_at == kNowhere) {
    carry_.clear();
  } else if (open_at >= offset_) {
    carry_.assign(data.substr(static_cast<std::size_t>(open_at - offset_)));
  } else {
    window_.assign(carry_, static_cast<std::size_t>(open_at - start), std::string::npos);
    window_.append(data);
    carry_.swap(window_);
  }
  offset_ = end;
  return true;
}

bool StreamDetector::finish(const std::uint8_t* want, Match* found, std::uint64_t* found_at) {
  if (carry_.empty()) return true;
  bool hit = false;
  const std::uint64_t start = offset_ - carry_.size();
  const auto* w = reinterpret_cast<const unsigned char*>(carry_.data());
  scan_forms(*c_, w, 0, carry_.size(), carry_.size(), want, true, [&](std::size_t pos, const Match& m) {
    hit = true;
    *found = m;
    *found_at = start + pos;
    return false;
  });
  // A base64 form whole in the carry (one still open at the end is no form).
  std::size_t at = 0;
  const Match m = c_->base64_forms.empty() ? Match{} : find_base64_form(*c_, carry_, want, &at);
  if (m.kind == Match::kFound && (!hit || start + at < *found_at)) {
    hit = true;
    *found = m;
    *found_at = start + at;
  }
  carry_.clear();
  return !hit;
}

Match find_base64_form(const SecretSet::Compiled& c, std::string_view text, const std::uint8_t* want,
                       std::size_t* at) noexcept {
  Match result;
  if (c.base64_forms.empty()) return result;
  const auto* t = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size(), stride = c.base64_stride;
  // Sampled positions a; a form found through a starts in (a - stride, a]: these windows are
  // disjoint and in order, so the first form found is the first in the text.
  const std::uint64_t* filter = c.base64_filter.data();
  const unsigned shift = c.base64_filter_shift;
  auto passes = [&](std::size_t a) {
    const std::uint32_t bit = b64_gram_hash(t + a) >> shift;
    return (filter[bit / 64] >> (bit % 64)) & 1;
  };
  auto check = [&](std::size_t a) {
    const std::size_t from = a + 1 >= stride ? a + 1 - stride : 0;
    return base64_form_in(c, text, from, a + 1, want, &result, at);
  };
  std::size_t a = 0;
  // Four samples per step, independent of each other (the filter rarely passes one).
  for (; a + 3 * stride + kB64Gram <= n; a += 4 * stride) {
    const std::uint64_t any = passes(a) | passes(a + stride) | passes(a + 2 * stride) | passes(a + 3 * stride);
    if (any == 0) continue;
    for (std::size_t k = 0; k < 4; ++k) {
      if (passes(a + k * stride) && check(a + k * stride)) return result;
    }
  }
  for (; a + kB64Gram <= n; a += stride) {
    if (passes(a) && check(a)) return result;
  }
  return result;
}

namespace {
// The first wanted form starting in [from, to) of `text` (checked position by position).
bool base64_form_in(const SecretSet::Compiled& c, std::string_view text, std::size_t from, std::size_t to,
                    const std::uint8_t* want, Match* found, std::size_t* at) noexcept {
  Match& result = *found;
  const auto* t = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = from; i < to && i + 1 < text.size(); ++i) {
    const std::size_t key = pair_key(t[i], t[i + 1]);
    if ((c.base64_pair_bits[key / 64] & (std::uint64_t{1} << (key % 64))) == 0) continue;
    const auto range = std::equal_range(c.base64_keys.begin(), c.base64_keys.end(), static_cast<std::uint32_t>(key));
    for (auto it = range.first; it != range.second; ++it) {
      const auto& f = c.base64_forms[static_cast<std::size_t>(it - c.base64_keys.begin())];
      if (want != nullptr && want[f.secret] == 0) continue;
      if (f.text.size() > text.size() - i) continue;
      bool eq = true;
      for (std::size_t k = 0; k < f.text.size() && eq; ++k) {
        eq = fold_b64(t[i + k]) == static_cast<unsigned char>(f.text[k]);
      }
      if (eq) {
        result.kind = Match::kFound;
        result.secret = f.secret;
        result.length = static_cast<std::uint32_t>(f.text.size());
        result.forms = kFormBase64;
        *at = i;
        return true;
      }
    }
  }
  return false;
}
}  // namespace

std::size_t base64_partial_start(const SecretSet::Compiled& c, std::string_view text, const std::uint8_t* want) noexcept {
  const std::size_t n = text.size();
  if (c.base64_forms.empty() || n == 0) return n;
  const auto* t = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t p = n - std::min(n, c.max_base64_form - 1); p < n; ++p) {
    if (kB64Value[t[p]] == 0xff) continue;
    // Forms whose first two characters agree with text[p, p + 2) (just the first when one is left).
    const std::uint32_t lo = static_cast<std::uint32_t>(p + 1 < n ? pair_key(t[p], t[p + 1]) : pair_key(t[p], 0));
    const std::uint32_t hi = p + 1 < n ? lo : lo | 0xff;
    const auto first = std::lower_bound(c.base64_keys.begin(), c.base64_keys.end(), lo);
    for (auto it = first; it != c.base64_keys.end() && *it <= hi; ++it) {
      const auto& f = c.base64_forms[static_cast<std::size_t>(it - c.base64_keys.begin())];
      if (want != nullptr && want[f.secret] == 0) continue;
      const std::size_t len = n - p;
      if (len >= f.text.size()) continue;  // a whole form would have been found
      bool eq = true;
      for (std::size_t k = 0; k < len && eq; ++k) eq = fold_b64(t[p + k]) == static_cast<unsigned char>(f.text[k]);
      if (eq) return p;
    }
  }
  return n;
}

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  const auto* d = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (std::uint32_t{d[i]} << 16) | (std::uint32_t{d[i + 1]} << 8) | d[i + 2];
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(kB64[(v >> 6) & 63]);
    out.push_back(kB64[v & 63]);
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = std::uint32_t{d[i]} << 16;
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t v = (std::uint32_t{d[i]} << 16) | (std::uint32_t{d[i + 1]} << 8);
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(kB64[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

bool base64_decode(std::string_view text, std::string& out) {
  out.clear();
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return false;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char ch : text) {
    const std::uint8_t v = kB64Value[static_cast<unsigned char>(ch)];
    if (v == 0xff) return false;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

void percent_encode_append(std::string_view bytes, std::string& out) {
  static constexpr char kUpperHex[] = "0123456789ABCDEF";
  for (const char ch : bytes) {
    const auto b = static_cast<unsigned char>(ch);
    const bool unreserved = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') ||
                            b == '-' || b == '.' || b == '_' || b == '~';
    if (unreserved) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kUpperHex[b >> 4]);
      out.push_back(kUpperHex[b & 15]);
    }
  }
}

// One pass over the whole buffer (bytes past size() may have held a value too), as
// reserve_wiped does: explicit_bzero is not optimized away. (This was resize(capacity), a
// zero-fill of the bytes past size(), then OPENSSL_cleanse over all of them: two passes.)
void wipe(std::string& s) noexcept {
  if (s.capacity() == 0) return;
  explicit_bzero(s.data(), s.capacity());
  s.clear();
}

}  // namespace airlock::secrets
