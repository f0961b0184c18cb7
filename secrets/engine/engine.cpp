// The secrets engine: eligibility (§3 gates), substitution (§3.5), violations (§4), unsafe
// shapes (§5). See engine.hpp for the contract and matcher.hpp for the placeholder forms.
#include <secrets/engine/engine.hpp>

#include <http/content_coding.hpp>
#include <secrets/engine/matcher.hpp>
#include <secrets/engine/request_gates.hpp>
#include <secrets/engine/message_gate.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>

#include <string.h>

namespace airlock::secrets {

std::string_view to_string(Location location) noexcept {
  switch (location) {
    case Location::kRequestLine: return "request line";
    case Location::kQuery: return "query";
    case Location::kHeader: return "header";
    case Location::kBasicAuth: return "basic auth";
    case Location::kBody: return "body";
    case Location::kTrailer: return "trailer";
    case Location::kStream: return "stream";
  }
  return "unknown";
}

// ---- SecretSet ----

SecretSet::SecretSet(std::vector<SecretBinding> secrets, ViolationAction network_action, EngineOptions options)
    : secrets_(std::move(secrets)),
      action_(effective_violation_action(secrets_, network_action)),
      options_(options),
      compiled_(std::make_unique<Compiled>(secrets_)) {}

SecretSet::~SecretSet() = default;
const std::vector<SecretBinding>& SecretSet::secrets() const noexcept { return secrets_; }
ViolationAction SecretSet::action() const noexcept { return action_; }
const EngineOptions& SecretSet::options() const noexcept { return options_; }

using detail::basic_token;
using detail::classify_field_name;
using detail::FieldName;
using detail::host_part;
using detail::iequals;

namespace {

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// A buffered body's buffer is given back at the message end when larger than this.
constexpr std::size_t kKeptBodyBytes = 64 * 1024;
// The head's list of placeholder first bytes is given back after the head when longer than this.
constexpr std::size_t kKeptRawStarts = 64;

}  // namespace

// The HTTP/1 codec over the request gates: the parser's byte spans in, the same bytes out with
// substitutions made in place (everything not substituted leaves exactly as it came).
struct RequestRewriter::Impl final : http::RequestSink, detail::RequestGates {
  // kBufferCoded: a compressed body with an injection due, buffered (de-chunked) whole, then
  // decoded, rewritten and encoded again with the same codings.
  enum class Mode : std::uint8_t { kPassthrough, kBuffer, kRechunk, kBufferCoded };

  Impl(const SecretSet& s, ConnectionContext c)
      : RequestGates(s, std::move(c)), parser(s.options().http), opaque_det(cs) {}

  ~Impl() override {
    wipe(head_out);
    wipe_body_out();
    // Guest bytes only (never a value): freed, not wiped; wiping its whole capacity would touch
    // every page of a body reserved at its declared length but never sent.
    std::string().swap(body_buf);
    wipe(window);
  }

  http::RequestParser parser;
  std::string req_host;  // the request's Host host part
  std::string abs_host;  // an absolute-form / authority-form target's host part

  Mode mode = Mode::kPassthrough;
  bool in_message = false;
  bool is_chunked = false;
  // Buffers that may hold values grow through a ValueSink (no unwiped copy left in freed memory).
  std::string head_bytes, body_bytes;
  ValueSink head_out{head_bytes};       // rewritten head (may hold values)
  std::vector<std::size_t> cl_offsets;  // Content-Length value spans in head_out (buffer mode)
  std::vector<std::size_t> cl_lengths;
  std::string body_buf;                 // buffered coded body or re-chunk carry (guest bytes)
  ValueSink body_out{body_bytes};       // rewritten body (may hold values); in kBuffer, head and body
  std::size_t body_open = 0;            // kBuffer: verbatim bytes at body_out's end not yet settled
  std::string body_b64_carry;           // kBuffer: the body's last bytes, for base64 forms across reads
  std::optional<Block> body_refused;    // kBuffer: a form found, the verdict at the body's end
  std::string window;                   // re-chunk: carry + new data

  // Output during feed()/finish(): the caller's string, grown through a ValueSink.
  std::optional<ValueSink> out_sink;
  ValueSink* out = nullptr;
  std::string* guest = nullptr;
  std::size_t committed = 0;      // out->size() at the last message end (or at entry)
  std::size_t verbatim_tail = 0;  // trailing bytes of *out that are verbatim stream data
  std::string held;               // verbatim tail held back between calls

  bool upgraded = false;
  StreamDetector opaque_det;
  std::string after_upgrade;  // guest bytes after an upgrade request, until its answer
  std::optional<Request> upgrade_request;  // the last upgrade request, as the guest sent it
  std::vector<ForwardedRequest> forwarded;

  // ---- verdicts ----

  void opaque_violation(std::uint32_t s, std::uint8_t forms) {
    const SecretBinding& secret = set.secrets()[s];
    std::string reason = "placeholder (";
    reason += form_name(forms);
    reason += ") in the opaque stream after a protocol upgrade; placeholders are never substituted there";
    set_block(true, secret.env_var(), Location::kStream, std::move(reason));
  }

