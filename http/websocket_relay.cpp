#include <http/websocket_relay.hpp>

#include <openssl/crypto.h>

namespace airlock::http::websocket {
namespace {

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace

MessageRelay::MessageRelay(Sender sender, Limits limits, const DeflateParams* deflate, std::size_t max_ratio,
                           MaskSource* masks)
    : sender_(sender), reader_(sender, limits, deflate != nullptr), masks_(masks) {
  if (deflate == nullptr) return;
  // Both sides of this direction use the sender's parameters: the receiver inflates what the
  // relay deflates exactly as it would the sender's own output.
  const bool client = sender == Sender::kClient;
  const int bits = client ? deflate->client_max_window_bits : deflate->server_max_window_bits;
  const bool reset = client ? deflate->client_no_context_takeover : deflate->server_no_context_takeover;
  inflater_.emplace(bits, reset, limits.max_message, max_ratio);
  deflater_.emplace(bits, reset);
}

MessageRelay::~MessageRelay() { wipe(scratch_); }

MessageRelay::Status MessageRelay::emit(Message& m, std::string& out, MessageFilter& filter) {
  if (m.compressed) {
    const Error e = inflater_->inflate(m.payload, scratch_);
    if (e != Error::kNone) {
      error_ = e;
      return Status::kError;
    }
    m.payload.swap(scratch_);
    wipe(scratch_);
  }
  if (!filter.on_message(m.opcode, m.payload)) return Status::kStopped;
  ++messages_;
  bool rsv1 = false;
  std::string_view payload = m.payload;
  if (is_control(m.opcode)) {
    if (m.payload.size() > kMaxControlPayload) {
      error_ = Error::kControlTooLong;
      return Status::kError;
    }
  } else if (deflater_ && deflater_->usable()) {
    // Compressed again only when the sender compressed it (an uncompressed message stays so).
    if (m.compressed) {
      if (deflater_->deflate(m.payload, scratch_) != Error::kNone) {
        error_ = Error::kNoMemory;
        return Status::kError;
      }
      payload = scratch_;
      rsv1 = true;
    }
  }
  if (sender_ == Sender::kClient) {
    const std::array<std::uint8_t, 4> key = masks_->next();
    write_frame(out, true, rsv1, m.opcode, payload, &key);
  } else {
    write_frame(out, true, rsv1, m.opcode, payload, nullptr);
  }
  wipe(scratch_);
  wipe(m.payload);
  return Status::kOk;
}

MessageRelay::Status MessageRelay::feed(std::string_view in, std::string& out, MessageFilter& filter) {
  if (status_ != Status::kOk) return status_;
  while (true) {
    std::size_t used = 0;
    const MessageReader::Event e = reader_.feed(in, used);
    in.remove_prefix(used);
    if (e == MessageReader::Event::kError) {
      error_ = reader_.error();
      return status_ = Status::kError;
    }
    if (e == MessageReader::Event::kNeedMore) return Status::kOk;
    const Status s = emit(reader_.message(), out, filter);
    if (s != Status::kOk) return status_ = s;
  }
}

}  // namespace airlock::http::websocket
