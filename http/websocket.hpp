#pragma once
// WebSocket framing (RFC 6455 §5) for the gateway after a 101: frames from one side parsed by an
// explicit state machine with limits, unmasked, reassembled into whole messages (so a value cut
// by a frame boundary is seen whole), and framed again (client frames with a fresh mask). Pure:
// bytes in, bytes out; the mask source is passed in; no exceptions; errors are values.
//
// Rules enforced on every frame (a violation is an error that fails the connection):
//  - RSV2 and RSV3 are zero; RSV1 only when permessage-deflate was negotiated, and only on the
//    first frame of a data message (RFC 7692 §6.1);
//  - the opcode is one of continuation, text, binary, close, ping, pong;
//  - client frames are masked, server frames are not (§5.1);
//  - a control frame has FIN set and at most 125 payload bytes; a close payload is empty or at
//    least 2 bytes (a status code);
//  - a continuation frame only inside a fragmented message, a text/binary frame never inside one;
//  - the 64-bit length has its top bit clear; a frame payload is at most Limits::max_frame and a
//    message (all its fragments) at most Limits::max_message;
//  - nothing after a close frame.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace airlock::http::websocket {

enum class Opcode : std::uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};
constexpr bool is_control(Opcode op) noexcept { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }
std::string_view to_string(Opcode op) noexcept;

// Who sent the frames a parser reads (it decides the masking rule).
enum class Sender : std::uint8_t { kClient, kServer };

// Close status codes the gateway sends when it fails a connection (RFC 6455 §7.4.1).
enum class CloseCode : std::uint16_t {
  kNormal = 1000,
  kProtocolError = 1002,
  kInvalidPayload = 1007,
  kPolicyViolation = 1008,
  kMessageTooBig = 1009,
  kInternalError = 1011,
};

enum class Error : std::uint8_t {
  kNone,
  kReservedBits,            // RSV2/RSV3 set, or RSV1 without permessage-deflate
  kBadOpcode,
  kUnmaskedClientFrame,
  kMaskedServerFrame,
  kControlTooLong,          // control payload over 125 bytes
  kControlFragmented,       // control frame without FIN
  kCompressedControl,       // RSV1 on a control frame
  kCompressedContinuation,  // RSV1 on a continuation frame
  kUnexpectedContinuation,  // continuation with no message in progress
  kExpectedContinuation,    // text/binary frame inside a fragmented message
  kBadLength,               // 64-bit length with its top bit set
  kFrameTooLarge,
  kMessageTooLarge,
  kBadClosePayload,         // a 1-byte close payload
  kAfterClose,              // a frame after the close frame
  kInflateCorrupt,          // permessage-deflate data that does not inflate
  kInflateTooLarge,         // inflated message over the message cap or the ratio cap
  kNoMemory,                // zlib could not allocate
};
std::string_view to_string(Error e) noexcept;
CloseCode close_code(Error e) noexcept;

struct Limits {
  std::size_t max_frame = std::size_t{16} << 20;    // one frame's payload
  std::size_t max_message = std::size_t{16} << 20;  // a whole message (inflated, too)
};
constexpr std::size_t kMaxControlPayload = 125;

struct Frame {
  bool fin = false;
  bool rsv1 = false;
  Opcode opcode = Opcode::kContinuation;
  std::string payload;  // unmasked
};

// Parses one sender's frames, one frame per event. Holds at most one frame's payload.
class FrameParser {
 public:
  FrameParser(Sender sender, Limits limits, bool compression_negotiated);
  ~FrameParser();  // wipes the payload buffer
  FrameParser(const FrameParser&) = delete;
  FrameParser& operator=(const FrameParser&) = delete;

  enum class Event : std::uint8_t { kNeedMore, kFrame, kError };
  // Consumes a prefix of `in` (`used` bytes) up to the end of the next frame. On kFrame, frame()
  // holds it until the next call. After kError, every call returns kError.
  Event feed(std::string_view in, std::size_t& used);
  Frame& frame() noexcept { return frame_; }
  Error error() const noexcept { return error_; }
  std::size_t held_bytes() const noexcept { return frame_.payload.capacity(); }
  bool mid_frame() const noexcept { return state_ != State::kFirstByte; }

 private:
  enum class State : std::uint8_t { kFirstByte, kLengthByte, kExtendedLength, kMaskingKey, kPayload, kFailed };
  Event fail(Error e) {
    error_ = e;
    state_ = State::kFailed;
    return Event::kError;
  }
  Event on_first_byte(std::uint8_t b);
  Event on_length_byte(std::uint8_t b);
  Event on_length_known();

  Sender sender_;
  Limits limits_;
  bool compression_;
  State state_ = State::kFirstByte;
  Error error_ = Error::kNone;
  Frame frame_;
  bool masked_ = false;
  std::array<std::uint8_t, 4> mask_{};
  std::size_t need_ = 0;       // bytes of the extended length or mask still to read
  std::uint64_t length_ = 0;   // payload length
  std::uint64_t got_ = 0;      // payload bytes read
};

// A whole message: a data message (text/binary, its fragments joined) or a control frame.
struct Message {
  Opcode opcode = Opcode::kText;
  bool compressed = false;  // RSV1 on its first frame (permessage-deflate)
  std::string payload;
};

// Reassembles fragmented data messages (bounded by max_message) and checks the fragmentation
// and close rules. Control frames (allowed between fragments) come out as they arrive.
class MessageReader {
 public:
  MessageReader(Sender sender, Limits limits, bool compression_negotiated);
  ~MessageReader();  // wipes the message buffer
  MessageReader(const MessageReader&) = delete;
  MessageReader& operator=(const MessageReader&) = delete;

  enum class Event : std::uint8_t { kNeedMore, kMessage, kError };
  // Consumes a prefix of `in` up to the end of the next complete message. On kMessage,
  // message() holds it until the next call (the caller may take its payload).
  Event feed(std::string_view in, std::size_t& used);
  Message& message() noexcept { return message_; }
  Error error() const noexcept { return error_; }
  std::size_t held_bytes() const noexcept { return parser_.held_bytes() + partial_.capacity(); }
  bool closed() const noexcept { return closed_; }  // a close frame was read
  // Inside a frame or a fragmented message (the stream cannot end cleanly here).
  bool mid_message() const noexcept { return parser_.mid_frame() || in_message_; }

 private:
  Event fail(Error e) {
    error_ = e;
    return Event::kError;
  }
  Limits limits_;
  FrameParser parser_;
  Error error_ = Error::kNone;
  bool in_message_ = false;
  bool closed_ = false;
  Opcode partial_opcode_ = Opcode::kText;
  bool partial_compressed_ = false;
  std::string partial_;  // fragments so far
  Message message_;
};

// Random masking keys for client frames (the caller supplies the randomness).
class MaskSource {
 public:
  virtual ~MaskSource() = default;
  virtual std::array<std::uint8_t, 4> next() = 0;
};

// Appends one frame. `mask` null: unmasked (a server frame); otherwise the payload is masked
// with it (a client frame).
void write_frame(std::string& out, bool fin, bool rsv1, Opcode opcode, std::string_view payload,
                 const std::array<std::uint8_t, 4>* mask);
// A close frame's payload: the status code, then a UTF-8 reason (cut to fit 125 bytes).
std::string close_payload(CloseCode code, std::string_view reason);

}  // namespace airlock::http::websocket
