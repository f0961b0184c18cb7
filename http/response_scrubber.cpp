#include <http/response_scrubber.hpp>

#include <openssl/crypto.h>

#include <emmintrin.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <vector>

namespace airlock::http {
namespace {

// kPercentAll: every byte as %XX; kUnicodeAll: every character as \\uXXXX; kHex: two hex digits per
// byte. Those three, and the percent and JSON forms when they hold an escape with hex digits, are
// matched ignoring ASCII case (see folded()).
enum class Form { kRaw, kBase64, kBase64Url, kJson, kJsonSlash, kPercent, kPercentAll, kUnicodeAll, kHex };

constexpr char kBase64Chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kBase64UrlChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr char kLowerHex[] = "0123456789abcdef";
constexpr char kUpperHex[] = "0123456789ABCDEF";

bool is_unreserved(unsigned char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// The code points of well-formed UTF-8 (no overlongs, surrogates or values above U+10FFFF).
bool utf8_code_points(std::string_view s, std::vector<unsigned>& out) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    const std::size_t n = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    unsigned cp = n == 1 ? b0 : b0 & (0x7F >> n);
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b >> 6) != 2) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr unsigned kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out.push_back(cp);
    i += n;
  }
  return true;
}

// Writes one form of `value` through put(char), so a caller can size a buffer, then fill it,
// without a growing string leaving copies behind. For base64, `shift` unknown bytes precede the
// value; only the characters made of value bits alone are written.
template <typename Put>
void encode(Form form, std::size_t shift, std::string_view value, Put&& put) {
  switch (form) {
    case Form::kRaw:
      for (char c : value) put(c);
      return;
    case Form::kBase64:
    case Form::kBase64Url: {
      const char* chars = form == Form::kBase64 ? kBase64Chars : kBase64UrlChars;
      auto byte = [&](std::size_t i) -> unsigned {
        return i >= shift && i - shift < value.size() ? static_cast<unsigned char>(value[i - shift]) : 0u;
      };
      // Character j holds bits [6j, 6j + 6) of the shifted bytes.
      const std::size_t begin = (8 * shift + 5) / 6;
      const std::size_t end = 8 * (shift + value.size()) / 6;
      for (std::size_t j = begin; j < end; ++j) {
        const std::size_t b = 6 * j / 8, off = 6 * j % 8;
        const unsigned window = (byte(b) << 8) | byte(b + 1);
        put(chars[(window >> (10 - off)) & 63]);
      }
      return;
    }
    case Form::kJson:
    case Form::kJsonSlash:
      for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        const char* shortcut = c == '"'    ? "\\\""
                               : c == '\\' ? "\\\\"
                               : c == '\b' ? "\\b"
                               : c == '\f' ? "\\f"
                               : c == '\n' ? "\\n"
                               : c == '\r' ? "\\r"
                               : c == '\t' ? "\\t"
                               : c == '/' && form == Form::kJsonSlash ? "\\/"
                                                                      : nullptr;
        if (shortcut != nullptr) {
          put(shortcut[0]);
          put(shortcut[1]);
        } else if (c < 0x20) {
          for (char x : {'\\', 'u', '0', '0', kLowerHex[c >> 4], kLowerHex[c & 15]}) put(x);
        } else {
          put(ch);
        }
      }
      return;
    case Form::kPercentAll:
      for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        for (char x : {'%', kLowerHex[c >> 4], kLowerHex[c & 15]}) put(x);
      }
      return;
    case Form::kHex:
      for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        put(kLowerHex[c >> 4]);
        put(kLowerHex[c & 15]);
      }
      return;
    case Form::kUnicodeAll: {
      // A JSON encoder escapes code points: UTF-16 units, surrogate pairs above U+FFFF. A value
      // that is not valid UTF-8 is taken byte by byte (as Latin-1 would be).
      const auto unit = [&](unsigned u) {
        for (char x : {'\\', 'u', kLowerHex[(u >> 12) & 15], kLowerHex[(u >> 8) & 15], kLowerHex[(u >> 4) & 15],
                       kLowerHex[u & 15]})
          put(x);
      };
      std::vector<unsigned> points;
      if (!utf8_code_points(value, points)) {
        points.clear();
        for (char ch : value) points.push_back(static_cast<unsigned char>(ch));
      }
      for (unsigned cp : points) {
        if (cp < 0x10000) {
          unit(cp);
        } else {
          unit(0xD800 + ((cp - 0x10000) >> 10));
          unit(0xDC00 + ((cp - 0x10000) & 0x3FF));
        }
      }
      OPENSSL_cleanse(points.data(), points.size() * sizeof(unsigned));
      return;
    }
    case Form::kPercent:
      for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c)) {
          put(ch);
        } else {
          put('%');
          put(kUpperHex[c >> 4]);
          put(kUpperHex[c & 15]);
        }
      }
      return;
  }
}

