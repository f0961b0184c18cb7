#include "gateway/websocket_pump.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>
#include <cctype>
#include <cstring>

namespace airlock::gateway {
namespace ws = http::websocket;
namespace {

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (std::tolower(x) != std::tolower(y)) return false;
  }
  return true;
}

}  // namespace

bool is_websocket_switch(const std::vector<std::pair<std::string_view, std::string_view>>& fields) {
  for (const auto& [name, value] : fields)
    if (iequals(name, "upgrade") && iequals(value, "websocket")) return true;
  return false;
}

// Fresh masking keys from OpenSSL's CSPRNG (RFC 6455 §5.3: unpredictable), drawn in batches.
struct WebSocketSession::Masks final : ws::MaskSource {
  std::array<std::uint8_t, 256> pool{};
  std::size_t used = pool.size();
  std::array<std::uint8_t, 4> next() override {
    if (used + 4 > pool.size()) {
      if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1) {
        // No randomness: the frame still leaves masked (the key's job is only cache-poisoning
        // resistance against proxies between the gateway and the upstream).
        for (std::size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<std::uint8_t>(pool[i] * 33 + i + 1);
      }
      used = 0;
    }
    std::array<std::uint8_t, 4> key;
    std::memcpy(key.data(), pool.data() + used, 4);
    used += 4;
    return key;
  }
};

// Every message (control payloads too) is a body under the upgrade request's gates.
struct WebSocketSession::UpFilter final : ws::MessageFilter {
  secrets::MessageGate* gate;
  std::string out;
  bool on_message(ws::Opcode, std::string& payload) override {
    out.clear();
    gate->next_message();
    if (gate->on_data(payload, true, out) != secrets::Status::kOk) return false;
    wipe(payload);
    payload.swap(out);
    return true;
  }
  ~UpFilter() override { wipe(out); }
};

// One scrubber for the whole stream: its context carries from one message to the next.
struct WebSocketSession::DownFilter final : ws::MessageFilter {
  http::Scrubber* scrubber;
  std::string out;
  bool on_message(ws::Opcode, std::string& payload) override {
    if (scrubber == nullptr) return true;
    out.clear();
    scrubber->feed(payload, out);
    scrubber->flush(out);  // a message is complete: nothing of it may wait for the next one
    wipe(payload);
    payload.swap(out);
    return true;
  }
  ~DownFilter() override { wipe(out); }
};

std::unique_ptr<WebSocketSession> WebSocketSession::start(const secrets::SecretSet& set,
                                                          secrets::ConnectionContext context,
                                                          http::Scrubber* scrub,
                                                          secrets::Request upgrade_request,
                                                          std::string_view extensions, Options options,
                                                          std::string& why) {
  ws::DeflateParams params;
  const ws::Negotiated negotiated = ws::parse_extensions(extensions, params);
  if (negotiated == ws::Negotiated::kUnsupported) {
    why = "the WebSocket upgrade negotiated an extension the gateway cannot read (only permessage-deflate is relayed)";
    return nullptr;
  }
  std::unique_ptr<WebSocketSession> s(new WebSocketSession());
  if (negotiated == ws::Negotiated::kDeflate) s->deflate_ = params;
  s->host_ = context.sni;
  s->action_ = set.action();
  s->gate_ = std::make_unique<secrets::MessageGate>(set, std::move(context));
  // The handshake was gated (and its headers substituted) by the HTTP/1 rewriter; here it only
  // sets the gates for the messages. What this substitutes into the copy is discarded.
  if (s->gate_->on_headers(upgrade_request, false, true) != secrets::Status::kOk) {
    s->block_ = s->gate_->blocked();
  }
  for (secrets::Field& f : upgrade_request.headers) wipe(f.value);
  wipe(upgrade_request.target);
  s->gate_->take_substitutions();
  s->masks_ = std::make_unique<Masks>();
  s->scrubber_ = scrub;
  s->up_filter_ = std::make_unique<UpFilter>();
  s->up_filter_->gate = s->gate_.get();
  s->down_filter_ = std::make_unique<DownFilter>();
  s->down_filter_->scrubber = s->scrubber_;
  const ws::DeflateParams* d = s->deflate_ ? &*s->deflate_ : nullptr;
  s->up_ = std::make_unique<ws::MessageRelay>(ws::Sender::kClient, options.limits, d, options.max_ratio, s->masks_.get());
  s->down_ = std::make_unique<ws::MessageRelay>(ws::Sender::kServer, options.limits, d, options.max_ratio, nullptr);
  return s;
}

