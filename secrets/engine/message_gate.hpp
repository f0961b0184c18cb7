#pragma once
// The protocol-neutral face of the secrets engine (secrets-spec §3–§5): one request as events —
// its head (method, authority, target, ordered header fields), body pieces, trailers — gated
// and rewritten by the same gates as the HTTP/1 RequestRewriter (both feed the engine's
// RequestGates). A codec that is not HTTP/1 (an HTTP/2 stream, WebSocket messages after a 101)
// drives one MessageGate per request and never decides a gate itself. Pure: no I/O.
#include <secrets/engine/engine.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::secrets {

struct Field {
  std::string name;   // as the codec carries it (HTTP/2: lower case)
  std::string value;  // may hold a value after on_headers: the codec wipes it once written
  // A value was substituted into this field: HTTP/2 sends it as a never-indexed HPACK literal,
  // so neither side's dynamic table ever holds it.
  bool sensitive = false;
};

struct Request {
  std::string method;
  std::string authority;  // HTTP/2 `:authority`; empty when absent (then a `host` field is used)
  std::string target;     // path and query (`:path`); empty for CONNECT
  std::vector<Field> headers;  // regular fields in order (a `host` field included)
  bool target_sensitive = false;  // a value was substituted into the query
};

class MessageGate {
 public:
  MessageGate(const SecretSet& set, ConnectionContext context);
  ~MessageGate();  // wipes every buffer that may have held a value
  MessageGate(const MessageGate&) = delete;
  MessageGate& operator=(const MessageGate&) = delete;

  // The head: gates decided, placeholders substituted in place (header values, Basic
  // credentials, the query), the substituted fields flagged sensitive. `end_stream`: no body
  // follows. `restrict_responses`: values may already flow on this connection (another request
  // on it was eligible); with it, or when this request is eligible, the fields that decide the
  // response's codings are edited as HTTP/1 does (one `accept-encoding: identity`; `te` only
  // "trailers"; for gRPC `grpc-accept-encoding: identity`) so that the response scrubber can
  // read every echo. When a body injection is due,
  // `content-length` is removed (the rewritten length is known only at the end): see
  // length_dropped().
  Status on_headers(Request& request, bool end_stream, bool restrict_responses = false);
  // A piece of the body, in order; `end`: the last one. Appends to `out` what is safe to forward
  // now: a tail that may begin a placeholder is held until the next piece (a placeholder split
  // across pieces is found), a compressed body with an injection due is held whole (bounded by
  // the body cap) and leaves rewritten at its end. `out` may hold values: wipe it once written.
  Status on_data(std::string_view piece, bool end, std::string& out);
  // The guest paused (nothing more to read now): a passthrough body's held tail (guest bytes
  // that may begin a placeholder form, never a value) is appended to `out`, so a streaming call
  // (gRPC client or bidirectional streaming) is not stalled. Detection keeps its own carry: a
  // placeholder completed by a later piece is still a violation; only its first bytes may have
  // left. A body being rewritten (an injection due) keeps its carry: it may become a value.
  void release_held(std::string& out);
  // Trailers end the body (what was held is appended to `out`); a placeholder in them is a
  // violation when its secret is not eligible (never substituted, as for HTTP/1).
  Status on_trailers(std::vector<Field>& trailers, std::string& out);
  // A message stream (WebSocket after its upgrade request was gated): the next message's body
  // follows; the gates stay decided for the same request. Such a codec opens the gate with the
  // upgrade request's method, authority (its Host) and target and no header fields (the HTTP/1
  // rewriter already substituted and audited those), end_stream false; then each message's
  // payload (decompressed, unmasked) goes through on_data with `end` on its last piece, and
  // next_message() before the next one.
  void next_message();
  // Another request on the same connection (an HTTP/2 stream after this gate's stream ended):
  // every per-request state goes (the head, the body and its detectors, the substitutions, the
  // values-may-flow flag; buffers that may have held a value are wiped), while what depends only
  // on the connection stays: the gates 1–3 decided for the SNI (cached per host), the buffers'
  // capacity. The next on_headers decides the authority, pins and scopes anew for its request.
  // A gate that blocked is never reused: false, and nothing changes.
  bool next_request();

  const std::optional<Block>& blocked() const noexcept;
  std::vector<Substitution> take_substitutions();  // since the last call
  bool values_may_flow() const noexcept;  // some secret was eligible for this request
  bool length_dropped() const noexcept;   // on_headers removed content-length (body rewritten)
  std::size_t held_bytes() const noexcept;  // buffer capacity held (memory budget)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::secrets
