// The HTTP/2 bridge (see h2_bridge.hpp): guest stream ↔ upstream stream, each request through
// its MessageGate, each response through the scrubber.
#include "gateway/h2_bridge.hpp"

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
// Closed streams' states kept for the next streams (see H2Bridge::spare_): about one batch's
// worth of streams that end while others open (h2load -m10, a browser's page).
constexpr std::size_t kSpareStreams = 16;

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x >= 'A' && x <= 'Z' ? x - 'A' + 'a' : x) == (y >= 'A' && y <= 'Z' ? y - 'A' + 'a' : y);
         });
}

// Some secret of `set` may be eligible on this connection.
bool may_be_eligible(const secrets::SecretSet& set, const secrets::ConnectionContext& context) {
  if (context.sni.empty()) return false;
  return std::any_of(set.secrets().begin(), set.secrets().end(), [&](const SecretBinding& s) {
    return s.any_host() || s.match_host(context.sni) != nullptr;
  });
}

}  // namespace

struct H2Bridge::StreamState {
  StreamState(std::shared_ptr<const SecretsSnapshot> snap, const secrets::ConnectionContext& context)
      : snapshot(std::move(snap)), gate(*snapshot->set, context) {
    scrubbers.keep(snapshot);
  }
  std::int32_t guest_id = 0;
  std::int32_t upstream_id = 0;  // 0: not (yet) opened upstream
  std::shared_ptr<const SecretsSnapshot> snapshot;  // the one the gate works with (before it: outlives it)
  secrets::MessageGate gate;
  ResponseScrubbers scrubbers;  // this stream's snapshot and the newest one
  bool blocked = false;            // reset both ways; later events are dropped
  bool response_started = false;   // a final response head went to the guest
  bool response_done = false;
  bool upstream_reset = false;     // a reset toward the upstream was queued
  std::size_t guest_unconsumed = 0;     // guest DATA not yet given back to the guest's window
  std::size_t upstream_unconsumed = 0;  // upstream DATA not yet given back to the upstream's window
  H2Bridge::Clock::time_point started{};  // the request head arrived (request latency)

  // The stream ended: made ready for the next stream of the connection, or false when it may
  // not serve another (its gate blocked). Its response scrubbers forget the last response.
  bool recycle() {
    if (blocked || gate.blocked() || !gate.next_request()) return false;
    scrubbers.reset();
    // As a new state's: its own snapshot only (the others it kept for the last response's echoes
    // are let go; keep_newest adds what the next response needs).
    const std::uint64_t own = snapshot->generation;
    scrubbers.release_unneeded([own](std::uint64_t g) { return g == own; });
    scrubbers.keep(snapshot);
    guest_id = upstream_id = 0;
    response_started = response_done = upstream_reset = false;
    guest_unconsumed = upstream_unconsumed = 0;
    started = {};
    return true;
  }
};

H2Bridge::H2Bridge(std::shared_ptr<const SecretsSnapshot> snapshot, secrets::ConnectionContext context,
                   http::h2::SessionLimits limits)
    : newest_(std::move(snapshot)),
      context_(std::move(context)),
      guest_(http::h2::Role::kServer, limits),
      upstream_(http::h2::Role::kClient, limits) {
  // Responses come back readable by the scrubber (identity coding) on every stream of a
  // connection where some secret may be eligible, from its first stream on: whether a value
  // flows is known per stream, and a compressed response on one stream may echo another's.
  restrict_ = may_be_eligible(*newest_->set, context_);
}

void H2Bridge::use_snapshot(std::shared_ptr<const SecretsSnapshot> newest) {
  if (!newest || newest->generation == newest_->generation) return;
  newest_ = std::move(newest);
  spare_.clear();  // gated with the replaced secrets
  head_scrubbers_.reset();
  // Once restricted, every later stream stays so (an earlier stream's value may be echoed).
  restrict_ = restrict_ || may_be_eligible(*newest_->set, context_);
}

H2Bridge::~H2Bridge() {
  wipe(piece_);
  wipe(header_out_);
}