  void compute_eligibility(const http::RequestHead& head) {
    // Gate 4 inputs: exactly one Host, and an absolute-form or authority-form target.
    std::size_t host_count = 0;
    std::string_view host_value;
    for (std::size_t k = 0; k < head.fields.size(); ++k) {
      if (kinds[k] == FieldName::kHost) {
        ++host_count;
        host_value = head.view(head.fields[k].value);
      }
    }
    const bool host_ok = host_count == 1 && host_part(host_value, req_host);
    if (!host_ok) req_host.clear();
    bool target_ok = true;
    const std::string_view target = head.view(head.target);
    const std::string_view method = head.view(head.method);
    if (method == "CONNECT") {
      target_ok = host_part(target, abs_host) && abs_host == req_host;
    } else if (!target.empty() && target.front() != '/' && target != "*") {
      const std::size_t scheme_end = target.find("://");
      if (scheme_end == std::string_view::npos) {
        target_ok = false;
      } else {
        std::string_view authority = target.substr(scheme_end + 3);
        authority = authority.substr(0, authority.find_first_of("/?#"));
        target_ok = authority.find('@') == std::string_view::npos && host_part(authority, abs_host) &&
                    abs_host == req_host;
      }
    }

    decide(req_host, host_ok && target_ok);
  }

  // ---- head ----

  // The kind of each field name of the current head (by index), told once per head: the gates,
  // the scans and the rewrite below all read it instead of comparing names.
  std::vector<FieldName> kinds;
  void classify_fields(const http::RequestHead& head) {
    kinds.resize(head.fields.size());
    for (std::size_t k = 0; k < head.fields.size(); ++k) kinds[k] = classify_field_name(head.view(head.fields[k].name));
  }

  Location head_location(const http::RequestHead& head, std::size_t pos) const {
    const std::size_t line_end = head.fields.empty() ? head.raw.size() : head.fields.front().line.offset;
    if (pos >= line_end) return Location::kHeader;
    const std::string_view target = head.view(head.target);
    const std::size_t q = target.find('?');
    if (q != std::string_view::npos && pos > head.target.offset + q && pos < head.target.offset + head.target.length) {
      return Location::kQuery;
    }
    return Location::kRequestLine;
  }

  // Where the current head's placeholder first bytes are, in order (positions in head.raw): the
  // violation scan notes them on its way, so that the rewrite does not search the same bytes for
  // them again. Valid for the current head when head_raw_known.
  std::vector<std::uint32_t> head_raw_at;
  bool head_raw_known = false;

  // The noted positions in raw[from, to) (head_raw_known).
  RawStarts raw_starts(std::size_t from, std::size_t to) const {
    const auto b = std::lower_bound(head_raw_at.begin(), head_raw_at.end(), from);
    const auto e = std::lower_bound(b, head_raw_at.end(), to);
    return RawStarts{std::span<const std::uint32_t>(head_raw_at.data() + (b - head_raw_at.begin()),
                                                    static_cast<std::size_t>(e - b)),
                     from};
  }
  // The first placeholder first byte in raw[from, size) (raw.size() if none).
  std::size_t next_raw_start(const std::string& raw, std::size_t from) const {
    if (head_raw_known) {
      const auto it = std::lower_bound(head_raw_at.begin(), head_raw_at.end(), from);
      return it == head_raw_at.end() ? raw.size() : *it;
    }
    return next_trigger(cs, reinterpret_cast<const unsigned char*>(raw.data()), from, raw.size(), true);
  }

  // Every placeholder form of a secret not eligible for this request, anywhere in the head.
  bool scan_head_violations(const http::RequestHead& head) {
    const auto* d = reinterpret_cast<const unsigned char*>(head.raw.data());
    const std::size_t n = head.raw.size();
    // scan_forms (complete data: every position may start a form) written out, so that the
    // positions of the placeholders' first bytes (a subset of the trigger bytes it stops at)
    // are noted for rewrite_head.
    head_raw_at.clear();
    for (std::size_t i = 0;; ++i) {
      i = next_trigger(cs, d, i, n);
      if (i >= n) break;
      if (cs.trigger[d[i]] & SecretSet::Compiled::kTriggerRaw) head_raw_at.push_back(static_cast<std::uint32_t>(i));
      const Match m = match_at(cs, d, n, i, not_eligible.data());
      if (m.kind == Match::kFound) {
        violation(m.secret, head_location(head, i), m.forms);
        return false;
      }
    }
    head_raw_known = detail::reuse_head_scan;
    // Inside Basic credentials, decoded.
    for (std::size_t k = 0; k < head.fields.size(); ++k) {
      if (kinds[k] != FieldName::kAuthorization && kinds[k] != FieldName::kProxyAuthorization) continue;
      const http::HeaderField& f = head.fields[k];
      if (!detect_basic(kinds[k], head.view(f.value))) return false;
    }
    // Base64 / base64url anywhere in the head.
    std::size_t at = 0;
    const Match m = find_base64_form(cs, head.raw, not_eligible.data(), &at);
    if (m.kind == Match::kFound) {
      violation(m.secret, head_location(head, at), m.forms);
      return false;
    }
    return true;
  }

  // ---- what the response may be (issue 12 items 3, 4) ----