struct FormSpec {
  Form form;
  std::size_t shift;
};
constexpr FormSpec kFormSpecs[] = {
    {Form::kRaw, 0},       {Form::kBase64, 0},    {Form::kBase64, 1},    {Form::kBase64, 2},
    {Form::kBase64Url, 0}, {Form::kBase64Url, 1}, {Form::kBase64Url, 2}, {Form::kJson, 0},
    {Form::kJsonSlash, 0}, {Form::kPercent, 0},    {Form::kPercentAll, 0}, {Form::kUnicodeAll, 0},
    {Form::kHex, 0},
};

// Whether a form is matched ignoring ASCII case: those whose escapes carry hex digits, which
// encoders write in either case (and some mix). The letters of the value in a partly encoded
// form are then matched ignoring case too: a case variant of the value next to the escape is
// masked as well, which costs the guest nothing it may see.
bool folded(Form form, std::string_view text) {
  switch (form) {
    case Form::kPercentAll:
    case Form::kUnicodeAll:
    case Form::kHex:
      return true;
    case Form::kPercent:
      return text.find('%') != std::string_view::npos;
    case Form::kJson:
    case Form::kJsonSlash:
      return text.find("\\u") != std::string_view::npos;
    default:
      return false;
  }
}

constexpr unsigned char fold(unsigned char c) noexcept { return c >= 'A' && c <= 'Z' ? c | 0x20 : c; }
// The filter hashes every byte with bit 5 set, so a gram and its case variants share a hash.
constexpr std::uint32_t kFoldMask = 0x20202020u;
constexpr std::size_t kMaxStride = 64;
// A base64 form this short is a piece of a value, too common to mask.
constexpr std::size_t kMinBase64Form = 4;

std::uint32_t load_u32(const unsigned char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The filter's hash of the `gram` (1-4) bytes at `piece`.
std::uint32_t hash_piece(const unsigned char* piece, std::size_t gram) noexcept {
  std::uint32_t g = 0;
  if (gram == 4) {
    g = load_u32(piece) | kFoldMask;
  } else {
    for (std::size_t i = 0; i < gram; ++i) g = (g << 8) | piece[i] | 0x20u;
  }
  return g * 0x9E3779B1u;
}

// The first i in [from, to) with d[i] one of `bytes`, else `to`; d[0, readable) may be read (the
// last block of fewer than 16 positions is read whole when it lies inside, its excess masked).
std::size_t next_of(const std::array<unsigned char, 4>& bytes, const unsigned char* d, std::size_t from, std::size_t to,
                    std::size_t readable) noexcept {
  const __m128i v0 = _mm_set1_epi8(static_cast<char>(bytes[0]));
  const __m128i v1 = _mm_set1_epi8(static_cast<char>(bytes[1]));
  const __m128i v2 = _mm_set1_epi8(static_cast<char>(bytes[2]));
  const __m128i v3 = _mm_set1_epi8(static_cast<char>(bytes[3]));
  const auto hits = [&](std::size_t i) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
    const __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(a, v0), _mm_cmpeq_epi8(a, v1)),
                                   _mm_or_si128(_mm_cmpeq_epi8(a, v2), _mm_cmpeq_epi8(a, v3)));
    return static_cast<unsigned>(_mm_movemask_epi8(m));
  };
  std::size_t i = from;
  for (; i + 16 <= to; i += 16) {
    if (const unsigned mask = hits(i); mask != 0) return i + static_cast<std::size_t>(std::countr_zero(mask));
  }
  if (i < to && i + 16 <= readable) {
    const unsigned mask = hits(i) & ((1u << (to - i)) - 1);
    return mask != 0 ? i + static_cast<std::size_t>(std::countr_zero(mask)) : to;
  }
  for (; i < to; ++i) {
    if (std::find(bytes.begin(), bytes.end(), d[i]) != bytes.end()) return i;
  }
  return to;
}

