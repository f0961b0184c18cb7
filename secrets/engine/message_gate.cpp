// The protocol-neutral request over the engine's gates. See message_gate.hpp.
#include <secrets/engine/message_gate.hpp>

#include <secrets/engine/request_gates.hpp>

#include <charconv>
#include <utility>

namespace airlock::secrets {

using detail::host_part;
using detail::iequals;

struct MessageGate::Impl final : detail::RequestGates {
  // kStream: identity body with an injection due, rewritten piece by piece (a tail that may begin
  // a placeholder carried). kBufferCoded: a compressed body with an injection due, held whole.
  enum class Mode : std::uint8_t { kPassthrough, kStream, kBufferCoded };

  Impl(const SecretSet& s, ConnectionContext c) : RequestGates(s, std::move(c)) {}
  ~Impl() {
    wipe(window);
    wipe(piece_out);
    std::string().swap(body_buf);  // guest bytes only
    wipe(scratch_value);
  }

  bool head_seen = false;
  bool body_ended = false;
  bool length_dropped = false;
  Mode mode = Mode::kPassthrough;
  std::string held;    // passthrough: tail held back (guest bytes; a prefix of a placeholder)
  std::string window;  // kStream: carry + new piece (guest bytes)
  std::string piece_out;
  std::string body_buf;  // kBufferCoded: the compressed body (guest bytes)
  std::string scratch_value;

  // ---- the head ----

  // Gate 4 inputs: the authority (or one `host` field when there is none), every `host` field
  // equal to it, and a target in origin form (or `*`; CONNECT has none).
  std::string req_host, other_host;  // decide_authority's (reused: no allocation per request)

  void decide_authority(const Request& r) {
    std::string& req_host = this->req_host;
    std::string& other = other_host;
    bool ok = true;
    std::size_t host_fields = 0;
    std::string_view host_value;
    for (const Field& f : r.headers) {
      if (iequals(f.name, "host")) {
        ++host_fields;
        host_value = f.value;
      }
    }
    if (host_fields > 1) ok = false;
    if (!r.authority.empty()) {
      ok = ok && host_part(r.authority, req_host);
      if (host_fields == 1) ok = ok && host_part(host_value, other) && other == req_host;
    } else {
      ok = ok && host_fields == 1 && host_part(host_value, req_host);
    }
    if (!ok) req_host.clear();
    if (r.method == "CONNECT") {
      ok = ok && r.target.empty();
    } else {
      ok = ok && (r.target == "*" || (!r.target.empty() && r.target.front() == '/'));
    }
    decide(req_host, ok);
  }

  // As HTTP/1 scans its head: raw, percent and JSON forms everywhere, then inside Basic
  // credentials, then base64 forms (so a form is reported where HTTP/1 reports it).
  bool scan_head_violations(const Request& r) {
    const std::size_t q = r.target.find('?');
    const std::string_view target(r.target);
    const std::string_view path = target.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    const auto each = [&](auto&& check) {
      if (!check(r.method, Location::kRequestLine) || !check(r.authority, Location::kRequestLine) ||
          !check(path, Location::kRequestLine) || !check(query, Location::kQuery)) {
        return false;
      }
      for (const Field& f : r.headers) {
        if (!check(f.name, Location::kHeader) || !check(f.value, Location::kHeader)) return false;
      }
      return true;
    };
    if (!each([&](std::string_view t, Location l) { return detect_forms(t, l); })) return false;
    for (const Field& f : r.headers) {
      if (!detect_basic(f.name, f.value)) return false;
    }
    return each([&](std::string_view t, Location l) { return detect_base64(t, l); });
  }

  // Edits the fields that decide the response's codings (see on_headers).
  static void restrict_fields(std::vector<Field>& headers) {
    bool accept_encoding = false;
    // In place, in order. A value replaced or dropped is wiped first (it may have been substituted).
    const auto replace = [](Field& f, const char* value) {
      wipe(f.value);
      f.value = value;
    };
    // True: drop the field.
    const auto edit = [&](Field& f) {
      if (iequals(f.name, "accept-encoding")) {
        if (std::exchange(accept_encoding, true)) {
          wipe(f.value);
          return true;
        }
        replace(f, "identity");
      } else if (iequals(f.name, "grpc-accept-encoding")) {
        // gRPC compresses messages inside identity DATA: the same offer, for the same reason.
        replace(f, "identity");
      } else if (iequals(f.name, "te")) {
        bool trailers = false;
        std::string_view list(f.value);
        while (!list.empty()) {
          const std::size_t comma = list.find(',');
          std::string_view item = list.substr(0, comma);
          while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
          while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
          trailers = trailers || iequals(item, "trailers");
          if (comma == std::string_view::npos) break;
          list.remove_prefix(comma + 1);
        }
        if (!trailers) {
          wipe(f.value);
          return true;
        }
        replace(f, "trailers");
      }
      return false;
    };
    std::size_t kept = 0;
    for (std::size_t i = 0; i < headers.size(); ++i) {
      if (edit(headers[i])) continue;
      if (kept != i) headers[kept] = std::move(headers[i]);
      ++kept;
    }
    headers.resize(kept);
    if (!accept_encoding) headers.push_back(Field{"accept-encoding", "identity", false});
  }

