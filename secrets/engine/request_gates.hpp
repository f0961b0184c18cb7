#pragma once
// Internal to the engine: the gates, verdicts and substitutions of one request, decided once
// whatever codec carried it (secrets-spec §3–§5). The HTTP/1 rewriter (engine.cpp) and the
// protocol-neutral MessageGate (message_gate.cpp, for HTTP/2 streams and WebSocket messages) are
// codecs that feed it: they tell it the request's authority, hand it header values, query strings
// and body pieces, and it answers with rewritten bytes or a Block. Not a public header.
#include <common/value_sink.hpp>
#include <http/content_coding.hpp>
#include <secrets/engine/engine.hpp>
#include <secrets/engine/matcher.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::secrets {
// A buffer written through a ValueSink is wiped like any other (capacity kept, contents zeroed).
inline void wipe(ValueSink s) noexcept { wipe(s.str()); }
}  // namespace airlock::secrets

namespace airlock::secrets::detail {

char lower(char c) noexcept;
bool iequals(std::string_view a, std::string_view b) noexcept;
// `text` in double quotes, control, quote, backslash and non-ASCII bytes escaped (\xNN).
std::string quote(std::string_view text);
// The host part of a Host value or an authority (port stripped, IPv6 brackets kept, lower case,
// one trailing dot removed). False when it is not a plausible host.
bool host_part(std::string_view authority, std::string& out);
// `Basic <token68>` → the token span inside the value, or empty.
std::string_view basic_token(std::string_view value);

// The field names the gates and the rewriter act on, told apart once per field (by length, then
// one case-insensitive comparison) instead of comparing every name with each of them.
enum class FieldName : std::uint8_t {
  kOther,
  kHost,
  kTe,
  kExpect,
  kUpgrade,
  kConnection,
  kAuthorization,
  kProxyAuthorization,
  kContentLength,
  kHttp2Settings,
  kAcceptEncoding,
  kContentEncoding,
};
FieldName classify_field_name(std::string_view name) noexcept;

// Why a secret is not eligible for a request (0: it is).
enum Why : std::uint8_t {
  kEligible = 0,
  kHostNotAllowed,
  kNotPinned,
  kNoTlsIdentity,
  kAuthorityMismatch,
};
std::string_view why_text(Why why) noexcept;

// The HTTP/1 rewrite of a head reuses the positions its violation scan found (true); false
// searches the head again as before. Only the differential test (head_fast_path_test.cpp) sets
// it, to compare the two.
extern bool reuse_head_scan;

struct RequestGates {
  RequestGates(const SecretSet& s, ConnectionContext c);
  ~RequestGates();  // wipes the buffers that may have held a value
  RequestGates(const RequestGates&) = delete;
  RequestGates& operator=(const RequestGates&) = delete;

  const SecretSet& set;
  const SecretSet::Compiled& cs;
  ConnectionContext ctx;
  std::string sni;  // normalized

  // ---- the decision for the current request ----
  std::vector<std::uint8_t> eligible, not_eligible, why;
  std::vector<std::uint8_t> mask_headers, mask_basic, mask_query, mask_body;
  bool any_not_eligible = false, any_headers = false, any_basic = false, any_query = false, any_body = false;
  std::string host;  // the name gates compare against (SNI, or the request's host for plain HTTP)
  bool values_flowed = false;  // sticky: some secret was eligible for a request on this connection
  bool decided = false;        // decide() has run: the arrays above hold a decision

  std::optional<Block> block;
  std::vector<Substitution> subs;
  // Entries of subs already read (strings keep their buffers): record() reuses them.
  std::vector<Substitution> spare_subs;
  void recycle_substitutions() noexcept;

  // Gates 1–4 for a request whose authority is `request_host` (its host part, normalized;
  // empty when absent or malformed). `authority_ok`: the codec found the authority fields
  // well-formed and consistent (one Host, a target authority equal to it, ...). Gate 4 also
  // needs request_host to equal the gated name (the SNI; for plain HTTP it is request_host).
  void decide(const std::string& request_host, bool authority_ok);
  // After the head passed its violation scan: values may reach this upstream from now on.
  void note_values_may_flow() noexcept;

  // ---- verdicts ----
  void set_block(bool violation, std::string env, Location loc, std::string reason);
  void violation(std::uint32_t s, Location loc, std::uint8_t forms);
  void record(std::uint32_t s, Location loc);

  // ---- substitution ----
  enum class Into : std::uint8_t { kHead, kQuery, kBody, kBasic };
  // Where in a text every byte that is some placeholder's first byte is, when a scan of the
  // same bytes already found them (the head's violation scan): positions in a larger buffer,
  // in order, `base` being where the text begins in it; exactly the positions in the text.
  struct RawStarts {
    std::span<const std::uint32_t> at;
    std::size_t base = 0;
  };
  // Appends `text` to dst with every raw placeholder of a secret in `mask` replaced by its value
  // (percent-encoded for the query). False (and blocked) when a value with CR, LF or NUL would
  // go into the head. `known`: the text's raw first bytes, instead of searching it for them.
  bool substitute_raw(std::string_view text, const std::vector<std::uint8_t>& mask, Into into, Location loc,
                      ValueSink dst, const RawStarts* known = nullptr);
  // A header field value: header-scope placeholders, then Basic credentials (decoded,
  // substituted, encoded again) when `name` is Authorization. Appends to dst; false if blocked.
  bool substitute_header_value(std::string_view name, std::string_view value, ValueSink dst);
  bool substitute_header_value(FieldName kind, std::string_view value, ValueSink dst,
                               const RawStarts* known = nullptr);  // name told apart
  // Query-scope placeholders in a query string (the bytes after '?'), percent-encoded.
  bool substitute_query(std::string_view query, ValueSink dst, const RawStarts* known = nullptr) {
    return substitute_raw(query, mask_query, Into::kQuery, Location::kQuery, dst, known);
  }

