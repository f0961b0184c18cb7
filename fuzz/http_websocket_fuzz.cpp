// libFuzzer target for the WebSocket codec, permessage-deflate and the relay (http/websocket*).
//
// Input: byte 0 picks the sender (bit 0), whether permessage-deflate is in use (bit 1), context
// takeover off (bit 2), a window of 9..15 bits (bits 3-5), and seeds the read sizes; bytes 1-2
// are a length L, then L bytes of a Sec-WebSocket-Extensions value for parse_extensions; the
// rest is the frame stream. Properties: no crash; every error is final; what the relay writes
// parses back, for the receiver, into exactly the messages the filter passed (same opcodes and
// payloads, inflated again where compressed); fed in pieces it writes the same messages as
// fed whole; held bytes stay under the limits.
#include <http/websocket.hpp>
#include <http/websocket_deflate.hpp>
#include <http/websocket_relay.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace airlock::http::websocket;

void check(bool ok) {
  if (!ok) std::abort();
}

struct CountingMasks final : MaskSource {
  std::uint32_t n = 0;
  std::array<std::uint8_t, 4> next() override {
    ++n;
    return {static_cast<std::uint8_t>(n), static_cast<std::uint8_t>(n >> 8), 0x5A, 0xC3};
  }
};

// Rewrites "ab" to "xyz" (lengths change, as with a substitution) and records what it passed.
struct Recorder final : MessageFilter {
  std::vector<std::pair<Opcode, std::string>> passed;
  bool on_message(Opcode op, std::string& payload) override {
    if (!is_control(op)) {
      std::string out;
      for (std::size_t i = 0; i < payload.size(); ++i) {
        if (i + 1 < payload.size() && payload[i] == 'a' && payload[i + 1] == 'b') {
          out += "xyz";
          ++i;
        } else {
          out += payload[i];
        }
      }
      payload.swap(out);
    }
    if (payload == "stop") return false;
    passed.emplace_back(op, payload);
    return true;
  }
};

constexpr Limits kLimits{.max_frame = 1 << 16, .max_message = 1 << 17};

struct Run {
  MessageRelay::Status status = MessageRelay::Status::kOk;
  std::string out;
  std::vector<std::pair<Opcode, std::string>> passed;
};

Run relay(Sender sender, const DeflateParams* params, std::string_view stream, unsigned seed) {
  CountingMasks masks;
  MessageRelay r(sender, kLimits, params, 100, &masks);
  Recorder f;
  Run run;
  std::uint32_t state = seed * 2654435761u + 1;
  for (std::size_t at = 0; at < stream.size();) {
    state = state * 1103515245u + 12345u;
    const std::size_t n = seed == 0 ? stream.size() - at : std::min<std::size_t>(stream.size() - at, 1 + (state >> 16) % 97);
    run.status = r.feed(stream.substr(at, n), run.out, f);
    at += n;
    check(r.held_bytes() <= 2 * kLimits.max_message + 4 * kLimits.max_frame + (1 << 16));
    if (run.status != MessageRelay::Status::kOk) {
      // Final: a later call changes nothing.
      const std::size_t size = run.out.size();
      check(r.feed("\x81\x00", run.out, f) == run.status);
      check(run.out.size() == size);
      break;
    }
  }
  run.passed = std::move(f.passed);
  return run;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t cfg = data[0];
  const std::size_t ext_len = std::min<std::size_t>(size - 3, (data[1] << 8 | data[2]) & 0x1FF);
  std::string_view ext(reinterpret_cast<const char*>(data + 3), ext_len);
  std::string_view stream(reinterpret_cast<const char*>(data + 3 + ext_len), size - 3 - ext_len);

  DeflateParams parsed;
  const Negotiated n = parse_extensions(ext, parsed);
  if (n == Negotiated::kDeflate) {
    check(parsed.client_max_window_bits >= 8 && parsed.client_max_window_bits <= 15);
    check(parsed.server_max_window_bits >= 8 && parsed.server_max_window_bits <= 15);
  }

  const Sender sender = (cfg & 1) ? Sender::kServer : Sender::kClient;
  DeflateParams params;
  const int bits = 9 + ((cfg >> 3) & 7) % 7;
  params.client_max_window_bits = params.server_max_window_bits = bits;
  params.client_no_context_takeover = params.server_no_context_takeover = (cfg & 4) != 0;
  const DeflateParams* p = (cfg & 2) ? &params : nullptr;

  const Run whole = relay(sender, p, stream, 0);
  const Run split = relay(sender, p, stream, cfg | 1);
  check(whole.passed == split.passed);
  check(whole.status == split.status);

  // The receiver reads back exactly what the filter passed.
  MessageReader reader(sender, {.max_frame = 1 << 20, .max_message = 1 << 20}, p != nullptr);
  std::optional<MessageInflater> inflater;
  if (p != nullptr) inflater.emplace(bits, params.client_no_context_takeover, 1 << 20, 1 << 20);
  std::string_view out = whole.out;
  std::size_t k = 0;
  while (true) {
    std::size_t used = 0;
    const MessageReader::Event e = reader.feed(out, used);
    out.remove_prefix(used);
    check(e != MessageReader::Event::kError);
    if (e == MessageReader::Event::kNeedMore) break;
    Message& m = reader.message();
    check(k < whole.passed.size());
    check(m.opcode == whole.passed[k].first);
    if (m.compressed) {
      std::string plain;
      check(inflater->inflate(m.payload, plain) == Error::kNone);
      check(plain == whole.passed[k].second);
    } else {
      check(m.payload == whole.passed[k].second);
    }
    ++k;
  }
  check(out.empty());
  check(k == whole.passed.size());
  return 0;
}