  static bool has_list_token(std::string_view list, std::string_view token) {
    bool found = false;
    for_each_item(list, [&](std::string_view item) { found = found || iequals(item, token); });
    return found;
  }
  template <typename F>
  static void for_each_item(std::string_view list, F&& f) {
    while (true) {
      const std::size_t comma = list.find(',');
      std::string_view item = list.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty()) f(item);
      if (comma == std::string_view::npos) return;
      list.remove_prefix(comma + 1);
    }
  }
  // `list` without the items for which drop(item) holds, joined by ", ".
  template <typename Drop>
  static std::string without_items(std::string_view list, Drop&& drop) {
    std::string out;
    for_each_item(list, [&](std::string_view item) {
      if (drop(item)) return;
      if (!out.empty()) out += ", ";
      out += item;
    });
    return out;
  }

  // How one head field leaves when values may flow: kept, replaced by `value`, or dropped.
  struct FieldEdit {
    enum Kind : std::uint8_t { kKeep, kReplace, kDrop } kind = kKeep;
    std::string value;
  };
  struct ResponseRestrictions {
    bool te_dropped = false;     // TE removed (it offered no "trailers")
    bool h2c_stripped = false;   // h2c removed from Upgrade (with HTTP2-Settings)
    bool upgrade_dropped = false;  // no Upgrade protocol left
    bool accept_encoding_seen = false;
  };

  // Decides the edits before the head is written: TE reduced to "trailers" (or dropped),
  // Upgrade without h2c, HTTP2-Settings dropped, one Accept-Encoding: identity.
  ResponseRestrictions plan_restrictions(const http::RequestHead& head) const {
    ResponseRestrictions r;
    for (std::size_t k = 0; k < head.fields.size(); ++k) {
      const std::string_view value = head.view(head.fields[k].value);
      if (kinds[k] == FieldName::kTe && !has_list_token(value, "trailers")) r.te_dropped = true;
      if (kinds[k] == FieldName::kUpgrade && has_list_token(value, "h2c")) {
        r.h2c_stripped = true;
        if (without_items(value, [](std::string_view i) { return iequals(i, "h2c"); }).empty()) r.upgrade_dropped = true;
      }
    }
    return r;
  }

  // The fields restrict_field may edit.
  static bool restricted_kind(FieldName kind) noexcept {
    return kind == FieldName::kAcceptEncoding || kind == FieldName::kTe || kind == FieldName::kHttp2Settings ||
           kind == FieldName::kUpgrade || kind == FieldName::kConnection;
  }