std::unique_ptr<WebSocketSession> WebSocketSession::start(const secrets::SecretSet& set,
                                                          secrets::ConnectionContext context,
                                                          const http::ScrubForms* forms,
                                                          secrets::Request upgrade_request,
                                                          std::string_view extensions, Options options,
                                                          std::string& why) {
  std::unique_ptr<WebSocketSession> s = start(set, std::move(context), static_cast<http::Scrubber*>(nullptr),
                                              std::move(upgrade_request), extensions, options, why);
  if (s && forms != nullptr) {
    s->scrubber_ = &s->own_scrubber_.emplace(*forms);
    s->down_filter_->scrubber = s->scrubber_;
  }
  return s;
}

WebSocketSession::~WebSocketSession() = default;

void WebSocketSession::fail_up(ws::Error e, std::string& to_guest) {
  std::string payload = ws::close_payload(ws::close_code(e), ws::to_string(e));
  ws::write_frame(to_guest, true, false, ws::Opcode::kClose, payload, nullptr);
  secrets::Block b;
  b.action = action_;
  b.violation = false;
  b.host = host_;
  b.location = secrets::Location::kBody;
  b.reason = "WebSocket message from the guest: " + std::string(ws::to_string(e)) + " (closed with " +
             std::to_string(static_cast<int>(ws::close_code(e))) + ")";
  block_ = std::move(b);
}

secrets::Status WebSocketSession::feed_up(std::string_view in, std::string& out, std::string& to_guest) {
  if (block_) return secrets::Status::kBlocked;
  const std::size_t committed = out.size();
  const ws::MessageRelay::Status st = up_->feed(in, out, *up_filter_);
  if (st == ws::MessageRelay::Status::kOk) return secrets::Status::kOk;
  // Nothing of this call leaves: the frames before the refused one are dropped too (simpler than
  // forwarding part of a read, and the connection ends here anyway).
  if (out.size() > committed) {
    OPENSSL_cleanse(out.data() + committed, out.size() - committed);
    out.resize(committed);
  }
  if (st == ws::MessageRelay::Status::kStopped) {
    block_ = gate_->blocked();
    if (block_) block_->reason = "WebSocket message: " + block_->reason;
    if (!block_) fail_up(ws::Error::kNoMemory, to_guest);
  } else {
    fail_up(up_->error(), to_guest);
  }
  return secrets::Status::kBlocked;
}

secrets::Status WebSocketSession::finish_up(std::string&) {
  return block_ ? secrets::Status::kBlocked : secrets::Status::kOk;
}

std::vector<secrets::Substitution> WebSocketSession::take_substitutions() { return gate_->take_substitutions(); }

bool WebSocketSession::feed_down(std::string_view in, std::string& out) {
  if (!down_error_.empty()) return false;
  if (down_->feed(in, out, *down_filter_) == ws::MessageRelay::Status::kOk) return true;
  const ws::Error e = down_->error();
  std::string payload = ws::close_payload(ws::close_code(e), ws::to_string(e));
  ws::write_frame(out, true, false, ws::Opcode::kClose, payload, nullptr);
  down_error_ = "WebSocket message from the upstream: " + std::string(ws::to_string(e)) + " (closed with " +
                std::to_string(static_cast<int>(ws::close_code(e))) + ")";
  return false;
}

std::size_t WebSocketSession::held_bytes() const noexcept {
  return up_->held_bytes() + down_->held_bytes() + gate_->held_bytes() + up_filter_->out.capacity() +
         down_filter_->out.capacity();
}

}  // namespace airlock::gateway