// The first i in [from, size) where a form starting with d[i] is longer than the size - i bytes
// left (reach: the longest form per first byte), else `size`. Four positions per test.
std::size_t next_reaching(const std::uint32_t* reach, const unsigned char* d, std::size_t from, std::size_t size) noexcept {
  std::size_t i = from;
  for (; i + 4 <= size; i += 4) {
    const std::size_t x = std::max<std::size_t>(reach[d[i]] + i, reach[d[i + 1]] + i + 1);
    const std::size_t y = std::max<std::size_t>(reach[d[i + 2]] + i + 2, reach[d[i + 3]] + i + 3);
    if (std::max(x, y) > size) break;
  }
  for (; i < size; ++i) {
    if (reach[d[i]] + i > size) return i;
  }
  return size;
}

enum class Relation { kNone, kPartial, kFull };

// Whether x and y agree on their first k bytes. A loop, not memcmp: the edge checks call this
// for many candidates that differ within a byte or two.
bool same_start(const char* x, const char* y, std::size_t k) noexcept {
  std::size_t i = 0;
  while (i < k && x[i] == y[i]) ++i;
  return i == k;
}

// The same for a lower-case form and bytes x of any case.
bool same_start_folded(const char* form, const char* x, std::size_t k) noexcept {
  std::size_t i = 0;
  while (i < k && form[i] == static_cast<char>(fold(static_cast<unsigned char>(x[i])))) ++i;
  return i == k;
}

bool same_start(const char* form, const char* x, std::size_t k, bool folded) noexcept {
  return folded ? same_start_folded(form, x, k) : same_start(form, x, k);
}

// How `form` relates to the bytes a then b: it spans them from their start (kFull), they end
// while still matching it (kPartial), or they differ from it.
Relation relate(std::string_view form, bool folded, std::string_view a, std::string_view b) noexcept {
  const std::size_t k = std::min(form.size(), a.size());
  if (!same_start(form.data(), a.data(), k, folded)) return Relation::kNone;
  const std::string_view rest = form.substr(k);
  const std::size_t k2 = std::min(rest.size(), b.size());
  if (!same_start(rest.data(), b.data(), k2, folded)) return Relation::kNone;
  return k2 == rest.size() ? Relation::kFull : Relation::kPartial;
}

// Masks found while scrubbing in place are applied once every occurrence is found: matching reads
// the very bytes masking overwrites (an occurrence overlapping one already masked would be missed).
// One bit per output byte, per thread (scrubbing never suspends); cleared as they are applied.
class MaskMarks {
 public:
  void mark(std::size_t lo, std::size_t hi) {
    if (bits_.size() * 64 < hi) bits_.resize((hi + 63) / 64);
    lo_ = std::min(lo_, lo);
    hi_ = std::max(hi_, hi);
    for (std::size_t i = lo; i < hi;) {
      const std::size_t bit = i % 64, k = std::min<std::size_t>(64 - bit, hi - i);
      bits_[i / 64] |= (k == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << k) - 1) << bit;
      i += k;
    }
  }
  // Writes `mask` over every marked byte of `out` (offsets as marked), then forgets the marks.
  void apply(char* out, char mask) {
    if (lo_ >= hi_) return;
    for (std::size_t w = lo_ / 64; w < (hi_ + 63) / 64; ++w) {
      std::uint64_t word = bits_[w];
      bits_[w] = 0;
      while (word != 0) {
        const int bit = std::countr_zero(word);
        const int run = std::countr_one(word >> bit);  // ones from `bit` up
        std::memset(out + w * 64 + static_cast<std::size_t>(bit), mask, static_cast<std::size_t>(run));
        word &= run + bit >= 64 ? 0 : ~std::uint64_t{0} << (run + bit);
      }
    }
    lo_ = SIZE_MAX;
    hi_ = 0;
  }

 private:
  std::vector<std::uint64_t> bits_;
  std::size_t lo_ = SIZE_MAX, hi_ = 0;
};

MaskMarks& mask_marks() {
  thread_local MaskMarks marks;
  return marks;
}

}  // namespace

namespace {
std::vector<std::string_view> values_of(const std::vector<SecretBinding>& secrets) {
  std::vector<std::string_view> out;
  out.reserve(secrets.size());
  for (const SecretBinding& s : secrets) out.push_back(s.value().expose());
  return out;
}
}  // namespace

