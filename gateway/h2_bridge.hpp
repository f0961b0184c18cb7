#pragma once
// Internal to the gateway: an intercepted connection whose guest and upstream both negotiated
// HTTP/2 (ALPN h2). A server session faces the guest, a client session the upstream, their
// streams mapped one to one (as nghttpx does). Every request stream goes through its own
// secrets::MessageGate (the engine's gates, decided once per stream, never here); every response
// header, DATA and trailer through the response scrubbers. Pure: bytes in, bytes out, notices for
// the connection to audit and act on; the I/O loop is run_h2_bridge (gateway/h2_pump.hpp).
//
// Reloads (issue 17): each stream is gated with the snapshot that was newest when the guest
// opened it (a stream in flight keeps its own), and its response is scrubbed for that snapshot's
// values, the newest one's and those of the other open streams (gateway::ResponseScrubbers).
// Each snapshot is held by the streams that use it and the bridge's newest, so its values go
// when the last of them lets go.
#include "gateway/core.hpp"
#include "gateway/response_scrubbers.hpp"
#include "http/h2_session.hpp"
#include "http/response_scrubber.hpp"

#include <secrets/engine/message_gate.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::gateway {

// Something the connection must record (audit log, logger) or act on.
struct H2Notice {
  enum class Kind : std::uint8_t {
    kSubstitution,     // substitution: a value went into a request stream
    kBlocked,          // block: a request stream was blocked (reset both ways)
    kResponseBlocked,  // reason: a response stream was not forwarded (reset toward the guest)
    kScrubbed,         // a response echoed a value; masked (once per connection)
    kSessionError,     // reason: a session ended on a protocol error or flood
  };
  Kind kind = Kind::kSubstitution;
  std::int32_t stream = 0;  // the guest's stream id (0: the connection)
  secrets::Substitution substitution;
  std::optional<secrets::Block> block;
  std::string reason;  // never a value
};

class H2Bridge {
 public:
  // `snapshot`: the secrets the first streams are gated with (its scrub forms: every form of
  // every value; none, nothing to scrub).
  H2Bridge(std::shared_ptr<const SecretsSnapshot> snapshot, secrets::ConnectionContext context,
           http::h2::SessionLimits limits = {});
  ~H2Bridge();
  H2Bridge(const H2Bridge&) = delete;
  H2Bridge& operator=(const H2Bridge&) = delete;

  using Clock = std::chrono::steady_clock;
  // `now`: when the bytes arrived (the caller's clock; the bridge reads none). A request stream
  // opened by them starts its latency span then.
  void from_guest(std::string_view bytes, Clock::time_point now = {});
  void from_upstream(std::string_view bytes);
  // No more upstream bytes are ready now: response bytes the scrubbers hold back (a possible
  // start of a value) leave, so a streaming response (gRPC server streaming) is not stalled.
  void flush_responses();
  // No more guest bytes are ready now: request bytes the gates hold back (guest bytes that may
  // begin a placeholder) leave, so a streaming request is not stalled (MessageGate::release_held).
  void flush_requests();
  // The bytes each side is owed now. `to_upstream` may hold values: the caller wipes it.
  void take_output(std::string& to_guest, std::string& to_upstream);
  std::vector<H2Notice> take_notices();
  // The same into `out` (cleared first), which keeps the capacity of the last call's vector.
  void take_notices(std::vector<H2Notice>& out);
  // For the request-latency histogram, the same span as an HTTP/1 request's: when each stream
  // whose final (non-1xx) response head was handed to the guest's session since the last call
  // had its request head arrive. One entry per answered stream; a stream refused or reset before
  // its response head has none. Appends to `out`.
  void take_answered(std::vector<Clock::time_point>& out);

