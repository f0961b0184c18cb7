#pragma once
// permessage-deflate (RFC 7692) for the gateway's WebSocket relay: the parameters the server
// accepted, and a per-direction inflater and deflater (zlib raw deflate) that keep the sliding
// window across messages when context takeover is on. Pure: bytes in, bytes out; no exceptions.
//
// Bounds: a message inflates to at most `max_output` bytes and to at most
// max_ratio * compressed + kInflateSlack bytes (bombs); either is Error::kInflateTooLarge.
#include <http/websocket.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace airlock::http::websocket {

struct DeflateParams {
  bool server_no_context_takeover = false;
  bool client_no_context_takeover = false;
  int server_max_window_bits = 15;  // the server's compressor window (what the client inflates)
  int client_max_window_bits = 15;  // the client's compressor window
};

enum class Negotiated : std::uint8_t {
  kNone,         // no extension in use
  kDeflate,      // permessage-deflate, with `params`
  kUnsupported,  // another extension, several, or parameters outside RFC 7692 §7.1
};
// Reads the server's `Sec-WebSocket-Extensions` (every field line joined by ", "): what the
// connection will use. Anything the relay cannot read is kUnsupported (the caller fails closed).
Negotiated parse_extensions(std::string_view field, DeflateParams& params);

constexpr std::size_t kInflateSlack = std::size_t{64} << 10;

// The receiving side of one direction: inflates each compressed message.
class MessageInflater {
 public:
  // window_bits: the sender's max_window_bits; no_context_takeover: the sender resets per message.
  MessageInflater(int window_bits, bool no_context_takeover, std::size_t max_output, std::size_t max_ratio);
  ~MessageInflater();
  MessageInflater(const MessageInflater&) = delete;
  MessageInflater& operator=(const MessageInflater&) = delete;
  // Inflates one whole message's payload (the 0x00 0x00 0xFF 0xFF tail is added here) into out
  // (replaced). kInflateCorrupt, kInflateTooLarge, kNoMemory; after an error, every call fails.
  Error inflate(std::string_view compressed, std::string& out);

 private:
  struct State;
  std::unique_ptr<State> s_;
  bool reset_each_;
  std::size_t max_output_;
  std::size_t max_ratio_;
  Error error_ = Error::kNone;
};

// The sending side of one direction: compresses each message for the receiver.
class MessageDeflater {
 public:
  MessageDeflater(int window_bits, bool no_context_takeover);
  ~MessageDeflater();
  MessageDeflater(const MessageDeflater&) = delete;
  MessageDeflater& operator=(const MessageDeflater&) = delete;
  // False when messages must go uncompressed (RSV1 clear, which RFC 7692 §6 allows): a window
  // of 8 bits, which zlib's raw deflate cannot produce, or no memory.
  bool usable() const noexcept { return s_ != nullptr; }
  // Compresses one whole message into out (replaced), without the 0x00 0x00 0xFF 0xFF tail.
  Error deflate(std::string_view message, std::string& out);

 private:
  struct State;
  std::unique_ptr<State> s_;
  bool reset_each_;
};

}  // namespace airlock::http::websocket
