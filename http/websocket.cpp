#include <http/websocket.hpp>

#include <common/value_sink.hpp>

#include <openssl/crypto.h>

#include <algorithm>

namespace airlock::http::websocket {
namespace {

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

bool valid_opcode(std::uint8_t op) noexcept {
  switch (op) {
    case 0x0: case 0x1: case 0x2: case 0x8: case 0x9: case 0xA: return true;
    default: return false;
  }
}

}  // namespace

std::string_view to_string(Opcode op) noexcept {
  switch (op) {
    case Opcode::kContinuation: return "continuation";
    case Opcode::kText: return "text";
    case Opcode::kBinary: return "binary";
    case Opcode::kClose: return "close";
    case Opcode::kPing: return "ping";
    case Opcode::kPong: return "pong";
  }
  return "unknown";
}

std::string_view to_string(Error e) noexcept {
  switch (e) {
    case Error::kNone: return "no error";
    case Error::kReservedBits: return "reserved bits set that no negotiated extension defines";
    case Error::kBadOpcode: return "unknown opcode";
    case Error::kUnmaskedClientFrame: return "unmasked client frame";
    case Error::kMaskedServerFrame: return "masked server frame";
    case Error::kControlTooLong: return "control frame payload over 125 bytes";
    case Error::kControlFragmented: return "fragmented control frame";
    case Error::kCompressedControl: return "compressed control frame";
    case Error::kCompressedContinuation: return "RSV1 on a continuation frame";
    case Error::kUnexpectedContinuation: return "continuation frame outside a fragmented message";
    case Error::kExpectedContinuation: return "new data frame inside a fragmented message";
    case Error::kBadLength: return "frame length with the most significant bit set";
    case Error::kFrameTooLarge: return "frame over the frame size limit";
    case Error::kMessageTooLarge: return "message over the message size limit";
    case Error::kBadClosePayload: return "close frame with a 1-byte payload";
    case Error::kAfterClose: return "frame after the close frame";
    case Error::kInflateCorrupt: return "permessage-deflate data that does not inflate";
    case Error::kInflateTooLarge: return "inflated message over the message size or decompression-ratio cap";
    case Error::kNoMemory: return "out of memory";
  }
  return "unknown error";
}

CloseCode close_code(Error e) noexcept {
  switch (e) {
    case Error::kNone: return CloseCode::kNormal;
    case Error::kFrameTooLarge:
    case Error::kMessageTooLarge:
    case Error::kInflateTooLarge: return CloseCode::kMessageTooBig;
    case Error::kInflateCorrupt: return CloseCode::kInvalidPayload;
    case Error::kNoMemory: return CloseCode::kInternalError;
    default: return CloseCode::kProtocolError;
  }
}

// ---- FrameParser ----

FrameParser::FrameParser(Sender sender, Limits limits, bool compression_negotiated)
    : sender_(sender), limits_(limits), compression_(compression_negotiated) {}

FrameParser::~FrameParser() { wipe(frame_.payload); }

FrameParser::Event FrameParser::on_first_byte(std::uint8_t b) {
  frame_.fin = (b & 0x80) != 0;
  frame_.rsv1 = (b & 0x40) != 0;
  if ((b & 0x30) != 0 || (frame_.rsv1 && !compression_)) return fail(Error::kReservedBits);
  const std::uint8_t op = b & 0x0F;
  if (!valid_opcode(op)) return fail(Error::kBadOpcode);
  frame_.opcode = static_cast<Opcode>(op);
  if (is_control(frame_.opcode)) {
    if (!frame_.fin) return fail(Error::kControlFragmented);
    if (frame_.rsv1) return fail(Error::kCompressedControl);
  } else if (frame_.opcode == Opcode::kContinuation && frame_.rsv1) {
    return fail(Error::kCompressedContinuation);
  }
  state_ = State::kLengthByte;
  return Event::kNeedMore;
}

FrameParser::Event FrameParser::on_length_byte(std::uint8_t b) {
  masked_ = (b & 0x80) != 0;
  if (sender_ == Sender::kClient && !masked_) return fail(Error::kUnmaskedClientFrame);
  if (sender_ == Sender::kServer && masked_) return fail(Error::kMaskedServerFrame);
  const std::uint8_t len = b & 0x7F;
  length_ = 0;
  if (len < 126) {
    length_ = len;
    return on_length_known();
  }
  need_ = len == 126 ? 2 : 8;
  state_ = State::kExtendedLength;
  return Event::kNeedMore;
}

FrameParser::Event FrameParser::on_length_known() {
  if (is_control(frame_.opcode) && length_ > kMaxControlPayload) return fail(Error::kControlTooLong);
  if (length_ > limits_.max_frame) return fail(Error::kFrameTooLarge);
  if (frame_.opcode == Opcode::kClose && length_ == 1) return fail(Error::kBadClosePayload);
  frame_.payload.clear();
  frame_.payload.reserve(static_cast<std::size_t>(length_));
  got_ = 0;
  if (masked_) {
    need_ = 4;
    state_ = State::kMaskingKey;
  } else {
    state_ = State::kPayload;
  }
  return Event::kNeedMore;
}

FrameParser::Event FrameParser::feed(std::string_view in, std::size_t& used) {
  used = 0;
  if (state_ == State::kFailed) return Event::kError;
  const auto* d = reinterpret_cast<const std::uint8_t*>(in.data());
  const std::size_t n = in.size();
  std::size_t i = 0;
  while (true) {
    // A frame with an empty payload ends as soon as its header does, input or not.
    if (state_ == State::kPayload && got_ == length_) {
      state_ = State::kFirstByte;
      used = i;
      return Event::kFrame;
    }
    if (i >= n) break;
    Event e = Event::kNeedMore;
    switch (state_) {
      case State::kFirstByte:
        wipe(frame_.payload);
        e = on_first_byte(d[i++]);
        break;
      case State::kLengthByte:
        e = on_length_byte(d[i++]);
        break;
      case State::kExtendedLength:
        if (need_ == 8 && length_ == 0 && (d[i] & 0x80) != 0) {
          e = fail(Error::kBadLength);
          break;
        }
        length_ = (length_ << 8) | d[i++];
        if (--need_ == 0) e = on_length_known();
        break;
      case State::kMaskingKey:
        mask_[4 - need_] = d[i++];
        if (--need_ == 0) state_ = State::kPayload;
        break;
      case State::kPayload: {
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(length_ - got_, n - i));
        const std::size_t start = frame_.payload.size();
        frame_.payload.append(in.substr(i, take));
        if (masked_) {
          char* p = frame_.payload.data() + start;
          for (std::size_t k = 0; k < take; ++k) p[k] = static_cast<char>(p[k] ^ mask_[(got_ + k) & 3]);
        }
        got_ += take;
        i += take;
        break;
      }
      case State::kFailed:
        break;
    }
    if (e == Event::kError) {
      used = i;
      return e;
    }
  }
  used = i;
  return Event::kNeedMore;
}

