// The HTTP/2 bridge (see h2_bridge.hpp): guest stream ↔ upstream stream, each request through
// its MessageGate, each response through the scrubber.
#include "gateway/h2_bridge.hpp"

#include <asio/experimental/awaitable_operators.hpp>

#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

namespace airlock::gateway {
namespace {

using http::h2::ErrorCode;
using http::h2::Event;
using http::h2::H2Error;
using http::h2::Header;
using http::h2::Headers;

// Below this many bytes queued toward the other side, a stream's received DATA is given back to
// its sender's flow-control window: each side then holds at most about one window per stream.
constexpr std::size_t kLowWater = 64 * 1024;

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
         });
}

}  // namespace

struct H2Bridge::StreamState {
  StreamState(const secrets::SecretSet& set, const secrets::ConnectionContext& context) : gate(set, context) {}
  std::int32_t guest_id = 0;
  std::int32_t upstream_id = 0;  // 0: not (yet) opened upstream
  secrets::MessageGate gate;
  std::optional<http::ResponseScrubber> scrubber;
  bool blocked = false;            // reset both ways; later events are dropped
  bool response_started = false;   // a final response head went to the guest
  bool response_done = false;
  std::size_t guest_unconsumed = 0;     // guest DATA not yet given back to the guest's window
  std::size_t upstream_unconsumed = 0;  // upstream DATA not yet given back to the upstream's window
};

H2Bridge::H2Bridge(const secrets::SecretSet& set, secrets::ConnectionContext context, const http::ScrubForms* forms,
                   http::h2::SessionLimits limits)
    : set_(set),
      context_(std::move(context)),
      forms_(forms),
      guest_(http::h2::Role::kServer, limits),
      upstream_(http::h2::Role::kClient, limits) {
  // Responses come back readable by the scrubber (identity coding) on every stream of a
  // connection where some secret may be eligible, from its first stream on: whether a value
  // flows is known per stream, and a compressed response on one stream may echo another's.
  for (const SecretBinding& s : set_.secrets()) {
    if (!context_.sni.empty() && (s.any_host() || s.match_host(context_.sni) != nullptr)) restrict_ = true;
  }
}

H2Bridge::~H2Bridge() { wipe(piece_); }

std::size_t H2Bridge::held_bytes() const noexcept {
  std::size_t n = guest_.held_bytes() + upstream_.held_bytes() + piece_.capacity();
  for (const auto& [id, s] : streams_) n += s->gate.held_bytes();
  return n;
}

bool H2Bridge::done() const { return guest_.closed() && upstream_.closed(); }

std::vector<H2Notice> H2Bridge::take_notices() {
  std::vector<H2Notice> out;
  out.swap(notices_);
  return out;
}

void H2Bridge::session_error(const char* side, H2Error e) {
  H2Notice n;
  n.kind = H2Notice::Kind::kSessionError;
  n.reason = std::string(side) + ": " + http::h2::describe(e);
  notices_.push_back(std::move(n));
  terminated_ = true;
}

// ---- guest → upstream ----

void H2Bridge::from_guest(std::string_view bytes) {
  events_.clear();
  const H2Error e = guest_.receive(bytes, events_);
  for (Event& ev : events_) on_guest_event(ev);
  events_.clear();
  if (e != H2Error::kNone && !terminated_) session_error("guest", e);
}

void H2Bridge::on_guest_event(Event& e) {
  if (terminated_) return;
  if (e.kind == Event::Kind::kGoaway) {
    upstream_.goaway(static_cast<ErrorCode>(e.code));
    return;
  }
  auto it = streams_.find(e.stream);
  if (e.kind == Event::Kind::kHeaders) {
    if (it != streams_.end()) return;  // a second head: nghttp2 rejects it as malformed already
    auto state = std::make_unique<StreamState>(set_, context_);
    state->guest_id = e.stream;
    StreamState& s = *state;
    streams_.emplace(e.stream, std::move(state));
    request_headers(s, e);
    return;
  }
  if (it == streams_.end()) return;
  StreamState& s = *it->second;
  switch (e.kind) {
    case Event::Kind::kData:
      s.guest_unconsumed += e.data.size();
      if (s.blocked) {
        guest_.consumed(s.guest_id, std::exchange(s.guest_unconsumed, 0));
        return;
      }
      request_data(s, e.data, e.end_stream);
      return;
    case Event::Kind::kTrailers:
      if (!s.blocked) request_trailers(s, e);
      return;
    case Event::Kind::kReset:
      if (s.upstream_id != 0) upstream_.reset(s.upstream_id, static_cast<ErrorCode>(e.code));
      return;
    case Event::Kind::kClosed:
      close_stream(s.guest_id);
      return;
    default: return;
  }
}