ScrubForms::ScrubForms(const std::vector<SecretBinding>& secrets) : ScrubForms(OfValues{}, values_of(secrets)) {}

ScrubForms::ScrubForms(OfValues, const std::vector<std::string_view>& values) {
  // All forms go into one locked buffer: size them, then write them.
  std::vector<std::size_t> sizes;
  std::size_t total = 0;
  for (const std::string_view value : values) {
    for (const FormSpec& spec : kFormSpecs) {
      std::size_t n = 0;
      encode(spec.form, spec.shift, value, [&](char) { ++n; });
      sizes.push_back(n);
      total += n;
    }
  }
  std::string buffer(total, '\0');
  std::size_t at = 0;
  for (const std::string_view value : values) {
    for (const FormSpec& spec : kFormSpecs) encode(spec.form, spec.shift, value, [&](char c) { buffer[at++] = c; });
  }
  // Forms matched ignoring case are kept lower-case.
  at = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    char* text = buffer.data() + at;
    at += sizes[i];
    if (!folded(kFormSpecs[i % std::size(kFormSpecs)].form, std::string_view(text, sizes[i]))) continue;
    for (std::size_t k = 0; k < sizes[i]; ++k) text[k] = static_cast<char>(fold(static_cast<unsigned char>(text[k])));
  }
  form_bytes_ = SecretValue::take(buffer);

  const std::string_view all = form_bytes_.expose();
  at = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::string_view text = all.substr(at, sizes[i]);
    at += sizes[i];
    const Form form = kFormSpecs[i % std::size(kFormSpecs)].form;
    const bool base64 = form == Form::kBase64 || form == Form::kBase64Url;
    if (text.empty() || (base64 && text.size() < kMinBase64Form)) continue;
    const bool fold_case = folded(form, text);
    bool seen = false;  // two values, or forms, alike
    for (std::size_t k = 0; k < forms_.size() && !seen; ++k) seen = forms_[k] == text && folded_[k] == fold_case;
    if (seen) continue;
    const auto index = static_cast<std::uint32_t>(forms_.size());
    const auto first = static_cast<unsigned char>(text[0]);
    const auto length = static_cast<std::uint32_t>(std::min<std::size_t>(text.size(), UINT32_MAX));
    by_first_byte_[first].push_back(index);
    reach_[first] = std::max(reach_[first], length);
    if (fold_case && first >= 'a' && first <= 'z') {
      by_first_byte_[first - 0x20].push_back(index);
      reach_[first - 0x20] = std::max(reach_[first - 0x20], length);
    }
    forms_.push_back(text);
    folded_.push_back(fold_case);
    shortest_ = shortest_ == 0 ? text.size() : std::min(shortest_, text.size());
    longest_ = std::max(longest_, text.size());
  }
  if (forms_.empty()) return;
  build_table();
  std::array<unsigned, 256> order;
  for (unsigned b = 0; b < 256; ++b) order[b] = b;
  std::stable_sort(order.begin(), order.end(), [&](unsigned x, unsigned y) { return reach_[x] > reach_[y]; });
  for (std::size_t k = 0; k < far_bytes_.size(); ++k) {
    far_bytes_[k] = static_cast<unsigned char>(reach_[order[k]] > 0 ? order[k] : order[0]);
  }
  near_reach_ = reach_[order[far_bytes_.size()]];
}