  // ---- violation scans of complete text ----
  // Every form (raw, percent, JSON, base64 and base64url) of a secret not eligible, in `text`.
  bool detect_whole(std::string_view data, Location loc);
  // Raw, percent and JSON forms only.
  bool detect_forms(std::string_view data, Location loc);
  // Base64 and base64url forms only.
  bool detect_base64(std::string_view data, Location loc);
  // Inside `Authorization` / `Proxy-Authorization: Basic` credentials, decoded.
  bool detect_basic(std::string_view name, std::string_view value);
  bool detect_basic(FieldName kind, std::string_view value);

  // ---- the body ----
  std::uint32_t first_body_due() const noexcept;  // a secret with mask_body set (any_body)
  // The joined Content-Encoding values of the head; false (and codings cleared) if unknown.
  void parse_body_codings(std::string_view content_encoding);
  // A body injection is due: §5 shapes that cannot be rewritten safely. content_length: the
  // declared length, if any.
  bool check_body_shape(std::optional<std::uint64_t> content_length);
  // Passthrough detection inside a compressed body bound where some secret is not eligible.
  void start_inflated_scan();
  void scan_inflated(std::string_view data, bool last);
  bool finish_inflated();
  // Scans data (complete, or with `final` false a prefix of the body so far) for body forms:
  // violations block; raw placeholders of body-scope secrets are replaced. Appends the settled
  // part to dst and returns its length (the rest may begin a placeholder).
  std::size_t rewrite_body(std::string_view data, bool final, ValueSink dst);
  // The same over data[from, size) with only positions before start_limit starting a form (a
  // form may run past it); returns where the appended part ends (>= start_limit unless a form
  // is still open there).
  std::size_t rewrite_range(std::string_view data, std::size_t from, std::size_t start_limit, bool final,
                            ValueSink dst);
  // A body rewritten as it arrives, piece by piece, into dst (which keeps the whole rewritten
  // body): the same bytes, substitutions and violations as rewrite_body over the whole body.
  // `open`: how many bytes at dst's end are verbatim body bytes that may still begin a form
  // (fewer than max_form); they are scanned again with the next piece. With `final` none stay open.
  void rewrite_body_piece(std::string_view data, bool final, ValueSink dst, std::size_t& open);
  // Base64 forms of the not-eligible secrets in a body fed piece by piece: found in some piece
  // iff detect_base64 finds one in the whole body. `carry` keeps the body's last bytes (guest
  // bytes, fewer than the longest base64 form) between pieces.
  bool detect_base64_piece(std::string_view data, std::string& carry, Location loc);
  // A compressed body buffered whole: decoded (bounded by the body cap and the ratio cap),
  // rewritten, encoded again into out. A body with nothing substituted leaves as it came.
  bool rewrite_coded_body(const std::string& buf, ValueSink out);
  // Streaming detection of the not-eligible secrets' forms over a body.
  bool detect(StreamDetector& det, std::string_view data, Location loc);
  bool detect_finish(StreamDetector& det, Location loc);
  void reset_body();  // a message ended

  StreamDetector body_det;
  std::vector<http::Coding> body_codings;
  bool body_coding_known = true;

 private:
  void compute_connection_gates(const std::string& name);
  const HostPattern* exact_pattern_for(const std::string& name);
  std::string coding_names() const;

  std::string gate_cache_host;  // the host gates 1–3 were last computed for
  std::vector<std::uint8_t> gate_cache;
  // For gate 2, asked per request: the patterns of each secret (not any_host) that match
  // gate_cache_host, in the secret's order; secret i's are [gate_pattern_end[i-1], gate_pattern_end[i]).
  std::vector<const HostPattern*> gate_patterns;
  std::vector<std::uint32_t> gate_pattern_end;
  bool gate_cache_valid = false;
  std::optional<HostPattern> any_host_pattern;  // HostPattern::exact(host) for any_host secrets
  std::string any_host_pattern_for;

  std::string body_window;                  // an open body tail and the next bytes (guest bytes)
  std::string scratch;                      // a header value being rewritten (may hold values)
  std::string decoded, encoded, reencoded;  // Basic credentials (may hold values)
  std::optional<http::ContentDecoder> inflater;
  std::optional<Match> inflated_found;
  StreamDetector inflated_det;
  std::string inflated;  // decoded body bytes (may hold values once rewritten)
  std::string recoded;

 public:
  // Buffer capacity held (the gateway's memory budget).
  std::size_t held_bytes() const noexcept {
    return scratch.capacity() + decoded.capacity() + encoded.capacity() + reencoded.capacity();
  }
};

}  // namespace airlock::secrets::detail