std::size_t H2Bridge::held_bytes() const noexcept {
  std::size_t n = guest_.held_bytes() + upstream_.held_bytes() + piece_.capacity();
  for (const auto& [id, s] : streams_) n += s->gate.held_bytes();
  for (const auto& s : spare_) n += s->gate.held_bytes();
  return n;
}

bool H2Bridge::done() const { return guest_.closed() && upstream_.closed(); }

std::vector<H2Notice> H2Bridge::take_notices() {
  std::vector<H2Notice> out;
  out.swap(notices_);
  return out;
}

void H2Bridge::take_notices(std::vector<H2Notice>& out) {
  out.clear();
  out.swap(notices_);
}

void H2Bridge::take_answered(std::vector<Clock::time_point>& out) {
  out.insert(out.end(), answered_.begin(), answered_.end());
  answered_.clear();
}

// A state for a new stream gated with newest_: a spare one (same snapshot, reset) or a new one.
std::unique_ptr<H2Bridge::StreamState> H2Bridge::open_state() {
  while (!spare_.empty()) {
    std::unique_ptr<StreamState> s = std::move(spare_.back());
    spare_.pop_back();
    if (s->snapshot == newest_) return s;
  }
  return std::make_unique<StreamState>(newest_, context_);
}

void H2Bridge::session_error(const char* side, H2Error e) {
  H2Notice n;
  n.kind = H2Notice::Kind::kSessionError;
  n.reason = std::string(side) + ": " + http::h2::describe(e);
  notices_.push_back(std::move(n));
  terminated_ = true;
}

// ---- guest → upstream ----

void H2Bridge::from_guest(std::string_view bytes, Clock::time_point now) {
  now_ = now;
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
    std::unique_ptr<StreamState> state = open_state();
    state->guest_id = e.stream;
    state->started = now_;
    InUse& use = in_use_[newest_->generation];
    use.snapshot = newest_;
    ++use.streams;
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
      reset_upstream(s, static_cast<ErrorCode>(e.code));
      return;
    case Event::Kind::kClosed:
      close_stream(s.guest_id);
      return;
    default: return;
  }
}

void H2Bridge::request_headers(StreamState& s, Event& e) {
  secrets::Request& req = request_;  // emptied below whatever happens (its strings moved or wiped)
  Headers& pseudo_rest = pseudo_rest_;  // other pseudo-headers (:scheme), forwarded as they came
  pseudo_rest.clear();
  req.method.clear();
  req.authority.clear();
  req.target.clear();
  req.headers.clear();
  req.target_sensitive = false;
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
    req.headers.clear();
    wipe(req.target);
    req.method.clear();
    req.authority.clear();
    block_stream(s);
    return;
  }
  values_flowed_ = values_flowed_ || s.gate.values_may_flow();
  Headers& out = out_headers_;
  out.clear();
  out.reserve(req.headers.size() + 4);
  out.push_back(Header{":method", std::move(req.method), false});
  for (Header& h : pseudo_rest) out.push_back(std::move(h));
  if (!req.authority.empty()) out.push_back(Header{":authority", std::move(req.authority), false});
  if (!req.target.empty()) out.push_back(Header{":path", std::move(req.target), req.target_sensitive});
  for (secrets::Field& f : req.headers) out.push_back(Header{std::move(f.name), std::move(f.value), f.sensitive});
  req.headers.clear();
  req.method.clear();
  req.authority.clear();
  wipe(req.target);
  const http::h2::StreamResult r = upstream_.submit_request(out, e.end_stream);
  for (Header& h : out) wipe(h.value);  // nghttp2 copied them
  out.clear();
  pseudo_rest.clear();
  if (r.error != H2Error::kNone) {
    // Nothing of the request left: the guest may retry it (on another connection for kClosed).
    block_response(s, std::string("the upstream session did not take the request: ") + http::h2::describe(r.error),
                   r.error == H2Error::kClosed ? ErrorCode::kRefusedStream : ErrorCode::kInternalError);
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
  reset_upstream(s, ErrorCode::kCancel);
  // As for HTTP/1, only a violation under block-and-terminate ends everything (the sandbox too).
  if (b.violation && b.action == ViolationAction::kBlockAndTerminate) terminated_ = true;
}