  FieldEdit restrict_field(FieldName kind, std::string_view value, ResponseRestrictions& r) const {
    if (kind == FieldName::kAcceptEncoding) {
      // One identity offer: a compressed echo would carry a value past the response scrubber.
      if (std::exchange(r.accept_encoding_seen, true)) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, "identity"};
    }
    if (kind == FieldName::kTe) {
      // Only chunked (always allowed) and trailers: no transfer-coding the scrubber cannot read.
      if (!has_list_token(value, "trailers")) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, "trailers"};
    }
    if (kind == FieldName::kHttp2Settings && r.h2c_stripped) return {FieldEdit::kDrop, {}};
    if (kind == FieldName::kUpgrade && r.h2c_stripped) {
      if (r.upgrade_dropped) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, without_items(value, [](std::string_view i) { return iequals(i, "h2c"); })};
    }
    if (kind == FieldName::kConnection && (r.te_dropped || r.h2c_stripped)) {
      std::string v = without_items(value, [&](std::string_view i) {
        return (r.te_dropped && iequals(i, "te")) || (r.h2c_stripped && iequals(i, "http2-settings")) ||
               (r.upgrade_dropped && iequals(i, "upgrade"));
      });
      if (v.empty()) return {FieldEdit::kDrop, {}};
      return {FieldEdit::kReplace, std::move(v)};
    }
    return {};
  }

  // Builds the rewritten head into head_out. Returns false when blocked. With `restrict`
  // (values may flow on this connection), the fields that decide the response's codings are
  // edited (restrict_field) and an Accept-Encoding: identity is added when there was none.
  // Fields with nothing to do (no raw placeholder's first byte in the value, not Basic
  // credentials to rewrite, not edited or tracked) are copied with their neighbours as one run:
  // one scan of the field lines for those first bytes serves every field.
  bool rewrite_head(http::RequestHead& head, bool drop_expect, bool track_cl, bool restrict) {
    const std::string& raw = head.raw;
    const std::string_view rv(raw);
    head_out.clear();
    cl_offsets.clear();
    cl_lengths.clear();
    const std::size_t line_end = head.fields.empty() ? raw.size() - 2 : head.fields.front().line.offset;
    const std::string_view target = head.view(head.target);
    const std::size_t q = target.find('?');
    if (any_query && q != std::string_view::npos) {
      const std::size_t qs = head.target.offset + q + 1;
      const std::size_t te = head.target.offset + head.target.length;
      head_out.append(rv.substr(0, qs));
      const RawStarts known = head_raw_known ? raw_starts(qs, te) : RawStarts{};
      if (!substitute_query(rv.substr(qs, te - qs), head_out, head_raw_known ? &known : nullptr)) return false;
      head_out.append(rv.substr(te, line_end - te));
    } else {
      head_out.append(rv.substr(0, line_end));
    }
    std::size_t pos = line_end;  // rv[pos, ...) is not in head_out yet
    ResponseRestrictions restrictions = restrict ? plan_restrictions(head) : ResponseRestrictions{};
    if (restrictions.upgrade_dropped) head.upgrade = false;  // nothing left to switch to
    std::size_t next_raw = any_headers ? next_raw_start(raw, line_end) : raw.size();
    for (std::size_t k = 0; k < head.fields.size(); ++k) {
      const http::HeaderField& f = head.fields[k];
      const FieldName kind = kinds[k];
      const std::size_t line_stop = f.line.offset + f.line.length;
      const std::size_t value_end = f.value.offset + f.value.length;
      if (next_raw < f.value.offset) next_raw = next_raw_start(raw, f.value.offset);
      const bool has_raw = next_raw < value_end;  // a header-scope placeholder may start in the value
      const bool basic = any_basic && kind == FieldName::kAuthorization;
      const bool cl = track_cl && kind == FieldName::kContentLength;
      const bool expect = drop_expect && kind == FieldName::kExpect;
      const bool restricted = restrict && restricted_kind(kind);
      if (!has_raw && !basic && !cl && !expect && !restricted) continue;  // left as it came
      const FieldEdit edit = restricted ? restrict_field(kind, head.view(f.value), restrictions) : FieldEdit{};
      if (expect || edit.kind == FieldEdit::kDrop) {
        head_out.append(rv.substr(pos, f.line.offset - pos));
        pos = line_stop;
        continue;
      }
      head_out.append(rv.substr(pos, f.value.offset - pos));
      // An edited value (Upgrade without h2c, Connection without TE) is substituted like any other.
      const std::string_view value = edit.kind == FieldEdit::kReplace ? std::string_view(edit.value) : head.view(f.value);
      if (edit.kind == FieldEdit::kReplace && kind == FieldName::kAcceptEncoding) {
        head_out.append(edit.value);
      } else if (cl) {
        cl_offsets.push_back(head_out.size());
        cl_lengths.push_back(value.size());
        head_out.append(value);
      } else if (head_raw_known && edit.kind != FieldEdit::kReplace) {
        // The value's bytes are the head's: their placeholder first bytes are known.
        const RawStarts known = raw_starts(f.value.offset, value_end);
        if (!substitute_header_value(kind, value, head_out, &known)) return false;
      } else {
        if (!substitute_header_value(kind, value, head_out)) return false;
      }
      pos = value_end;  // the rest of the line goes out with the next run
    }
    // The empty line ending the head starts after the last field line.
    const std::size_t head_end = head.fields.empty() ? line_end : head.fields.back().line.offset + head.fields.back().line.length;
    if (restrict && !restrictions.accept_encoding_seen) {
      head_out.append(rv.substr(pos, head_end - pos));
      head_out.append("Accept-Encoding: identity\r\n");
      pos = head_end;
    }
    head_out.append(rv.substr(pos));
    return true;
  }

  void on_head(http::RequestHead& head) override {
    if (block) return;
    in_message = true;
    head_raw_known = false;
    is_chunked = head.framing == http::BodyFraming::kChunked;
    classify_fields(head);
    parse_head_codings(head);
    compute_eligibility(head);
    if (any_not_eligible && !scan_head_violations(head)) return;
    // Sticky: once a value may have reached this upstream, every later response may echo it.
    note_values_may_flow();

    const bool has_body = is_chunked || (head.framing == http::BodyFraming::kContentLength && head.content_length > 0);
    mode = Mode::kPassthrough;
    if (any_body && has_body) {
      const auto length = head.framing == http::BodyFraming::kContentLength
                              ? std::optional<std::uint64_t>(head.content_length)
                              : std::nullopt;
      if (!check_body_shape(length)) return;
      mode = !body_codings.empty() ? Mode::kBufferCoded : is_chunked ? Mode::kRechunk : Mode::kBuffer;
    }
    if (mode == Mode::kPassthrough && any_not_eligible && !body_codings.empty() && has_body) {
      start_inflated_scan();
    }
    // A length-framed body buffered whole leaves with its length recomputed.
    const bool buffer = mode == Mode::kBuffer || (mode == Mode::kBufferCoded && !is_chunked);
    const bool drop_expect = buffer && head.expect_continue;
    if (!any_headers && !any_basic && !any_query && !any_body && !values_flowed) {
      out->append(head.raw);
    } else {
      if (!rewrite_head(head, drop_expect, buffer, values_flowed)) return;
      if (!buffer) out->append(head_out);
    }
    head_raw_known = false;
    // A head full of first bytes leaves no large list behind on a kept-alive connection.
    if (head_raw_at.capacity() > kKeptRawStarts) std::vector<std::uint32_t>().swap(head_raw_at);
    const std::string_view method = head.view(head.method);
    if (head.upgrade && method != "CONNECT") keep_upgrade_request(head);
    forwarded.push_back(
        ForwardedRequest{method == "HEAD", method == "CONNECT", head.upgrade && method != "CONNECT", head.minor_version == 0, head.close});
    verbatim_tail = 0;
    if (drop_expect) guest->append(kContinue);
    body_buf.clear();
    if (mode == Mode::kBuffer) {
      start_buffered_body(static_cast<std::size_t>(head.content_length));
    } else if (buffer) {
      body_buf.reserve(static_cast<std::size_t>(head.content_length));
    }
  }

  // A buffered body is decided as a whole, whatever the reads: a base64 form anywhere in it is
  // the verdict, else the first other form (as when the body was scanned once complete). A form
  // found in a read is kept until the body ends; the rewritten request, never to leave, is wiped.
  void refuse_body() {
    body_refused = std::move(block);
    block.reset();
    wipe_body_out();
    body_open = 0;
  }

  // A length-framed body with an injection due is rewritten as it arrives, behind its head, into
  // the buffer that becomes the output at the message end: the body is copied once (the guest's
  // bytes straight into the rewritten request), not buffered and then copied again. Its length
  // is capped (check_body_shape), so the reservation is too: the declared length and room for
  // values longer than their placeholders (an eighth, at most 64 KiB: the memory budget counts the
  // capacity from the head on, so a large body holds little more than its length; a body that
  // grows past it moves once, through the ValueSink).
  void start_buffered_body(std::size_t content_length) {
    wipe(body_out);  // whatever an earlier request left past its size (kBuffer wipes only the size)
    body_out.reserve(head_out.size() + content_length + std::min<std::size_t>(content_length / 8, 64 * 1024) + 64);
    body_out.append(head_out);
    body_open = 0;
    body_b64_carry.clear();
    body_refused.reset();
  }

  std::string content_encoding;  // joined Content-Encoding values of the current head
  bool body_coding_known = true;
  void parse_head_codings(const http::RequestHead& head) {
    content_encoding.clear();
    for (std::size_t k = 0; k < head.fields.size(); ++k) {
      if (kinds[k] != FieldName::kContentEncoding) continue;
      if (!content_encoding.empty()) content_encoding += ", ";
      content_encoding.append(head.view(head.fields[k].value));
    }
    RequestGates::parse_body_codings(content_encoding);
  }

  // The codings by their own names (never the header's bytes, which the guest chose).

  void emit_chunk(std::string_view data) {
    if (data.empty()) return;
    char hex[20];
    const auto r = std::to_chars(hex, hex + sizeof hex, data.size(), 16);
    out->append(hex, static_cast<std::size_t>(r.ptr - hex));
    out->append("\r\n");
    out->append(data);
    out->append("\r\n");
  }

  // Re-chunk: rewrites what can be settled of carry + data and emits it as one chunk.
  void rechunk(std::string_view data, bool final) {
    window.assign(body_buf);
    window.append(data);
    body_out.clear();
    const std::size_t settled = rewrite_body(window, final, body_out);
    if (block) return;
    emit_chunk(body_out);
    body_buf.assign(window, settled, std::string::npos);
    verbatim_tail = 0;
  }

  void on_body(std::string_view data) override {
    if (block) return;
    switch (mode) {
      case Mode::kPassthrough:
        if (any_not_eligible && !detect(body_det, data, Location::kBody)) return;
        scan_inflated(data, false);
        out->append(data);
        verbatim_tail += data.size();
        break;
      case Mode::kBuffer:
        // rewrite_body_piece sees raw, percent and JSON forms; base64 ones are looked for here.
        if (any_not_eligible && !detect_base64_piece(data, body_b64_carry, Location::kBody)) return;
        if (body_refused) return;  // nothing more to rewrite; a base64 form may still come
        rewrite_body_piece(data, false, body_out, body_open);
        if (block) refuse_body();
        break;
      case Mode::kRechunk:
        // rewrite_body sees raw, percent and JSON forms; the stream detector adds base64 ones.
        if (any_not_eligible && !detect(body_det, data, Location::kBody)) return;
        rechunk(data, false);
        break;
      case Mode::kBufferCoded:
        if (body_buf.size() + data.size() > set.options().max_body_bytes) {
          set_block(false, set.secrets()[first_body_due()].env_var(), Location::kBody,
                    "a body injection is due but the compressed chunked body exceeds the body size cap of " +
                        std::to_string(set.options().max_body_bytes) + " bytes");
          return;
        }
        body_buf.append(data);
        break;
    }
  }

  void on_framing(http::FramingKind kind, std::string_view raw) override {
    if (block) return;
    switch (kind) {
      case http::FramingKind::kEmptyLine:
        out->append(raw);
        verbatim_tail = 0;
        return;
      case http::FramingKind::kChunkHeader:
      case http::FramingKind::kChunkEnd:
        if (any_not_eligible && !detect_whole(raw, Location::kBody)) return;
        if (mode == Mode::kPassthrough) {
          out->append(raw);
          verbatim_tail = 0;
        }
        return;
      case http::FramingKind::kLastChunk: {
        if (mode == Mode::kPassthrough) {
          if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return;
          if (!finish_inflated()) return;
        } else if (mode == Mode::kRechunk) {
          if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return;
          rechunk({}, true);
          if (block) return;
        } else if (mode == Mode::kBufferCoded) {
          if (!rewrite_coded_body(body_buf, body_out)) return;
          emit_chunk(body_out);
          wipe(body_out);
          body_buf.clear();
          mode = Mode::kPassthrough;  // the message end has nothing left to do
        }
        const Location loc = raw.size() > 5 ? Location::kTrailer : Location::kBody;
        if (any_not_eligible && !detect_whole(raw, loc)) return;
        out->append(raw);
        verbatim_tail = 0;
        return;
      }
    }
  }

  void on_message_end() override {
    if (block) return;
    if (mode == Mode::kPassthrough) {
      if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return;
      if (!is_chunked && !finish_inflated()) return;
    } else if (mode == Mode::kBuffer) {
      emit_buffered();
      if (block) return;
    } else if (mode == Mode::kBufferCoded) {
      if (!rewrite_coded_body(body_buf, body_out)) return;
      // Recompute Content-Length: rewrite only its value(s), right to left.
      const std::string len = std::to_string(body_out.size());
      for (std::size_t k = cl_offsets.size(); k-- > 0;) head_out.replace(cl_offsets[k], cl_lengths[k], len);
      out->append(head_out);
      out->append(body_out);
      wipe(body_out);
      wipe(head_out);
      std::string().swap(body_out.str());  // a keep-alive connection keeps no body-sized buffer
    }
    finish_buffered_message();
  }

  // The end of a buffered length-framed body: body_out holds the head and the rewritten body.
  // With nothing else in the output yet it becomes the output, so the rewritten body (which may
  // hold values) is neither copied again nor wiped twice (the caller wipes the output). The head
  // keeps its size when the new Content-Length has as many digits as the old one (the usual
  // case); otherwise the head is rewritten and the body copied after it.
  void emit_buffered() {
    if (body_refused) {
      block = std::move(body_refused);
      body_refused.reset();
      return;
    }
    rewrite_body_piece({}, true, body_out, body_open);
    if (block) return;
    const std::size_t head_size = head_out.size();
    const std::string len = std::to_string(body_out.size() - head_size);
    bool same_size = true;
    for (const std::size_t l : cl_lengths) same_size = same_size && l == len.size();
    if (same_size && out->empty()) {
      for (const std::size_t at : cl_offsets) body_out.replace(at, len.size(), len);  // same size: in place
      out->swap(body_out);  // out was empty: body_out now holds its (unused) buffer
      wipe(body_out);
    } else {
      for (std::size_t k = cl_offsets.size(); k-- > 0;) head_out.replace(cl_offsets[k], cl_lengths[k], len);
      out->append(head_out);
      out->append(std::string_view(body_out).substr(head_size));
      wipe_body_out();
    }
    wipe(head_out);
    std::string().swap(body_out.str());  // a keep-alive connection keeps no body-sized buffer
  }

  // In kBuffer, body_out is a buffer reserved for the body's declared length (start_buffered_body
  // wiped what it held before) and written only below its size: values go in behind the bytes
  // before them, and the only bytes ever dropped from its end are an open tail's, verbatim guest
  // bytes. Its size is what may hold values; wiping the whole capacity would touch every page
  // of a body declared large and never sent (a stalled upload the budget refuses).
  void wipe_body_out() noexcept {
    if (mode != Mode::kBuffer) {
      wipe(body_out);
      return;
    }
    if (!body_out.empty()) explicit_bzero(body_out.data(), body_out.size());
    body_out.clear();
  }

  void finish_buffered_message() {
    reset_body();
    body_buf.clear();
    if (body_buf.capacity() > kKeptBodyBytes) std::string().swap(body_buf);
    mode = Mode::kPassthrough;
    in_message = false;
    verbatim_tail = 0;
    committed = out->size();
  }

  // ---- driving ----

  void begin(std::string& to_upstream, std::string* to_guest) {
    out = &out_sink.emplace(to_upstream);
    guest = to_guest;
    committed = to_upstream.size();
    out->append(held);
    verbatim_tail = held.size();
    held.clear();
  }

  Status end(std::size_t carry) {
    if (block) {
      // A buffered request rewritten so far (it may hold values) never leaves.
      wipe_body_out();
      wipe(head_out);
      // Drop this call's output past the last complete message (it may hold values).
      if (out->size() > committed) {
        OPENSSL_cleanse(out->data() + committed, out->size() - committed);
        out->resize(committed);
      }
      held.clear();
      out = nullptr;
      guest = nullptr;
      return Status::kBlocked;
    }
    const std::size_t hold = std::min(carry, verbatim_tail);
    if (hold > 0) {
      held.assign(out->str(), out->size() - hold, hold);
      out->resize(out->size() - hold);
    }
    out = nullptr;
    guest = nullptr;
    return Status::kOk;
  }

  std::size_t current_carry() const {
    if (upgraded) return opaque_det.carry_size();
    if (mode == Mode::kPassthrough && in_message) return body_det.carry_size();
    return 0;
  }

  void opaque_feed(std::string_view data) {
    Match m;
    std::uint64_t at = 0;
    if (!opaque_det.feed(data, nullptr, &m, &at)) {
      opaque_violation(m.secret, m.forms);
      return;
    }
    out->append(data);
    verbatim_tail += data.size();
  }

  // Bytes after an upgrade request wait for its answer (bounded: a client that speaks the new
  // protocol before the 101 would otherwise make the gateway buffer without limit).
  void hold_after_upgrade(std::string_view rest) {
    if (after_upgrade.size() + rest.size() > kMaxHeldAfterUpgrade) {
      set_block(false, {}, Location::kStream,
                "more than " + std::to_string(kMaxHeldAfterUpgrade) +
                    " bytes sent after an upgrade request before its response");
      return;
    }
    after_upgrade.append(rest);
  }

  // The neutral form of an upgrade request (guest bytes, no values): an absolute-form target
  // becomes the authority and an origin-form target, as MessageGate's gate 4 reads them.
  void keep_upgrade_request(const http::RequestHead& head) {
    Request r;
    r.method = std::string(head.view(head.method));
    std::string_view target = head.view(head.target);
    const std::size_t scheme_end = target.find("://");
    if (!target.empty() && target.front() != '/' && scheme_end != std::string_view::npos) {
      std::string_view rest = target.substr(scheme_end + 3);
      const std::size_t path = rest.find_first_of("/?#");
      // Kept as sent: userinfo (`@`) or anything else that is not a host fails gate 4, as for
      // HTTP/1 (an empty authority would let the Host alone decide).
      r.authority = std::string(rest.substr(0, path));
      if (r.authority.empty()) r.authority = "@";
      target = path == std::string_view::npos ? std::string_view("/") : rest.substr(path);
      if (target.front() != '/') r.target = "/";
    }
    r.target += std::string(target);
    for (const http::HeaderField& f : head.fields)
      r.headers.push_back(Field{std::string(head.view(f.name)), std::string(head.view(f.value)), false});
    upgrade_request = std::move(r);
  }

  Status hand_off_upgrade(Request& request, std::string& held_out) {
    if (block || !parser.awaiting_upgrade() || !upgrade_request) return Status::kBlocked;
    parser.resolve_upgrade(true);
    upgraded = true;
    request = std::move(*upgrade_request);
    upgrade_request.reset();
    held_out.swap(after_upgrade);
    wipe(after_upgrade);
    return Status::kOk;
  }

  Status upgrade_answered(bool switched, std::string& to_upstream, std::string& to_guest) {
    if (block) return Status::kBlocked;
    if (!parser.awaiting_upgrade()) return Status::kOk;
    parser.resolve_upgrade(switched);
    std::string pending;
    pending.swap(after_upgrade);
    return feed(pending, to_upstream, to_guest);
  }

  Status feed(std::string_view in, std::string& to_upstream, std::string& to_guest) {
    if (block) return Status::kBlocked;
    begin(to_upstream, &to_guest);
    if (parser.awaiting_upgrade()) {
      hold_after_upgrade(in);
    } else if (upgraded) {
      opaque_feed(in);
    } else {
      const std::size_t n = parser.parse(in, *this);
      if (!block && parser.error() != http::ParseError::kNone) {
        std::string reason = "malformed request: ";
        reason += http::to_string(parser.error());
        set_block(false, {}, in_message ? Location::kBody : Location::kRequestLine, std::move(reason));
      }
      if (!block && parser.awaiting_upgrade()) {
        committed = out->size();
        if (n < in.size()) hold_after_upgrade(in.substr(n));
      }
      if (!block && parser.upgraded()) {
        upgraded = true;
        in_message = false;
        verbatim_tail = 0;
        committed = out->size();
        if (n < in.size()) opaque_feed(in.substr(n));
      }
    }
    return end(current_carry());
  }

  Status finish(std::string& to_upstream) {
    if (block) return Status::kBlocked;
    begin(to_upstream, nullptr);
    Match m;
    std::uint64_t at = 0;
    if (parser.awaiting_upgrade()) {
      // The guest stopped sending before the answer came: what it sent after the upgrade
      // request is not forwarded (it is neither known to be HTTP nor known to be the new
      // protocol); a placeholder in it is still a violation.
      if (!opaque_det.feed(after_upgrade, nullptr, &m, &at) || !opaque_det.finish(nullptr, &m, &at)) {
        opaque_violation(m.secret, m.forms);
      }
      wipe(after_upgrade);
    } else if (upgraded) {
      if (!opaque_det.finish(nullptr, &m, &at)) opaque_violation(m.secret, m.forms);
    } else if (in_message) {
      switch (mode) {
        case Mode::kPassthrough:
          if (any_not_eligible) detect_finish(body_det, Location::kBody);
          break;
        case Mode::kBuffer:
          // The body never completed: it is not forwarded; a violation in it still blocks (what
          // came was scanned as it came, but for a form still open at its end: none, now).
          if (body_refused) {
            block = std::move(body_refused);
            body_refused.reset();
          } else if (any_not_eligible) {
            detect_forms(std::string_view(body_out).substr(body_out.size() - body_open), Location::kBody);
          }
          break;
        case Mode::kBufferCoded:
          // The body never completed: it is not forwarded; a violation in it still blocks.
          if (any_not_eligible) detect_whole(body_buf, Location::kBody);
          break;
        case Mode::kRechunk:
          rechunk({}, true);
          break;
      }
    }
    return end(0);
  }
};