void H2Bridge::request_headers(StreamState& s, Event& e) {
  secrets::Request req;
  Headers pseudo_rest;  // other pseudo-headers (:scheme), forwarded as they came
  for (Header& h : e.headers) {
    if (h.name == ":method") req.method = std::move(h.value);
    else if (h.name == ":authority") req.authority = std::move(h.value);
    else if (h.name == ":path") req.target = std::move(h.value);
    else if (!h.name.empty() && h.name[0] == ':') pseudo_rest.push_back(std::move(h));
    else req.headers.push_back(secrets::Field{std::move(h.name), std::move(h.value), h.never_index});
  }
  const secrets::Status st = s.gate.on_headers(req, e.end_stream, restrict_);
  take_substitutions(s);
  if (st == secrets::Status::kBlocked) {
    for (secrets::Field& f : req.headers) wipe(f.value);
    block_stream(s);
    return;
  }
  values_flowed_ = values_flowed_ || s.gate.values_may_flow();
  Headers out;
  out.reserve(req.headers.size() + 4);
  out.push_back(Header{":method", req.method, false});
  for (Header& h : pseudo_rest) out.push_back(std::move(h));
  if (!req.authority.empty()) out.push_back(Header{":authority", req.authority, false});
  if (!req.target.empty()) out.push_back(Header{":path", req.target, req.target_sensitive});
  for (secrets::Field& f : req.headers) out.push_back(Header{std::move(f.name), std::move(f.value), f.sensitive});
  const http::h2::StreamResult r = upstream_.submit_request(out, e.end_stream);
  for (Header& h : out) wipe(h.value);  // nghttp2 copied them
  wipe(req.target);
  if (r.error != H2Error::kNone) {
    // Nothing of the request left: the guest may retry it (on another connection for kClosed).
    guest_.reset(s.guest_id, r.error == H2Error::kClosed ? ErrorCode::kRefusedStream : ErrorCode::kInternalError);
    block_response(s, std::string("the upstream session did not take the request: ") + http::h2::describe(r.error));
    return;
  }
  s.upstream_id = r.stream;
  by_upstream_[r.stream] = s.guest_id;
}

void H2Bridge::request_data(StreamState& s, std::string_view data, bool end) {
  piece_.clear();
  const secrets::Status st = s.gate.on_data(data, end, piece_);
  take_substitutions(s);
  if (st == secrets::Status::kBlocked) {
    wipe(piece_);
    block_stream(s);
    return;
  }
  if (s.upstream_id == 0) {
    wipe(piece_);
    return;
  }
  const H2Error e = upstream_.submit_data(s.upstream_id, piece_, end);
  wipe(piece_);
  if (e != H2Error::kNone) block_response(s, std::string("request DATA not forwarded: ") + http::h2::describe(e));
}

void H2Bridge::request_trailers(StreamState& s, Event& e) {
  std::vector<secrets::Field> fields;
  for (Header& h : e.headers) fields.push_back(secrets::Field{std::move(h.name), std::move(h.value), h.never_index});
  piece_.clear();
  const secrets::Status st = s.gate.on_trailers(fields, piece_);
  take_substitutions(s);
  if (st == secrets::Status::kBlocked) {
    wipe(piece_);
    block_stream(s);
    return;
  }
  if (s.upstream_id == 0) return;
  H2Error err = piece_.empty() ? H2Error::kNone : upstream_.submit_data(s.upstream_id, piece_, false);
  wipe(piece_);
  Headers out;
  for (secrets::Field& f : fields) out.push_back(Header{std::move(f.name), std::move(f.value), f.sensitive});
  if (err == H2Error::kNone) err = upstream_.submit_trailers(s.upstream_id, out);
  if (err != H2Error::kNone) block_response(s, std::string("request trailers not forwarded: ") + http::h2::describe(err));
}