// ---- MessageReader ----

MessageReader::MessageReader(Sender sender, Limits limits, bool compression_negotiated)
    : limits_(limits), parser_(sender, limits, compression_negotiated) {}

MessageReader::~MessageReader() {
  wipe(partial_);
  wipe(message_.payload);
}

MessageReader::Event MessageReader::feed(std::string_view in, std::size_t& used) {
  used = 0;
  if (error_ != Error::kNone) return Event::kError;
  wipe(message_.payload);
  while (true) {
    std::size_t n = 0;
    const FrameParser::Event e = parser_.feed(in.substr(used), n);
    used += n;
    if (e == FrameParser::Event::kError) return fail(parser_.error());
    if (e == FrameParser::Event::kNeedMore) return Event::kNeedMore;
    Frame& f = parser_.frame();
    if (closed_) return fail(Error::kAfterClose);
    if (is_control(f.opcode)) {
      if (f.opcode == Opcode::kClose) closed_ = true;
      message_.opcode = f.opcode;
      message_.compressed = false;
      message_.payload.swap(f.payload);
      return Event::kMessage;
    }
    if (f.opcode == Opcode::kContinuation) {
      if (!in_message_) return fail(Error::kUnexpectedContinuation);
    } else {
      if (in_message_) return fail(Error::kExpectedContinuation);
      partial_opcode_ = f.opcode;
      partial_compressed_ = f.rsv1;
      wipe(partial_);
    }
    if (partial_.size() + f.payload.size() > limits_.max_message) return fail(Error::kMessageTooLarge);
    if (!f.fin) {
      in_message_ = true;
      partial_.append(f.payload);
      continue;
    }
    in_message_ = false;
    message_.opcode = partial_opcode_;
    message_.compressed = partial_compressed_;
    if (partial_.empty()) {
      message_.payload.swap(f.payload);
    } else {
      partial_.append(f.payload);
      message_.payload.swap(partial_);
      wipe(partial_);
    }
    return Event::kMessage;
  }
}

// ---- writing ----

void write_frame(std::string& out, bool fin, bool rsv1, Opcode opcode, std::string_view payload,
                 const std::array<std::uint8_t, 4>* mask) {
  // The payload may hold a substituted value: room for the whole frame first, so no append
  // below reallocates with earlier frames' bytes left behind.
  ValueSink(out).room_for(14 + payload.size());
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<std::uint8_t>(opcode)));
  const std::uint8_t mask_bit = mask != nullptr ? 0x80 : 0;
  const std::uint64_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(mask_bit | n));
  } else if (n <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xFF));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xFF));
  }
  if (mask == nullptr) {
    out.append(payload);
    return;
  }
  for (const std::uint8_t b : *mask) out.push_back(static_cast<char>(b));
  const std::size_t start = out.size();
  out.append(payload);
  char* p = out.data() + start;
  for (std::size_t k = 0; k < payload.size(); ++k) p[k] = static_cast<char>(p[k] ^ (*mask)[k & 3]);
}

std::string close_payload(CloseCode code, std::string_view reason) {
  std::string p;
  const auto c = static_cast<std::uint16_t>(code);
  p.push_back(static_cast<char>(c >> 8));
  p.push_back(static_cast<char>(c & 0xFF));
  p.append(reason.substr(0, kMaxControlPayload - 2));
  return p;
}

}  // namespace airlock::http::websocket
