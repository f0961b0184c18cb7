#pragma once
// Internal to the engine: the compiled placeholder matchers (secrets-spec §4) and the small
// codecs the rewriter needs (base64, percent-encoding). Not a public header.
#include <secrets/engine/engine.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::secrets {

// Bit flags: which encodings a decoded match used (none: the raw placeholder).
enum FormBits : std::uint8_t {
  kFormRaw = 0,
  kFormPercent = 1,
  kFormJson = 2,
  kFormBase64 = 4,
  kFormBasic = 8,  // base64 inside `Authorization: Basic`, decoded
};
// "raw", "percent-encoded", "JSON-escaped", "percent- and JSON-escaped", "base64", ...
std::string_view form_name(std::uint8_t forms) noexcept;

struct Match {
  enum Kind : std::uint8_t { kNone, kFound, kPartial };
  Kind kind = kNone;
  std::uint32_t secret = 0;
  std::uint32_t length = 0;  // input bytes the form spans (kFound)
  std::uint8_t forms = kFormRaw;
};

struct SecretSet::Compiled {
  explicit Compiled(const std::vector<SecretBinding>& secrets);

  std::vector<std::string> placeholders;              // by secret index
  std::vector<std::uint8_t> value_unsafe_for_head;    // value holds CR, LF or NUL
  // trigger[b] != 0: a form may start at byte b. kTriggerRaw: b is some placeholder's first byte.
  static constexpr std::uint8_t kTriggerRaw = 1, kTriggerEscape = 2;
  std::array<std::uint8_t, 256> trigger{};
  std::vector<unsigned char> trigger_bytes;           // the distinct trigger bytes (SIMD skip)
  std::vector<unsigned char> raw_first_bytes;         // distinct raw first bytes (raw-only skip)
  std::array<std::vector<std::uint32_t>, 256> by_first;  // decoded first byte → secrets
  std::array<std::string, 256> common_prefix;            // of the placeholders in by_first[b]
  // by_first[b] is sorted by the byte after common_prefix[b] (256: none); next_byte[b] holds it.
  std::array<std::vector<std::uint16_t>, 256> next_byte;
  std::size_t max_placeholder = 0;
  std::size_t max_form = 0;  // longest encoded form: 6 bytes (\uXXXX) per placeholder byte

  // Base64 / base64url forms of each placeholder at the 3 alignments, in the standard alphabet
  // ('-' and '_' are folded to '+' and '/' when searching), partial edge characters trimmed.
  struct Base64Form {
    std::uint32_t secret;
    std::string text;
  };
  std::vector<Base64Form> base64_forms;        // sorted by the key of their first two chars
  std::vector<std::uint32_t> base64_keys;      // that key, parallel to base64_forms
  std::vector<std::uint64_t> base64_pair_bits;  // 65536 bits: first two chars of some form
  std::size_t max_base64_form = 0;              // longest base64 form (characters)
  // Sampling filter (bodies are long): every form spans one of the positions 0, stride,
  // 2 stride, ... of a text with its 4 characters there at an offset below the stride; a bit
  // per hash of those (folded) characters says whether some form has them at some offset.
  std::size_t base64_stride = 0;
  unsigned base64_filter_shift = 0;
  std::vector<std::uint64_t> base64_filter;
};

// Position of the first byte at or after `from` in data[from, size) that may start a form
// (size if none). raw_only: only raw first bytes count.
std::size_t next_trigger(const SecretSet::Compiled& c, const unsigned char* data, std::size_t from,
                         std::size_t size, bool raw_only = false) noexcept;

// The secrets whose raw placeholder may start at data[pos]: by_first narrowed by the shared
// prefix and the byte after it. Exact for raw matching only.
std::span<const std::uint32_t> raw_candidates(const SecretSet::Compiled& c, const unsigned char* data,
                                              std::size_t size, std::size_t pos) noexcept;

