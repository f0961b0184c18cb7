#pragma once
// Response scrubbing (DESIGN invariant 5): bytes an upstream sends back toward the guest lose
// every secret value they echo. Pure: bytes in, bytes out, no I/O.
//
// Each value is looked for in these forms (as exact bytes unless said otherwise):
//  - raw;
//  - base64 and base64url, at the three byte alignments, without the edge characters that also
//    carry bits of neighbouring bytes (so 1-2 edge characters of an encoded value stay), when
//    such a form is at least 4 characters long;
//  - JSON-escaped, when the value holds `"`, `\`, `/` or a control character: `\"`, `\\`, `\b`
//    `\f` `\n` `\r` `\t`, `\u00xx` (lower-case hex) for other control characters, with `/` both
//    kept and escaped as `\/`;
//  - percent-encoded (RFC 3986: all but ALPHA DIGIT - . _ ~ as %XX), when the value holds a byte
//    that is encoded;
//  - fully percent-encoded (every byte as %XX), fully `\u`-escaped (every character as \uXXXX,
//    UTF-16 units for a UTF-8 value, else one per byte), and hex (two digits per byte).
// Forms whose escapes carry hex digits (the percent forms, the three full ones, and a JSON form
// with a `\u00xx`) are matched ignoring ASCII case: upper, lower and mixed hex digits alike (a
// case variant of the value's own letters inside such a form is masked too).
// Not covered: `+` for space, \u escapes of some printable characters but not all, other
// codecs. Compressed bodies and chunk framing are undone before this (http/response_decoder).
//
// Every occurrence, overlapping or adjacent ones included, becomes as many '*' bytes as it
// spans, so the output is exactly as long as the input and framing (Content-Length, chunk
// sizes) stays right.
#include <airlock/secret.hpp>
#include <airlock/secret_value.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::http {

// Every form of every value, compiled once per sandbox or gateway (from SecretSet::secrets())
// and shared read-only by every ResponseScrubber (thread-safe to read). The forms, and the
// lookup table derived from their bytes, live in SecretValue memory: locked, non-dumpable,
// wiped when this is destroyed.
class ScrubForms {
 public:
  // Throws std::bad_alloc only (control path).
  explicit ScrubForms(const std::vector<SecretBinding>& secrets);
  // The same over values seen in place (in their SecretValue's locked memory; nothing is copied
  // outside it): a reload's forms cover two sets' values.
  struct OfValues {};
  ScrubForms(OfValues, const std::vector<std::string_view>& values);

  std::size_t count() const noexcept { return forms_.size(); }  // distinct forms
  std::size_t longest() const noexcept { return longest_; }      // bytes; 0 when there are none

 private:
  friend class ResponseScrubber;
  friend struct ScrubFormsPeer;  // response_scrubber_scan_test.cpp: the forms, for a brute-force reference
  // Sampling: every form is at least shortest_ bytes long, so with stride_ <= shortest_ - gram_ + 1
  // an occurrence covers one of the positions 0, stride_, 2*stride_, ... of a buffer, at an
  // offset below stride_, with the gram_ bytes there inside it. Those bytes are hashed: one bit
  // of the filter says whether any (form, offset) pair has that hash; only then is its bucket
  // of pairs checked.
  struct Sample {
    std::uint32_t form;
    std::uint32_t offset;
  };
  void build_table();
  // Calls on_match(begin, end) for every occurrence of a form that lies wholly in `data`.
  template <typename OnMatch>
  void find_all(std::string_view data, OnMatch&& on_match) const noexcept;

  SecretValue form_bytes_;                 // every form, back to back
  std::vector<std::string_view> forms_;    // the distinct ones, viewing form_bytes_
  std::vector<bool> folded_;               // per form: matched ignoring ASCII case (kept lower-case)
  std::array<std::vector<std::uint32_t>, 256> by_first_byte_;  // form indices
  // Per byte: the length of the longest form starting with it (either case of a folded form's
  // letter), 0 for none. A position with k bytes left can begin a held tail (a proper prefix of
  // a form) only where this is above k, so the tail search reads one table entry per position.
  std::array<std::uint32_t, 256> reach_{};
  // The 4 bytes of longest reach (repeated when fewer begin forms) and the longest reach of any
  // other byte: a position with at least near_reach_ bytes left can begin a held tail only at one
  // of those 4 bytes, which the tail search finds 16 positions at a time.
  std::array<unsigned char, 4> far_bytes_{};
  std::uint32_t near_reach_ = 0;
  std::size_t shortest_ = 0;
  std::size_t longest_ = 0;
  std::size_t gram_ = 0;    // min(4, shortest_)
  std::size_t stride_ = 0;
  unsigned filter_shift_ = 0;  // hash >> filter_shift_: the filter bit
  unsigned bucket_shift_ = 0;  // hash >> bucket_shift_: the bucket
  // Filter bits, bucket starts (uint32, one more than buckets), Sample entries in bucket order.
  // It is made from the forms' bytes, so it is kept like them.
  SecretValue table_;
  const unsigned char* filter_ = nullptr;  // into table_
  const unsigned char* starts_ = nullptr;
  const unsigned char* samples_ = nullptr;
};