void H2Bridge::take_substitutions(StreamState& s) {
  for (secrets::Substitution& sub : s.gate.take_substitutions()) {
    H2Notice n;
    n.kind = H2Notice::Kind::kSubstitution;
    n.stream = s.guest_id;
    n.substitution = std::move(sub);
    notices_.push_back(std::move(n));
  }
}

// The stream's request is blocked: reset both ways (what went upstream of it, a streamed body's
// first pieces, cannot be recalled), audited; block-and-terminate ends the connection.
void H2Bridge::block_stream(StreamState& s) {
  s.blocked = true;
  const secrets::Block& b = *s.gate.blocked();
  H2Notice n;
  n.kind = H2Notice::Kind::kBlocked;
  n.stream = s.guest_id;
  n.block = b;
  notices_.push_back(std::move(n));
  // CANCEL, not REFUSED_STREAM: a refused stream invites the client to retry it as is.
  guest_.reset(s.guest_id, ErrorCode::kCancel);
  guest_.consumed(s.guest_id, std::exchange(s.guest_unconsumed, 0));
  if (s.upstream_id != 0) upstream_.reset(s.upstream_id, ErrorCode::kCancel);
  // As for HTTP/1, only a violation under block-and-terminate ends everything (the sandbox too).
  if (b.violation && b.action == ViolationAction::kBlockAndTerminate) terminated_ = true;
}

void H2Bridge::block_response(StreamState& s, std::string reason) {
  s.blocked = true;
  H2Notice n;
  n.kind = H2Notice::Kind::kResponseBlocked;
  n.stream = s.guest_id;
  n.reason = std::move(reason);
  notices_.push_back(std::move(n));
  guest_.reset(s.guest_id, ErrorCode::kCancel);
  guest_.consumed(s.guest_id, std::exchange(s.guest_unconsumed, 0));
  if (s.upstream_id != 0) {
    upstream_.reset(s.upstream_id, ErrorCode::kCancel);
    upstream_.consumed(s.upstream_id, std::exchange(s.upstream_unconsumed, 0));
  }
}

void H2Bridge::close_stream(std::int32_t guest_id) {
  auto it = streams_.find(guest_id);
  if (it == streams_.end()) return;
  StreamState& s = *it->second;
  if (s.upstream_id != 0) {
    if (!s.response_done) upstream_.reset(s.upstream_id, ErrorCode::kCancel);
    upstream_.consumed(s.upstream_id, s.upstream_unconsumed);
    by_upstream_.erase(s.upstream_id);
  }
  streams_.erase(it);
}

// ---- upstream → guest ----

void H2Bridge::from_upstream(std::string_view bytes) {
  events_.clear();
  const H2Error e = upstream_.receive(bytes, events_);
  for (Event& ev : events_) on_upstream_event(ev);
  events_.clear();
  if (e != H2Error::kNone && !terminated_) session_error("upstream", e);
}

void H2Bridge::on_upstream_event(Event& e) {
  if (terminated_) return;
  if (e.kind == Event::Kind::kGoaway) {
    guest_.goaway(static_cast<ErrorCode>(e.code));
    return;
  }
  auto up = by_upstream_.find(e.stream);
  if (up == by_upstream_.end()) return;
  auto it = streams_.find(up->second);
  if (it == streams_.end()) return;
  StreamState& s = *it->second;
  if (e.kind == Event::Kind::kData) s.upstream_unconsumed += e.data.size();
  if (s.blocked) {
    upstream_.consumed(s.upstream_id, std::exchange(s.upstream_unconsumed, 0));
    return;
  }
  switch (e.kind) {
    case Event::Kind::kHeaders: response_headers(s, e); return;
    case Event::Kind::kData: response_data(s, e.data, e.end_stream); return;
    case Event::Kind::kTrailers: response_trailers(s, e); return;
    case Event::Kind::kReset:
      guest_.reset(s.guest_id, static_cast<ErrorCode>(e.code));
      s.response_done = true;
      return;
    case Event::Kind::kClosed:
      if (!s.response_done) {
        guest_.reset(s.guest_id, e.code != 0 ? static_cast<ErrorCode>(e.code) : ErrorCode::kInternalError);
        s.response_done = true;
      }
      by_upstream_.erase(up);
      upstream_.consumed(s.upstream_id, std::exchange(s.upstream_unconsumed, 0));
      s.upstream_id = 0;
      return;
    default: return;
  }
}

