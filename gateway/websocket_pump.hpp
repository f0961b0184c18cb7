#pragma once
// Internal to the gateway: a WebSocket connection after its 101 (issue 14), both directions
// relayed message by message over http/websocket_relay. Guest to upstream: each message
// (text, binary, and control payloads) goes through a MessageGate holding the upgrade request's
// gates, so a placeholder is substituted under the body scope where its secret is eligible and
// is a violation where it is not; frames leave with fresh masks. Upstream to guest: each message
// goes through one scrubber for the whole stream (an echo split across frames or messages is
// masked): the connection's (gateway::ResponseScrubbers, one ResponseScrubber per secrets
// snapshot still needed), or one of its own over ScrubForms. No I/O: the connection's pumps write what this appends.
#include <http/response_scrubber.hpp>
#include <http/websocket_relay.hpp>
#include <secrets/engine/message_gate.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::gateway {

// Whether a 101 answers a WebSocket upgrade (`Upgrade: websocket`, RFC 6455 §4.2.2).
bool is_websocket_switch(const std::vector<std::pair<std::string_view, std::string_view>>& response_fields);

class WebSocketSession {
 public:
  struct Options {
    http::websocket::Limits limits;
    std::size_t max_ratio = 100;
  };
  // `extensions`: the 101's Sec-WebSocket-Extensions (joined); `scrub`: what the server's
  // messages go through, borrowed (it must outlive the session; it may be a chain the caller
  // changes between calls), or null (nothing to scrub). On failure, `why` says why the switch
  // cannot be relayed (an extension the gateway cannot read) and nullptr is returned: the caller
  // fails closed.
  static std::unique_ptr<WebSocketSession> start(const secrets::SecretSet& set, secrets::ConnectionContext context,
                                                 http::Scrubber* scrub, secrets::Request upgrade_request,
                                                 std::string_view extensions, Options options, std::string& why);
  // The same with a scrubber of its own over `forms` (may be null).
  static std::unique_ptr<WebSocketSession> start(const secrets::SecretSet& set, secrets::ConnectionContext context,
                                                 const http::ScrubForms* forms, secrets::Request upgrade_request,
                                                 std::string_view extensions, Options options, std::string& why);
  ~WebSocketSession();

  // Guest to upstream. `out` may hold values (the caller wipes it after writing); `to_guest`
  // gets a close frame when the connection fails. kBlocked: blocked() says why.
  secrets::Status feed_up(std::string_view in, std::string& out, std::string& to_guest);
  // The guest ended its stream: a message it did not finish is not forwarded.
  secrets::Status finish_up(std::string& out);
  const std::optional<secrets::Block>& blocked() const noexcept { return block_; }
  std::vector<secrets::Substitution> take_substitutions();

  // Upstream to guest: false when the upstream broke the protocol (or sent a bomb); then `out`
  // ends with a close frame for the guest and down_error() says why.
  bool feed_down(std::string_view in, std::string& out);
  const std::string& down_error() const noexcept { return down_error_; }
  std::uint64_t masked_bytes() const noexcept { return scrubber_ ? scrubber_->masked_bytes() : 0; }

  std::size_t held_bytes() const noexcept;
  bool deflate() const noexcept { return deflate_.has_value(); }

 private:
  struct Masks;
  struct UpFilter;
  struct DownFilter;
  WebSocketSession() = default;
  void fail_up(http::websocket::Error e, std::string& to_guest);

  std::optional<http::websocket::DeflateParams> deflate_;
  std::unique_ptr<Masks> masks_;
  std::unique_ptr<secrets::MessageGate> gate_;
  std::optional<http::ResponseScrubber> own_scrubber_;
  http::Scrubber* scrubber_ = nullptr;
  std::unique_ptr<UpFilter> up_filter_;
  std::unique_ptr<DownFilter> down_filter_;
  std::unique_ptr<http::websocket::MessageRelay> up_;
  std::unique_ptr<http::websocket::MessageRelay> down_;
  std::optional<secrets::Block> block_;
  std::string host_;
  ViolationAction action_ = ViolationAction::kBlockAndLog;
  std::string down_error_;
};

}  // namespace airlock::gateway