void H2Bridge::block_response(StreamState& s, std::string reason, ErrorCode code) {
  s.blocked = true;
  H2Notice n;
  n.kind = H2Notice::Kind::kResponseBlocked;
  n.stream = s.guest_id;
  n.reason = std::move(reason);
  notices_.push_back(std::move(n));
  guest_.reset(s.guest_id, code);
  guest_.consumed(s.guest_id, std::exchange(s.guest_unconsumed, 0));
  reset_upstream(s, ErrorCode::kCancel);
  if (s.upstream_id != 0) upstream_.consumed(s.upstream_id, std::exchange(s.upstream_unconsumed, 0));
}

void H2Bridge::reset_upstream(StreamState& s, ErrorCode code) {
  if (s.upstream_id == 0 || s.upstream_reset) return;
  s.upstream_reset = true;
  upstream_.reset(s.upstream_id, code);
}

void H2Bridge::close_stream(std::int32_t guest_id) {
  auto it = streams_.find(guest_id);
  if (it == streams_.end()) return;
  StreamState& s = *it->second;
  if (s.upstream_id != 0) {
    if (!s.response_done) reset_upstream(s, ErrorCode::kCancel);
    upstream_.consumed(s.upstream_id, s.upstream_unconsumed);
    by_upstream_.erase(s.upstream_id);
  }
  const auto use = in_use_.find(s.snapshot->generation);
  if (use != in_use_.end() && --use->second.streams == 0) in_use_.erase(use);
  std::unique_ptr<StreamState> state = std::move(it->second);
  streams_.erase(it);
  if (spare_.size() < kSpareStreams && state->snapshot == newest_ && state->recycle()) spare_.push_back(std::move(state));
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

// A response may echo any value that went to this upstream on this connection and is still in
// use: the stream's own snapshot's, the newest one's (a rotated value), those of the other open
// streams (as HTTP/1 keeps those of requests in flight). A snapshot no open stream uses is let
// go (once nothing is held back).
void H2Bridge::keep_in_use(ResponseScrubbers& scrubbers) const {
  scrubbers.keep(newest_);
  if (in_use_.size() > 1 || (in_use_.size() == 1 && in_use_.begin()->first != newest_->generation)) {
    for (const auto& [generation, use] : in_use_) scrubbers.keep(use.snapshot);
  }
}

void H2Bridge::keep_newest(StreamState& s) {
  keep_in_use(s.scrubbers);
  const std::uint64_t own = s.snapshot->generation;
  const std::uint64_t now = newest_->generation;
  s.scrubbers.release_unneeded([&](std::uint64_t g) { return g == own || g == now || in_use_.count(g) != 0; });
}

void H2Bridge::report_masked(std::uint64_t before, std::uint64_t after) {
  if (after != before && !std::exchange(scrub_reported_, true)) {
    notices_.push_back(H2Notice{H2Notice::Kind::kScrubbed, 0, {}, {}, {}});
  }
}

// Each value is scrubbed as a whole text on its own (fed, flushed, then forgotten), through one
// chain for the head: the stream's snapshot, the newest one and those in use. Without a reload in
// progress that is the newest snapshot alone, whose chain the bridge keeps for every head.
void H2Bridge::scrub_headers(StreamState& s, Headers& headers) {
  const bool only_newest = s.snapshot == newest_ &&
                           (in_use_.empty() || (in_use_.size() == 1 && in_use_.begin()->first == newest_->generation));
  std::optional<ResponseScrubbers> mixed;
  ResponseScrubbers* scrubbers = nullptr;
  if (only_newest) {
    if (!head_scrubbers_) {
      head_scrubbers_ = std::make_unique<ResponseScrubbers>();
      head_scrubbers_->keep(newest_);
    }
    scrubbers = head_scrubbers_.get();
  } else {
    mixed.emplace();
    mixed->keep(s.snapshot);
    keep_in_use(*mixed);
    scrubbers = &*mixed;
  }
  if (scrubbers->empty()) return;  // no secrets: nothing to scrub
  std::string& out = header_out_;
  for (Header& h : headers) {
    out.clear();
    const std::uint64_t before = scrubbers->masked_bytes();
    scrubbers->scrub_text(h.value, out);
    if (scrubbers->masked_bytes() != before) {
      OPENSSL_cleanse(h.value.data(), h.value.size());
      h.value.swap(out);
      report_masked(0, 1);
    }
    wipe(out);
  }
}

void H2Bridge::scrub_into(StreamState& s, std::string_view data, bool end, std::string& out) {
  keep_newest(s);
  if (s.scrubbers.empty()) {
    out.append(data);
    return;
  }
  const std::uint64_t before = s.scrubbers.masked_bytes();
  s.scrubbers.feed(data, out);
  if (end) s.scrubbers.flush(out);
  report_masked(before, s.scrubbers.masked_bytes());
}

void H2Bridge::response_headers(StreamState& s, Event& e) {
  if (!e.informational && values_flowed_) {
    // As for HTTP/1: where a value may have reached this upstream, only identity bodies are
    // readable by the scrubber; a compressed echo would carry the value past it.
    for (const Header& h : e.headers) {
      const bool coding = iequals(h.name, "content-encoding") || iequals(h.name, "grpc-encoding");
      if (coding && !iequals(h.value, "identity")) {
        block_response(s, "a response with " + h.name + " " + h.value.substr(0, 32) +
                              " from a host that may have received a secret value: not forwarded "
                              "(the scrubber reads only identity bodies)");
        return;
      }
    }
  }
  scrub_headers(s, e.headers);
  const H2Error err = guest_.submit_response(s.guest_id, e.headers, e.end_stream);
  if (err != H2Error::kNone) {
    block_response(s, std::string("response head not forwarded: ") + http::h2::describe(err));
    return;
  }
  if (!e.informational && !s.response_started) {
    s.response_started = true;
    answered_.push_back(s.started);  // the request latency's span ends with this head (as HTTP/1's)
  }
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
  keep_newest(s);
  const std::uint64_t before = s.scrubbers.masked_bytes();
  s.scrubbers.flush(out);
  report_masked(before, s.scrubbers.masked_bytes());
  H2Error err = out.empty() ? H2Error::kNone : guest_.submit_data(s.guest_id, out, false);
  scrub_headers(s, e.headers);  // gRPC: grpc-status, grpc-message (may echo a value)
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
    if (s.blocked || s.response_done || s.scrubbers.pending() == 0) continue;
    out.clear();
    keep_newest(s);
    const std::uint64_t before = s.scrubbers.masked_bytes();
    s.scrubbers.flush(out);
    report_masked(before, s.scrubbers.masked_bytes());
    if (!out.empty() && guest_.submit_data(s.guest_id, out, false) != H2Error::kNone) {
      block_response(s, "response DATA not forwarded: the guest's queue is full");
    }
  }
}

