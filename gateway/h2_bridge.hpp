#pragma once
// Internal to the gateway: an intercepted connection whose guest and upstream both negotiated
// HTTP/2 (ALPN h2). A server session faces the guest, a client session the upstream, their
// streams mapped one to one (as nghttpx does). Every request stream goes through its own
// secrets::MessageGate (the engine's gates, decided once per stream, never here); every response
// header, DATA and trailer through the response scrubber. Pure: bytes in, bytes out, notices for
// the connection to audit and act on; the I/O loop is run_h2_bridge.
#include "gateway/streams.hpp"
#include "http/h2_session.hpp"
#include "http/response_scrubber.hpp"

#include <secrets/engine/message_gate.hpp>

#include <asio/awaitable.hpp>

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
  // `forms`: every form of every value (nullptr: nothing to scrub). The set, the forms and the
  // context outlive this.
  H2Bridge(const secrets::SecretSet& set, secrets::ConnectionContext context, const http::ScrubForms* forms,
           http::h2::SessionLimits limits = {});
  ~H2Bridge();
  H2Bridge(const H2Bridge&) = delete;
  H2Bridge& operator=(const H2Bridge&) = delete;

  void from_guest(std::string_view bytes);
  void from_upstream(std::string_view bytes);
  // No more upstream bytes are ready now: response bytes the scrubbers hold back (a possible
  // start of a value) leave, so a streaming response (gRPC server streaming) is not stalled.
  void flush_responses();
  // The bytes each side is owed now. `to_upstream` may hold values: the caller wipes it.
  void take_output(std::string& to_guest, std::string& to_upstream);
  std::vector<H2Notice> take_notices();

  // A block-and-terminate verdict was reached, or a session failed: the connection ends.
  bool terminated() const noexcept { return terminated_; }
  // Both sessions are finished (nothing to read, nothing to write).
  bool done() const;
  bool values_may_flow() const noexcept { return values_flowed_; }
  std::size_t held_bytes() const noexcept;
  std::size_t open_streams() const noexcept { return streams_.size(); }

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
  void block_response(StreamState& s, std::string reason);
  void close_stream(std::int32_t guest_id);
  void take_substitutions(StreamState& s);
  void scrub_headers(http::h2::Headers& headers);
  void scrub_into(StreamState& s, std::string_view data, bool end, std::string& out);
  void give_back_windows();
  void session_error(const char* side, http::h2::H2Error e);

  const secrets::SecretSet& set_;
  secrets::ConnectionContext context_;
  const http::ScrubForms* forms_;
  http::h2::Session guest_;
  http::h2::Session upstream_;
  std::map<std::int32_t, std::unique_ptr<StreamState>> streams_;  // by guest stream id
  std::map<std::int32_t, std::int32_t> by_upstream_;               // upstream id → guest id
  std::vector<H2Notice> notices_;
  std::vector<http::h2::Event> events_;
  std::string piece_;  // a request DATA piece after the gate (may hold values)
  bool restrict_ = false;  // some secret may be eligible on this connection
  bool values_flowed_ = false;
  bool scrub_reported_ = false;
  bool terminated_ = false;
};

// The I/O around an H2Bridge: reads both sides, feeds the bridge, writes what it owes each side,
// until both sessions are done or `hooks` says stop. Writes are serialized per stream.
class H2Hooks {
 public:
  virtual ~H2Hooks() = default;
  virtual void notice(const H2Notice& n) = 0;  // audit and log
  virtual void touch() = 0;                    // activity (the idle timeout)
  virtual bool within_budget(std::size_t held) = 0;  // false: over budget, the connection was closed
  virtual bool aborted() = 0;                  // the connection was closed (timeout, terminate)
  virtual void close(bool reset_guest) = 0;
  virtual void bytes(std::size_t up, std::size_t down) = 0;
};

asio::awaitable<void> run_h2_bridge(Stream& guest, Stream& upstream, H2Bridge& bridge, H2Hooks& hooks,
                                    std::size_t read_size);

}  // namespace airlock::gateway