  // A reload: streams the guest opens from now on are gated with `newest` (its retired bindings
  // make a removed secret's placeholder a violation); streams in flight keep theirs, and every
  // response is scrubbed for `newest`'s values too from its next bytes on.
  void use_snapshot(std::shared_ptr<const SecretsSnapshot> newest);
  // The generation of the snapshot new streams are gated with.
  std::uint64_t generation() const noexcept { return newest_->generation; }

  // A block-and-terminate verdict was reached, or a session failed: the connection ends.
  bool terminated() const noexcept { return terminated_; }
  // Both sessions are finished (nothing to read, nothing to write).
  bool done() const;
  bool values_may_flow() const noexcept { return values_flowed_; }
  std::size_t held_bytes() const noexcept;
  std::size_t open_streams() const noexcept { return streams_.size(); }
  // Stream states kept for reuse (tests): a closed stream's gate, reset, serves the next stream.
  std::size_t spare_streams() const noexcept { return spare_.size(); }

 private:
  struct StreamState;
  void on_guest_event(http::h2::Event& e);
  void on_upstream_event(http::h2::Event& e);
  void request_headers(StreamState& s, http::h2::Event& e);
  void request_data(StreamState& s, std::string_view data, bool end);
  void request_trailers(StreamState& s, http::h2::Event& e);
  void response_headers(StreamState& s, http::h2::Event& e);
  void response_data(StreamState& s, std::string_view data, bool end);
  void response_trailers(StreamState& s, http::h2::Event& e);
  void block_stream(StreamState& s);
  void block_response(StreamState& s, std::string reason,
                      http::h2::ErrorCode code = http::h2::ErrorCode::kCancel);
  void reset_upstream(StreamState& s, http::h2::ErrorCode code);
  void close_stream(std::int32_t guest_id);
  std::unique_ptr<StreamState> open_state();
  void take_substitutions(StreamState& s);
  void keep_in_use(ResponseScrubbers& scrubbers) const;
  void keep_newest(StreamState& s);
  void report_masked(std::uint64_t before, std::uint64_t after);
  void scrub_headers(StreamState& s, http::h2::Headers& headers);
  void scrub_into(StreamState& s, std::string_view data, bool end, std::string& out);
  void give_back_windows();
  bool drain_session_events();
  void session_error(const char* side, http::h2::H2Error e);

  std::shared_ptr<const SecretsSnapshot> newest_;  // what new streams are gated with
  secrets::ConnectionContext context_;
  http::h2::Session guest_;
  http::h2::Session upstream_;
  std::map<std::int32_t, std::unique_ptr<StreamState>> streams_;  // by guest stream id
  std::map<std::int32_t, std::int32_t> by_upstream_;               // upstream id → guest id
  struct InUse {
    std::shared_ptr<const SecretsSnapshot> snapshot;
    std::size_t streams = 0;
  };
  std::map<std::uint64_t, InUse> in_use_;  // by generation: the snapshots open streams are gated with
  // Closed streams' states whose gate never blocked, reset for the next stream (MessageGate::
  // next_request): the connection-level part of the gates (1–3 for the SNI) is decided once per
  // connection, not per stream, and a stream costs no gate allocation. Only states gated with
  // newest_ are kept (a reload drops them); at most kSpareStreams.
  std::vector<std::unique_ptr<StreamState>> spare_;
  std::vector<Clock::time_point> answered_;
  Clock::time_point now_{};
  secrets::Request request_;  // request_headers' scratch (emptied after each use)
  http::h2::Headers pseudo_rest_, out_headers_;
  std::unique_ptr<ResponseScrubbers> head_scrubbers_;  // scrub_headers' chain for newest_ alone
  std::string header_out_;  // a scrubbed header value (wiped after use)
  std::vector<H2Notice> notices_;
  std::vector<http::h2::Event> events_;
  std::string piece_;  // a request DATA piece after the gate (may hold values)
  bool restrict_ = false;  // some secret may be eligible on this connection
  bool values_flowed_ = false;
  bool scrub_reported_ = false;
  bool terminated_ = false;
};

}  // namespace airlock::gateway