void H2Bridge::scrub_headers(Headers& headers) {
  if (forms_ == nullptr) return;
  std::string out;
  for (Header& h : headers) {
    http::ResponseScrubber scrubber(*forms_);
    out.clear();
    scrubber.feed(h.value, out);
    scrubber.flush(out);
    if (scrubber.masked_bytes() != 0) {
      OPENSSL_cleanse(h.value.data(), h.value.size());
      h.value.swap(out);
      if (!std::exchange(scrub_reported_, true)) notices_.push_back(H2Notice{H2Notice::Kind::kScrubbed, 0, {}, {}, {}});
    }
  }
}

void H2Bridge::scrub_into(StreamState& s, std::string_view data, bool end, std::string& out) {
  if (forms_ == nullptr) {
    out.append(data);
    return;
  }
  if (!s.scrubber) s.scrubber.emplace(*forms_);
  const std::uint64_t before = s.scrubber->masked_bytes();
  s.scrubber->feed(data, out);
  if (end) s.scrubber->flush(out);
  if (s.scrubber->masked_bytes() != before && !std::exchange(scrub_reported_, true)) {
    notices_.push_back(H2Notice{H2Notice::Kind::kScrubbed, 0, {}, {}, {}});
  }
}

void H2Bridge::response_headers(StreamState& s, Event& e) {
  if (!e.informational && values_flowed_) {
    // As for HTTP/1: where a value may have reached this upstream, only identity bodies are
    // readable by the scrubber; a compressed echo would carry the value past it.
    for (const Header& h : e.headers) {
      if (iequals(h.name, "content-encoding") && !iequals(h.value, "identity")) {
        block_response(s, "a response with content-encoding " + h.value.substr(0, 32) +
                              " from a host that may have received a secret value: not forwarded "
                              "(the scrubber reads only identity bodies)");
        return;
      }
    }
  }
  scrub_headers(e.headers);
  const H2Error err = guest_.submit_response(s.guest_id, e.headers, e.end_stream);
  if (err != H2Error::kNone) {
    block_response(s, std::string("response head not forwarded: ") + http::h2::describe(err));
    return;
  }
  if (!e.informational) s.response_started = true;
  if (e.end_stream) s.response_done = true;
}

void H2Bridge::response_data(StreamState& s, std::string_view data, bool end) {
  std::string out;
  scrub_into(s, data, end, out);
  const H2Error err = guest_.submit_data(s.guest_id, out, end);
  if (err != H2Error::kNone) {
    block_response(s, std::string("response DATA not forwarded: ") + http::h2::describe(err));
    return;
  }
  if (end) s.response_done = true;
}

void H2Bridge::response_trailers(StreamState& s, Event& e) {
  std::string out;
  if (s.scrubber) s.scrubber->flush(out);
  H2Error err = out.empty() ? H2Error::kNone : guest_.submit_data(s.guest_id, out, false);
  scrub_headers(e.headers);  // gRPC: grpc-status, grpc-message (may echo a value)
  if (err == H2Error::kNone) err = guest_.submit_trailers(s.guest_id, e.headers);
  if (err != H2Error::kNone) {
    block_response(s, std::string("response trailers not forwarded: ") + http::h2::describe(err));
    return;
  }
  s.response_done = true;
}