  bool substitute_head(Request& r) {
    if (any_query) {
      const std::size_t q = r.target.find('?');
      if (q != std::string::npos) {
        const std::size_t before = subs.size();
        scratch_value.assign(r.target, 0, q + 1);
        if (!substitute_query(std::string_view(r.target).substr(q + 1), scratch_value)) return false;
        if (subs.size() != before) {
          wipe(r.target);
          r.target.swap(scratch_value);
          r.target_sensitive = true;
        }
        wipe(scratch_value);
      }
    }
    if (!any_headers && !any_basic) return true;
    for (Field& f : r.headers) {
      const std::size_t before = subs.size();
      scratch_value.clear();
      if (!substitute_header_value(f.name, f.value, scratch_value)) return false;
      if (subs.size() != before) {
        wipe(f.value);
        f.value.swap(scratch_value);
        f.sensitive = true;
      }
      wipe(scratch_value);
    }
    return true;
  }

  Status on_headers(Request& r, bool end_stream, bool restrict_responses) {
    if (block) return Status::kBlocked;
    if (head_seen) {
      set_block(false, {}, Location::kHeader, "a second request head on one message");
      return Status::kBlocked;
    }
    head_seen = true;
    decide_authority(r);
    if (any_not_eligible && !scan_head_violations(r)) return Status::kBlocked;
    note_values_may_flow();

    std::string content_encoding;
    std::optional<std::uint64_t> content_length;
    bool length_bad = false;
    for (const Field& f : r.headers) {
      if (iequals(f.name, "content-encoding")) {
        if (!content_encoding.empty()) content_encoding += ", ";
        content_encoding += f.value;
      } else if (iequals(f.name, "content-length")) {
        std::uint64_t v = 0;
        const auto res = std::from_chars(f.value.data(), f.value.data() + f.value.size(), v);
        if (res.ec != std::errc{} || res.ptr != f.value.data() + f.value.size() || (content_length && *content_length != v)) {
          length_bad = true;
        } else {
          content_length = v;
        }
      }
    }
    parse_body_codings(content_encoding);
    mode = Mode::kPassthrough;
    if (any_body && !end_stream) {
      if (length_bad) {
        set_block(false, set.secrets()[first_body_due()].env_var(), Location::kHeader,
                  "a body injection is due but content-length is malformed or repeated with different values");
        return Status::kBlocked;
      }
      if (!check_body_shape(content_length)) return Status::kBlocked;
      mode = body_codings.empty() ? Mode::kStream : Mode::kBufferCoded;
    }
    if (mode == Mode::kPassthrough && any_not_eligible && !body_codings.empty() && !end_stream) start_inflated_scan();

    if (!substitute_head(r)) return Status::kBlocked;
    if (restrict_responses || values_flowed) restrict_fields(r.headers);
    if (mode != Mode::kPassthrough) {
      std::erase_if(r.headers, [](const Field& f) { return iequals(f.name, "content-length"); });
      length_dropped = content_length.has_value();
    }
    if (end_stream) body_ended = true;
    return Status::kOk;
  }

  // ---- the body ----

  // The caller's output may hold values from earlier pieces: it grows through a ValueSink.
  void release_passthrough(std::string_view piece, ValueSink out) {
    // The detector's carry is the stream's undecided tail: held back so that a placeholder cut
    // by a frame boundary never reaches the upstream in part before it is found.
    window.assign(held);
    window.append(piece);
    const std::size_t hold = any_not_eligible ? std::min(body_det.carry_size(), window.size()) : 0;
    out.append(std::string_view(window).substr(0, window.size() - hold));
    held.assign(window, window.size() - hold, hold);
    window.clear();
  }