void H2Bridge::flush_requests() {
  if (terminated_) return;
  for (auto& [id, sp] : streams_) {
    StreamState& s = *sp;
    if (s.blocked || s.upstream_id == 0) continue;
    piece_.clear();
    s.gate.release_held(piece_);
    if (piece_.empty()) continue;
    const H2Error e = upstream_.submit_data(s.upstream_id, piece_, false);
    wipe(piece_);
    if (e != H2Error::kNone) block_response(s, std::string("request DATA not forwarded: ") + http::h2::describe(e));
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

// Events a session reports while it writes (a stream that closed as its last frame left, or was
// reset for a malformed head): handled like received ones. True when there were any.
bool H2Bridge::drain_session_events() {
  bool any = false;
  events_.clear();
  guest_.take_events(events_);
  any = any || !events_.empty();
  for (Event& ev : events_) on_guest_event(ev);
  events_.clear();
  upstream_.take_events(events_);
  any = any || !events_.empty();
  for (Event& ev : events_) on_upstream_event(ev);
  events_.clear();
  return any;
}

void H2Bridge::take_output(std::string& to_guest, std::string& to_upstream) {
  // Handling an event may queue frames (a reset relayed), whose sending may report events:
  // bounded rounds, each one closing streams, so a few suffice.
  for (int round = 0; round < 8; ++round) {
    upstream_.pending_output(to_upstream);
    guest_.pending_output(to_guest);
    give_back_windows();
    if (!drain_session_events() && round > 0) break;
  }
  upstream_.pending_output(to_upstream);
  guest_.pending_output(to_guest);
}

}  // namespace airlock::gateway