void H2Bridge::flush_responses() {
  if (terminated_) return;
  std::string out;
  for (auto& [id, sp] : streams_) {
    StreamState& s = *sp;
    if (s.blocked || s.response_done || !s.scrubber || s.scrubber->pending() == 0) continue;
    out.clear();
    const std::uint64_t before = s.scrubber->masked_bytes();
    s.scrubber->flush(out);
    if (s.scrubber->masked_bytes() != before && !std::exchange(scrub_reported_, true)) {
      notices_.push_back(H2Notice{H2Notice::Kind::kScrubbed, 0, {}, {}, {}});
    }
    if (!out.empty() && guest_.submit_data(s.guest_id, out, false) != H2Error::kNone) {
      block_response(s, "response DATA not forwarded: the guest's queue is full");
    }
  }
}

// ---- output and flow control ----

void H2Bridge::give_back_windows() {
  for (auto& [id, sp] : streams_) {
    StreamState& s = *sp;
    if (s.guest_unconsumed > 0 && (s.upstream_id == 0 || upstream_.queued_bytes(s.upstream_id) < kLowWater)) {
      guest_.consumed(s.guest_id, std::exchange(s.guest_unconsumed, 0));
    }
    if (s.upstream_unconsumed > 0 && s.upstream_id != 0 && guest_.queued_bytes(s.guest_id) < kLowWater) {
      upstream_.consumed(s.upstream_id, std::exchange(s.upstream_unconsumed, 0));
    }
  }
}

void H2Bridge::take_output(std::string& to_guest, std::string& to_upstream) {
  upstream_.pending_output(to_upstream);
  guest_.pending_output(to_guest);
  give_back_windows();
  upstream_.pending_output(to_upstream);
  guest_.pending_output(to_guest);
}

// ---- I/O ----

namespace {

struct Pump {
  Stream& guest;
  Stream& upstream;
  H2Bridge& bridge;
  H2Hooks& hooks;
  std::size_t read_size;

  // Notices first (a substitution's audit record before the bytes that carry it), then the bytes.
  asio::awaitable<bool> write_out() {
    std::string g, u;
    bridge.take_output(g, u);
    for (const H2Notice& n : bridge.take_notices()) hooks.notice(n);
    if (hooks.aborted()) {
      wipe(u);
      co_return false;
    }
    if (!hooks.within_budget(bridge.held_bytes() + g.size() + u.size())) {
      wipe(u);
      co_return false;
    }
    if (!u.empty()) {
      const std::error_code ec = co_await upstream.write_all(u);
      wipe(u);
      if (ec) {
        if (!hooks.aborted()) hooks.close(true);
        co_return false;
      }
    }
    if (!g.empty()) {
      const std::error_code ec = co_await guest.write_all(g);
      if (ec) {
        if (!hooks.aborted()) hooks.close(true);
        co_return false;
      }
    }
    if (bridge.terminated()) {
      if (!hooks.aborted()) hooks.close(true);
      co_return false;
    }
    co_return true;
  }

  asio::awaitable<void> side(bool from_guest) {
    Stream& from = from_guest ? guest : upstream;
    Stream& other = from_guest ? upstream : guest;
    while (!hooks.aborted()) {
      char* buf = pump_scratch();
      const IoResult r = co_await from.read_some(buf, read_size);
      if (hooks.aborted()) break;
      if (r.error) {
        // One side ended: what is owed the other still goes, then it ends too.
        co_await write_out();
        if (!hooks.aborted()) {
          co_await other.shutdown_send();
          hooks.close(false);
        }
        break;
      }
      hooks.touch();
      if (from_guest) {
        hooks.bytes(r.bytes, 0);
        bridge.from_guest(std::string_view(buf, r.bytes));
      } else {
        hooks.bytes(0, r.bytes);
        bridge.from_upstream(std::string_view(buf, r.bytes));
        if (!from.readable_now()) bridge.flush_responses();
      }
      if (!co_await write_out()) break;
      if (bridge.done()) {
        hooks.close(false);
        break;
      }
    }
  }
};

}  // namespace

asio::awaitable<void> run_h2_bridge(Stream& guest, Stream& upstream, H2Bridge& bridge, H2Hooks& hooks,
                                    std::size_t read_size) {
  using namespace asio::experimental::awaitable_operators;
  Pump pump{guest, upstream, bridge, hooks, read_size};
  // Both prefaces and SETTINGS go first.
  if (!co_await pump.write_out()) co_return;
  co_await (pump.side(true) && pump.side(false));
}

}  // namespace airlock::gateway