// What a response path scrubs through (ResponseStream, the WebSocket relay, the HTTP/2 bridge):
// one ResponseScrubber, or a caller's chain of them (the gateway's ResponseScrubbers, one per
// secrets snapshot a connection still needs after a reload). The contract is ResponseScrubber's:
// feed() appends every byte of `in` (and of earlier held bytes) that can no longer begin a
// value, masked, and holds back the rest; pending() is what it holds; flush() lets that go;
// masked_bytes() only grows. A path that borrows one keeps no other scrubber of its own, so
// whatever the owner adds to the chain between two calls applies to the next bytes.
class Scrubber {
 public:
  virtual ~Scrubber() = default;
  virtual void feed(std::string_view in, std::string& out) = 0;
  virtual void flush(std::string& out) = 0;
  virtual std::size_t pending() const noexcept = 0;
  virtual std::uint64_t masked_bytes() const noexcept = 0;
  // The one ResponseScrubber doing all of the work (this, or a chain of one), if there is one:
  // a re-chunking path then scrubs straight into its output (ResponseScrubber::feed_chunk).
  virtual class ResponseScrubber* sole() noexcept { return nullptr; }
};

// The scrubber for one response stream (one HTTP/1 connection's responses, or one HTTP/2
// stream). Holds back at most forms.longest() - 1 bytes; never throws on its own (appending to
// `out` can only fail to allocate).
//
// Trade-off of flush(): held bytes that match the first 4 or more bytes of a form are masked
// even if what follows turns out not to complete it; held prefixes of 1-3 bytes are emitted as
// they are. So when a value is split by a pause long enough for the caller to flush, at most 3
// bytes of its start reach the guest; the rest is still masked when it arrives, because the
// scrubber remembers the emitted prefix as context.
class ResponseScrubber final : public Scrubber {
 public:
  explicit ResponseScrubber(const ScrubForms& forms);  // `forms` must outlive this
  ~ResponseScrubber() override;  // wipes the held bytes
  ResponseScrubber(const ResponseScrubber&) = delete;
  ResponseScrubber& operator=(const ResponseScrubber&) = delete;

  // Appends to `out` every byte of `in` (and of earlier held bytes) that can no longer be part
  // of a form, with occurrences masked; holds back a tail that is a proper prefix of some form.
  void feed(std::string_view in, std::string& out) override;
  // The same, the emitted bytes framed as one HTTP/1 chunk (size line, bytes, CRLF; nothing when
  // nothing is emitted): what feed() then append_chunk() would give, without the copy between.
  void feed_chunk(std::string_view in, std::string& out) { scrub(in, out, false, true); }
  // In place, for a caller that reads straight into its output buffer: buf[at, buf.size()) are
  // new bytes, and the pending() bytes before `at` are room the caller left for the held bytes
  // (buf[0, at - pending()) is its output so far). Afterwards buf ends where feed() of the new
  // bytes would have ended its output: the held bytes and the new ones, masked where they lie,
  // up to the tail this holds back. What the output no longer covers (the new tail) is wiped.
  void scrub_in_place(std::string& buf, std::size_t at);
  ResponseScrubber* sole() noexcept override { return this; }
  // Held bytes not yet emitted.
  std::size_t pending() const noexcept override { return held_size_ - held_emitted_; }
  // No more bytes soon (or end of stream): emits the held bytes, following the rule above.
  void flush(std::string& out) override;
  // A new, unrelated text follows (the next HTTP/2 header value): the held bytes are dropped and
  // wiped, so nothing of the previous text is context for the next. masked_bytes() keeps counting.
  void reset() noexcept;
  // `in` as a whole text on its own (an HTTP/2 header value): the output of a new scrubber's
  // feed(in) then flush(), in one pass; nothing is held afterwards.
  void scrub_text(std::string_view in, std::string& out);
  // How many emitted bytes were masked so far (a byte covered by two occurrences may count twice).
  std::uint64_t masked_bytes() const noexcept override { return masked_bytes_; }

 private:
  static constexpr char kMask = '*';
  static constexpr std::size_t kMinMaskedPrefix = 4;
  // in_place: `in` lies in `out` right after room for the pending() bytes (scrub_in_place).
  void scrub(std::string_view in, std::string& out, bool flushing, bool chunk = false, bool in_place = false);
  void keep_tail(std::size_t from, std::string_view in);

  const ScrubForms* forms_;
  // The stream's last bytes that may begin a form (never more than longest() - 1): the first
  // held_emitted_ of them were emitted by flush(), the first held_masked_ belong to an
  // occurrence that started before them.
  std::vector<unsigned char> held_;
  std::size_t held_size_ = 0;
  std::size_t held_emitted_ = 0;
  std::size_t held_masked_ = 0;
  std::uint64_t masked_bytes_ = 0;
};

}  // namespace airlock::http
