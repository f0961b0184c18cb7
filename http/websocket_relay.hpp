#pragma once
// One direction of a WebSocket connection relayed message by message: frames parsed and
// reassembled (http/websocket.hpp), a compressed message inflated (permessage-deflate), the
// whole payload given to a filter that may rewrite it (the engine upward, the scrubber
// downward), then compressed again and framed again as one frame (client frames with a fresh
// mask). Control frames go through the filter too and keep their place in the stream. Pure.
#include <http/websocket.hpp>
#include <http/websocket_deflate.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::http::websocket {

class MessageFilter {
 public:
  virtual ~MessageFilter() = default;
  // A whole message's payload (unmasked, inflated), to inspect and rewrite in place. A control
  // payload rewritten past 125 bytes is an error. False: the relay stops; the filter holds why.
  virtual bool on_message(Opcode opcode, std::string& payload) = 0;
};

class MessageRelay {
 public:
  // deflate: the negotiated permessage-deflate parameters, or nullptr. masks: required when the
  // sender is the client (its frames are masked again), ignored otherwise.
  MessageRelay(Sender sender, Limits limits, const DeflateParams* deflate, std::size_t max_ratio, MaskSource* masks);
  ~MessageRelay();  // wipes its buffers
  MessageRelay(const MessageRelay&) = delete;
  MessageRelay& operator=(const MessageRelay&) = delete;

  enum class Status : std::uint8_t { kOk, kError, kStopped };
  // Appends to `out` the frames of every message `in` completes (it may hold substituted
  // values: the caller wipes it). kError: error() says why (fail the connection with
  // close_code(error())); kStopped: the filter refused a message. Either is final.
  Status feed(std::string_view in, std::string& out, MessageFilter& filter);
  Error error() const noexcept { return error_; }
  bool closed() const noexcept { return reader_.closed(); }     // a close frame went through
  bool mid_message() const noexcept { return reader_.mid_message(); }
  std::size_t held_bytes() const noexcept { return reader_.held_bytes() + scratch_.capacity(); }
  std::uint64_t messages() const noexcept { return messages_; }

 private:
  Status emit(Message& m, std::string& out, MessageFilter& filter);

  Sender sender_;
  MessageReader reader_;
  MaskSource* masks_;
  std::optional<MessageInflater> inflater_;
  std::optional<MessageDeflater> deflater_;
  std::string scratch_;  // inflated or deflated payload
  Error error_ = Error::kNone;
  Status status_ = Status::kOk;
  std::uint64_t messages_ = 0;
};

}  // namespace airlock::http::websocket