RequestRewriter::RequestRewriter(const SecretSet& set, ConnectionContext context)
    : impl_(std::make_unique<Impl>(set, std::move(context))) {}
RequestRewriter::~RequestRewriter() = default;

Status RequestRewriter::feed(std::string_view in, std::string& to_upstream, std::string& to_guest) {
  return impl_->feed(in, to_upstream, to_guest);
}
Status RequestRewriter::finish(std::string& to_upstream) { return impl_->finish(to_upstream); }
const std::optional<Block>& RequestRewriter::blocked() const noexcept { return impl_->block; }
std::vector<Substitution> RequestRewriter::take_substitutions() {
  std::vector<Substitution> out;
  out.swap(impl_->subs);
  return out;
}
std::size_t RequestRewriter::held_bytes() const noexcept {
  const Impl& m = *impl_;
  return m.head_out.capacity() + m.body_out.capacity() + m.body_buf.capacity() + m.window.capacity() +
         m.RequestGates::held_bytes() + m.held.capacity() + m.after_upgrade.capacity() +
         m.head_raw_at.capacity() * sizeof(std::uint32_t);
}
bool RequestRewriter::in_head() const noexcept { return !impl_->upgraded && impl_->parser.in_head(); }
const std::vector<Substitution>& RequestRewriter::substitutions() const noexcept { return impl_->subs; }
void RequestRewriter::clear_substitutions() noexcept { impl_->recycle_substitutions(); }
const std::vector<ForwardedRequest>& RequestRewriter::forwarded() const noexcept { return impl_->forwarded; }
void RequestRewriter::clear_forwarded() noexcept { impl_->forwarded.clear(); }
std::vector<ForwardedRequest> RequestRewriter::take_forwarded() {
  std::vector<ForwardedRequest> out;
  out.swap(impl_->forwarded);
  return out;
}
bool RequestRewriter::awaiting_upgrade() const noexcept { return impl_->parser.awaiting_upgrade(); }
Status RequestRewriter::upgrade_answered(bool switched, std::string& to_upstream, std::string& to_guest) {
  return impl_->upgrade_answered(switched, to_upstream, to_guest);
}
Status RequestRewriter::hand_off_upgrade(Request& request, std::string& held) {
  return impl_->hand_off_upgrade(request, held);
}
bool RequestRewriter::values_may_flow() const noexcept { return impl_->values_flowed; }
void RequestRewriter::assume_values_may_flow() noexcept { impl_->values_flowed = true; }
bool RequestRewriter::at_message_boundary() const noexcept {
  const Impl& m = *impl_;
  return !m.block && !m.upgraded && !m.in_message && m.held.empty() && m.after_upgrade.empty() &&
         !m.parser.awaiting_upgrade() && !m.parser.in_head() && m.parser.at_message_boundary();
}