  Status on_data(std::string_view piece, bool end, ValueSink out) {
    if (block) return Status::kBlocked;
    if (!head_seen || body_ended) {
      set_block(false, {}, Location::kBody, head_seen ? "data after the end of the body" : "data before the request head");
      return Status::kBlocked;
    }
    switch (mode) {
      case Mode::kPassthrough:
        if (any_not_eligible && !detect(body_det, piece, Location::kBody)) return Status::kBlocked;
        scan_inflated(piece, false);
        if (end) {
          if (any_not_eligible && !detect_finish(body_det, Location::kBody)) return Status::kBlocked;
          if (!finish_inflated()) return Status::kBlocked;
          out.append(held);
          out.append(piece);
          held.clear();
        } else {
          release_passthrough(piece, out);
        }
        break;
      case Mode::kStream: {
        // rewrite_body sees raw, percent and JSON forms; the stream detector adds base64 ones.
        if (any_not_eligible && !detect(body_det, piece, Location::kBody)) return Status::kBlocked;
        if (end && any_not_eligible && !detect_finish(body_det, Location::kBody)) return Status::kBlocked;
        window.append(piece);
        piece_out.clear();
        const std::size_t settled = rewrite_body(window, end, piece_out);
        if (block) {
          wipe(piece_out);
          return Status::kBlocked;
        }
        out.append(piece_out);
        wipe(piece_out);
        window.erase(0, settled);
        break;
      }
      case Mode::kBufferCoded:
        if (body_buf.size() + piece.size() > set.options().max_body_bytes) {
          set_block(false, set.secrets()[first_body_due()].env_var(), Location::kBody,
                    "a body injection is due but the compressed body exceeds the body size cap of " +
                        std::to_string(set.options().max_body_bytes) + " bytes");
          return Status::kBlocked;
        }
        body_buf.append(piece);
        if (end) {
          piece_out.clear();
          if (!rewrite_coded_body(body_buf, piece_out)) {
            wipe(piece_out);
            return Status::kBlocked;
          }
          out.append(piece_out);
          wipe(piece_out);
          std::string().swap(body_buf);
        }
        break;
    }
    if (end) body_ended = true;
    return Status::kOk;
  }

  void release_held(ValueSink out) {
    if (block || body_ended || mode != Mode::kPassthrough) return;
    out.append(held);
    held.clear();
  }

  Status on_trailers(std::vector<Field>& trailers, ValueSink out) {
    if (block) return Status::kBlocked;
    if (!body_ended && on_data({}, true, out) != Status::kOk) return Status::kBlocked;
    if (!any_not_eligible) return Status::kOk;
    for (const Field& f : trailers) {
      if (!detect_whole(f.name, Location::kTrailer) || !detect_whole(f.value, Location::kTrailer) ||
          !detect_basic(f.name, f.value)) {
        return Status::kBlocked;
      }
    }
    return Status::kOk;
  }

  bool next_request() {
    if (block) return false;
    head_seen = false;
    body_ended = false;
    length_dropped = false;
    mode = Mode::kPassthrough;
    held.clear();  // guest bytes only
    wipe(window);
    wipe(piece_out);
    body_buf.clear();  // guest bytes only
    wipe(scratch_value);
    reset_body();
    subs.clear();
    values_flowed = false;
    return true;
  }

  void next_message() {
    reset_body();
    held.clear();
    window.clear();
    std::string().swap(body_buf);
    body_ended = false;
  }
};

MessageGate::MessageGate(const SecretSet& set, ConnectionContext context)
    : impl_(std::make_unique<Impl>(set, std::move(context))) {}
MessageGate::~MessageGate() = default;

Status MessageGate::on_headers(Request& request, bool end_stream, bool restrict_responses) {
  return impl_->on_headers(request, end_stream, restrict_responses);
}
Status MessageGate::on_data(std::string_view piece, bool end, std::string& out) {
  return impl_->on_data(piece, end, out);
}
Status MessageGate::on_trailers(std::vector<Field>& trailers, std::string& out) {
  return impl_->on_trailers(trailers, out);
}
void MessageGate::next_message() { impl_->next_message(); }
bool MessageGate::next_request() { return impl_->next_request(); }
void MessageGate::release_held(std::string& out) { impl_->release_held(out); }
const std::optional<Block>& MessageGate::blocked() const noexcept { return impl_->block; }
std::vector<Substitution> MessageGate::take_substitutions() {
  std::vector<Substitution> out;
  out.swap(impl_->subs);
  return out;
}
bool MessageGate::values_may_flow() const noexcept { return impl_->values_flowed; }
bool MessageGate::length_dropped() const noexcept { return impl_->length_dropped; }
std::size_t MessageGate::held_bytes() const noexcept {
  const Impl& m = *impl_;
  return m.held.capacity() + m.window.capacity() + m.piece_out.capacity() + m.body_buf.capacity() +
         m.scratch_value.capacity() + m.RequestGates::held_bytes();
}

}  // namespace airlock::secrets