void ScrubForms::build_table() {
  gram_ = std::min<std::size_t>(4, shortest_);
  // Any stride up to shortest_ - gram_ + 1 finds every occurrence; the cap bounds the table for
  // long values (keys, certificates).
  stride_ = std::min<std::size_t>(shortest_ - gram_ + 1, kMaxStride);
  const std::size_t entries = forms_.size() * stride_;
  // At 32 filter bits per pair, about 3 % of the sampled positions of unrelated data pass it;
  // buckets hold about one pair.
  const auto log2_ceil = [](std::size_t x, unsigned lo, unsigned hi) {
    return std::clamp(static_cast<unsigned>(std::bit_width(x - 1)), lo, hi);
  };
  const unsigned filter_log = log2_ceil(32 * entries, 9, 24);
  const unsigned bucket_log = log2_ceil(entries, 4, 20);
  filter_shift_ = 32 - filter_log;
  bucket_shift_ = 32 - bucket_log;
  const std::size_t filter_bytes = (std::size_t{1} << filter_log) / 8;
  const std::size_t buckets = std::size_t{1} << bucket_log;

  std::string table(filter_bytes + (buckets + 1) * 4 + entries * sizeof(Sample), '\0');
  unsigned char* filter = reinterpret_cast<unsigned char*>(table.data());
  unsigned char* starts = filter + filter_bytes;
  unsigned char* samples = starts + (buckets + 1) * 4;
  auto each_sample = [&](auto&& visit) {
    for (std::uint32_t f = 0; f < forms_.size(); ++f) {
      for (std::uint32_t o = 0; o < stride_; ++o) {
        visit(hash_piece(reinterpret_cast<const unsigned char*>(forms_[f].data()) + o, gram_), Sample{f, o});
      }
    }
  };
  // Counting sort of the pairs by bucket.
  std::vector<std::uint32_t> fill(buckets + 1, 0);
  each_sample([&](std::uint32_t hash, Sample) {
    filter[(hash >> filter_shift_) / 8] |= static_cast<unsigned char>(1u << ((hash >> filter_shift_) % 8));
    ++fill[(hash >> bucket_shift_) + 1];
  });
  for (std::size_t b = 0; b < buckets; ++b) fill[b + 1] += fill[b];
  std::memcpy(starts, fill.data(), (buckets + 1) * 4);
  each_sample([&](std::uint32_t hash, Sample s) {
    std::memcpy(samples + std::size_t{fill[hash >> bucket_shift_]++} * sizeof(Sample), &s, sizeof s);
  });
  OPENSSL_cleanse(fill.data(), fill.size() * sizeof(fill[0]));
  table_ = SecretValue::take(table);
  filter_ = reinterpret_cast<const unsigned char*>(table_.expose().data());
  starts_ = filter_ + filter_bytes;
  samples_ = starts_ + (buckets + 1) * 4;
}

template <typename OnMatch>
void ScrubForms::find_all(std::string_view data, OnMatch&& on_match) const noexcept {
  const auto* d = reinterpret_cast<const unsigned char*>(data.data());
  const std::size_t n = data.size();
  if (forms_.empty() || n < shortest_) return;
  // Locals, so the loop does not reload members after each write to the output.
  const unsigned char* const filter = filter_;
  const unsigned char* const starts = starts_;
  const unsigned char* const samples = samples_;
  const unsigned filter_shift = filter_shift_, bucket_shift = bucket_shift_;
  const std::size_t gram = gram_, stride = stride_, last_sample = n - gram;
  for (std::size_t a = 0; a <= last_sample; a += stride) {
    const std::uint32_t hash = hash_piece(d + a, gram);
    const std::uint32_t bit = hash >> filter_shift;
    if ((filter[bit / 8] & (1u << (bit % 8))) == 0) continue;
    const std::size_t bucket = hash >> bucket_shift;
    const std::uint32_t first = load_u32(starts + bucket * 4), last = load_u32(starts + bucket * 4 + 4);
    for (std::uint32_t i = first; i < last; ++i) {
      Sample s;
      std::memcpy(&s, samples + std::size_t{i} * sizeof(Sample), sizeof s);
      const std::string_view form = forms_[s.form];
      if (s.offset > a || a - s.offset + form.size() > n) continue;
      // Most pairs here only share the hash: compare the sampled piece before the whole form.
      const auto* piece = reinterpret_cast<const unsigned char*>(form.data()) + s.offset;
      if (gram == 4 && (load_u32(piece) | kFoldMask) != (load_u32(d + a) | kFoldMask)) continue;
      const std::size_t p = a - s.offset;
      const bool match = folded_[s.form] ? same_start_folded(form.data(), data.data() + p, form.size())
                                         : std::memcmp(d + p, form.data(), form.size()) == 0;
      if (match) on_match(p, p + form.size());
    }
  }
}

ResponseScrubber::ResponseScrubber(const ScrubForms& forms)
    : forms_(&forms), held_(forms.longest() > 0 ? forms.longest() - 1 : 0) {}

ResponseScrubber::~ResponseScrubber() {
  if (!held_.empty()) OPENSSL_cleanse(held_.data(), held_.size());
}