// ---- StreamScanner ----

struct StreamScanner::Impl {
  Impl(const SecretSet& s, ConnectionContext c) : set(s), ctx(std::move(c)), det(s.compiled()) {}
  const SecretSet& set;
  ConnectionContext ctx;
  StreamDetector det;
  std::string held;
  std::optional<Block> block;

  void violation(const Match& m) {
    Block b;
    b.action = set.action();
    b.violation = true;
    b.secret_env = set.secrets()[m.secret].env_var();
    b.host = ctx.sni.empty() ? ctx.destination.to_string() : ctx.sni;
    b.location = Location::kStream;
    b.reason = "placeholder (" + std::string(form_name(m.forms)) + ") in a cleartext stream to " + detail::quote(b.host) +
               "; placeholders are never substituted on connections that are not HTTP";
    block = std::move(b);
  }

  Status feed(std::string_view in, std::string& out) {
    if (block) return Status::kBlocked;
    Match m;
    std::uint64_t at = 0;
    if (!det.feed(in, nullptr, &m, &at)) {
      violation(m);
      held.clear();
      return Status::kBlocked;
    }
    out.append(held);
    out.append(in);
    const std::size_t hold = det.carry_size();
    held.assign(out, out.size() - hold, hold);
    out.resize(out.size() - hold);
    return Status::kOk;
  }

  Status finish(std::string& out) {
    if (block) return Status::kBlocked;
    Match m;
    std::uint64_t at = 0;
    if (!det.finish(nullptr, &m, &at)) {
      violation(m);
      held.clear();
      return Status::kBlocked;
    }
    out.append(held);
    held.clear();
    return Status::kOk;
  }
};

StreamScanner::StreamScanner(const SecretSet& set, ConnectionContext context)
    : impl_(std::make_unique<Impl>(set, std::move(context))) {}
StreamScanner::~StreamScanner() = default;
Status StreamScanner::feed(std::string_view in, std::string& out) { return impl_->feed(in, out); }
Status StreamScanner::finish(std::string& out) { return impl_->finish(out); }
const std::optional<Block>& StreamScanner::blocked() const noexcept { return impl_->block; }

}  // namespace airlock::secrets