// Tries every form (raw, percent, JSON \u, mixed per character) of every secret s with
// want[s] != 0 (want == nullptr: every secret) at data[pos]. kFound for the first secret that
// matches; otherwise kPartial if the data ended while some form was still matching.
Match match_at(const SecretSet::Compiled& c, const unsigned char* data, std::size_t size, std::size_t pos,
               const std::uint8_t* want) noexcept;

// Scans data[from, size) and calls on_match(pos, match) for each form found (want as above),
// resuming at pos + 1. Only positions < start_limit start a match. Unless `final`, stops at the
// first partial match and returns its position (with `final` the data is complete and a
// partial form is no form). Returns `size` when done, or the position where on_match returned
// false.
template <typename OnMatch>
std::size_t scan_forms(const SecretSet::Compiled& c, const unsigned char* data, std::size_t from,
                       std::size_t size, std::size_t start_limit, const std::uint8_t* want, bool final,
                       OnMatch&& on_match) {
  std::size_t i = from;
  const std::size_t limit = start_limit < size ? start_limit : size;
  while (true) {
    i = next_trigger(c, data, i, limit);
    if (i >= limit) return size;
    const Match m = match_at(c, data, size, i, want);
    if (m.kind == Match::kPartial && !final) return i;
    if (m.kind == Match::kFound && !on_match(i, m)) return i;
    ++i;
  }
}

// Streaming detection with carry-over: feeds of any split report the same matches (by absolute
// stream offset) as one feed of the whole. The carry (bytes that may begin a form) is at most
// max_form - 1 bytes.
class StreamDetector {
 public:
  explicit StreamDetector(const SecretSet::Compiled& c) : c_(&c) {}
  // Reports the first match among `want` (nullptr: all); returns false if one was found
  // (then *found is set). Otherwise the data is consumed; carry_size() bytes are undecided.
  bool feed(std::string_view data, const std::uint8_t* want, Match* found, std::uint64_t* found_at);
  // End of the stream (or of a message): scans what the carry still holds as complete data
  // (a partial form is no form), then drops it. Same result convention as feed().
  bool finish(const std::uint8_t* want, Match* found, std::uint64_t* found_at);
  void reset() noexcept { carry_.clear(); }
  std::size_t carry_size() const noexcept { return carry_.size(); }
  std::uint64_t offset() const noexcept { return offset_; }  // bytes fed so far

 private:
  const SecretSet::Compiled* c_;
  // The stream from the first position where a form may still begin: raw, percent and JSON
  // forms (as scan_forms leaves them open), and base64 and base64url ones (the forms the head
  // finds with find_base64_form), so a form cut by a read is found when the rest arrives.
  std::string carry_;
  std::string window_;
  std::uint64_t offset_ = 0;
};

// Base64 searches over a whole buffer (a request head): the first base64/base64url form of a
// secret with want[s] != 0. Returns kNone or kFound (pos in *at).
Match find_base64_form(const SecretSet::Compiled& c, std::string_view text, const std::uint8_t* want,
                       std::size_t* at) noexcept;

// Where a wanted base64 form may begin in `text` and run past its end: the first position p such
// that text[p, size) is a proper prefix of such a form (only the last max_base64_form - 1
// positions are looked at); text.size() when there is none.
std::size_t base64_partial_start(const SecretSet::Compiled& c, std::string_view text, const std::uint8_t* want) noexcept;

// Codecs.
std::string base64_encode(std::string_view bytes);
// Standard or url alphabet, padding optional; false for anything else.
bool base64_decode(std::string_view text, std::string& out);
// RFC 3986: unreserved (ALPHA DIGIT - . _ ~) kept, everything else %XX (upper-case hex).
void percent_encode_append(std::string_view bytes, std::string& out);

// Wipes and clears a string that may have held a value (capacity kept, contents zeroed).
void wipe(std::string& s) noexcept;

}  // namespace airlock::secrets