void ResponseScrubber::feed(std::string_view in, std::string& out) { scrub(in, out, false); }

void ResponseScrubber::flush(std::string& out) { scrub({}, out, true); }

void ResponseScrubber::scrub_in_place(std::string& buf, std::size_t at) {
  scrub(std::string_view(buf).substr(at), buf, false, false, true);
}

void ResponseScrubber::reset() noexcept {
  if (held_size_ > 0) OPENSSL_cleanse(held_.data(), held_size_);
  held_size_ = held_emitted_ = held_masked_ = 0;
}

void ResponseScrubber::scrub_text(std::string_view in, std::string& out) {
  reset();
  scrub(in, out, true);
  reset();
}

// The stream C is the held bytes, then `in`; positions below are in C.
void ResponseScrubber::scrub(std::string_view in, std::string& out, bool flushing, bool chunk, bool in_place) {
  const ScrubForms& f = *forms_;
  // One chunk of `size` bytes: its size line now, its CRLF after the bytes.
  const auto chunk_line = [&](std::size_t size) {
    if (!chunk || size == 0) return;
    char hex[20];
    const auto r = std::to_chars(hex, hex + sizeof hex, size, 16);
    out.append(hex, r.ptr).append("\r\n");
  };
  if (f.forms_.empty()) {
    if (in_place) return;  // nothing is held: the new bytes are the output where they are
    chunk_line(in.size());
    out.append(in);
    if (chunk && !in.empty()) out.append("\r\n");
    return;
  }
  const std::size_t held = held_size_;
  const std::size_t n = held + in.size();
  const std::string_view held_bytes(reinterpret_cast<const char*>(held_.data()), held);
  // How the forms starting with C[p] relate to C[p, n); calls visit(form length, relation).
  auto relate_at = [&](std::size_t p, auto&& visit) {
    const std::string_view a = p < held ? held_bytes.substr(p) : in.substr(p - held);
    const std::string_view b = p < held ? in : std::string_view();
    for (const std::uint32_t i : f.by_first_byte_[static_cast<unsigned char>(a[0])]) {
      const std::string_view form = f.forms_[i];
      visit(form.size(), relate(form, f.folded_[i], a, b));
    }
  };

  // Whether a form may start at C[p]: every form's first gram_ bytes are in the filter, so a
  // position with that many bytes left is checked against the forms only when its bit is set.
  // This keeps the per-position checks below cheap when forms are long (full \u escapes).
  auto may_start = [&](std::size_t p) {
    const unsigned char first = p < held ? held_[p] : static_cast<unsigned char>(in[p - held]);
    if (f.by_first_byte_[first].empty()) return false;
    if (n - p < f.gram_) return true;
    if (p >= held) {
      const std::uint32_t bit = hash_piece(reinterpret_cast<const unsigned char*>(in.data()) + (p - held), f.gram_) >> f.filter_shift_;
      return (f.filter_[bit / 8] & (1u << (bit % 8))) != 0;
    }
    unsigned char gram[4];
    for (std::size_t k = 0; k < f.gram_; ++k) {
      gram[k] = p + k < held ? held_[p + k] : static_cast<unsigned char>(in[p + k - held]);
    }
    const std::uint32_t bit = hash_piece(gram, f.gram_) >> f.filter_shift_;
    return (f.filter_[bit / 8] & (1u << (bit % 8))) != 0;
  };

  // The tail to hold: from the first position whose bytes to the end are a proper prefix of some
  // form. Only a form longer than the bytes left can be one (reach_): most positions are ruled
  // out by one table read, and where at least near_reach_ bytes are left, by a search for the 4
  // far_bytes_ 16 positions at a time.
  std::size_t tail = n;
  const std::uint32_t* const reach = f.reach_.data();
  const auto holds_from = [&](std::size_t p) {
    if (!may_start(p)) return false;
    bool partial = false;
    relate_at(p, [&](std::size_t, Relation r) { partial = partial || r == Relation::kPartial; });
    return partial;
  };
  const std::size_t tail_from = n - std::min(n, f.longest_ - 1);
  for (std::size_t p = tail_from; p < held && tail == n; ++p) {
    if (reach[held_[p]] > n - p && holds_from(p)) tail = p;
  }
  if (tail == n && !in.empty()) {  // in `in`'s own positions
    const auto* bytes = reinterpret_cast<const unsigned char*>(in.data());
    const std::size_t size = in.size();
    std::size_t i = std::max(tail_from, held) - held;
    const std::size_t far_end = size >= f.near_reach_ ? std::clamp<std::size_t>(size - f.near_reach_ + 1, i, size) : i;
    while (tail == n && (i = next_of(f.far_bytes_, bytes, i, far_end, size)) < far_end) {
      if (reach[bytes[i]] > size - i && holds_from(held + i)) tail = held + i;
      ++i;
    }
    i = std::max(i, far_end);
    while (tail == n && (i = next_reaching(reach, bytes, i, size)) < size) {
      if (holds_from(held + i)) tail = held + i;
      ++i;
    }
  }

  // Emit C[held_emitted_, end): the bytes before the tail, or everything when flushing.
  const std::size_t end = flushing ? n : tail;
  const std::size_t emitted = end > held_emitted_ ? end - held_emitted_ : 0;
  chunk_line(emitted);
  // In place, C[held_emitted_, n) already lies at out[base, ...) once the held bytes not yet
  // emitted fill the room left for them.
  const std::size_t room = held - std::min(held, held_emitted_);
  const std::size_t in_at = in_place ? out.size() - in.size() : 0;
  const std::size_t base = in_place ? in_at - room : out.size();
  if (in_place) {
    if (room > 0) std::memcpy(out.data() + base, held_.data() + held_emitted_, room);
  } else if (end > held_emitted_) {
    const std::size_t from_held = std::min(end, held);
    if (held_emitted_ < from_held) out.append(held_bytes.substr(held_emitted_, from_held - held_emitted_));
    if (end > held) out.append(in.substr(std::max(held_emitted_, held) - held, end - std::max(held_emitted_, held)));
  }
  std::size_t carry = held_masked_ > tail ? held_masked_ - tail : 0;
  auto mask = [&](std::size_t from, std::size_t to) {
    const std::size_t lo = std::max(from, held_emitted_), hi = std::min(to, end);
    if (lo < hi) {
      if (in_place) mask_marks().mark(lo - held_emitted_, hi - held_emitted_);
      else std::memset(out.data() + base + (lo - held_emitted_), kMask, hi - lo);
      masked_bytes_ += hi - lo;
    }
  };
  // An occurrence that starts before the tail and ends in it: the tail's first bytes stay marked,
  // since the next call no longer sees where it started. One that starts in the tail is found
  // again next time.
  auto mask_occurrence = [&](std::size_t from, std::size_t to) {
    mask(from, to);
    if (from < tail && to > tail) carry = std::max(carry, to - tail);
  };
  mask(0, held_masked_);
  for (std::size_t p = 0; p < held; ++p) {
    if (!may_start(p)) continue;
    relate_at(p, [&](std::size_t length, Relation r) {
      if (r == Relation::kFull) mask_occurrence(p, p + length);
    });
  }
  f.find_all(in, [&](std::size_t from, std::size_t to) { mask_occurrence(held + from, held + to); });
  if (flushing && n - tail >= kMinMaskedPrefix) mask(tail, n);
  if (in_place) mask_marks().apply(out.data() + base, kMask);

  if (chunk && emitted > 0) out.append("\r\n");
  held_emitted_ = std::max(held_emitted_, end) > tail ? std::max(held_emitted_, end) - tail : 0;
  held_masked_ = carry;
  keep_tail(tail, in);
  if (in_place) {
    // The output ends before the tail (now held here): those bytes, which may begin a value,
    // do not stay behind in the caller's buffer.
    const std::size_t size = base + emitted;
    if (out.size() > size) OPENSSL_cleanse(out.data() + size, out.size() - size);
    out.resize(size);
  }
}

// The held bytes become C[from, end).
void ResponseScrubber::keep_tail(std::size_t from, std::string_view in) {
  const std::size_t old_size = held_size_;
  std::size_t size = 0;
  if (from < old_size) {
    size = old_size - from;
    std::memmove(held_.data(), held_.data() + from, size);
  }
  const std::string_view rest = in.substr(std::max(from, old_size) - old_size);
  if (!rest.empty()) std::memcpy(held_.data() + size, rest.data(), rest.size());
  size += rest.size();
  if (size < old_size) OPENSSL_cleanse(held_.data() + size, old_size - size);
  held_size_ = size;
}

}  // namespace airlock::http
