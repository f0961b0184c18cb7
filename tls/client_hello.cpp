#include "tls/client_hello.hpp"

#include <cstdint>
#include <optional>

namespace airlock::tls {
namespace {

constexpr std::uint8_t kRecordHandshake = 22;
constexpr std::uint8_t kHandshakeClientHello = 1;
constexpr std::size_t kRecordHeader = 5;
constexpr std::size_t kMaxRecordPayload = 16 * 1024;  // RFC 8446 §5.1: plaintext records
constexpr std::uint16_t kExtServerName = 0;
constexpr std::uint16_t kExtAlpn = 16;

// A bounds-checked cursor over a byte string; every read fails instead of running past the end.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool empty() const noexcept { return pos_ == data_.size(); }
  std::optional<std::uint32_t> u8() { return number(1); }
  std::optional<std::uint32_t> u16() { return number(2); }
  std::optional<std::uint32_t> u24() { return number(3); }
  std::optional<std::string_view> bytes(std::size_t n) {
    if (data_.size() - pos_ < n) return std::nullopt;
    std::string_view out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }

 private:
  std::optional<std::uint32_t> number(std::size_t n) {
    if (data_.size() - pos_ < n) return std::nullopt;
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint8_t>(data_[pos_ + i]);
    pos_ += n;
    return v;
  }
  std::string_view data_;
  std::size_t pos_ = 0;
};

ClientHelloInfo not_tls() {
  ClientHelloInfo info;
  info.status = PeekStatus::kNotTls;
  return info;
}

ClientHelloInfo invalid(const char* why) {
  ClientHelloInfo info;
  info.status = PeekStatus::kInvalid;
  info.error = why;
  return info;
}

// A DNS host name as SNI carries it (RFC 6066 §3): letters, digits, '-', '.', and '_' (seen in
// the wild); at most 253 characters once a trailing dot is removed; no empty labels.
bool valid_host_name(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

std::string normalized(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  std::string out(name);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

const char* parse_server_name(std::string_view ext, ClientHelloInfo& info) {
  Reader r(ext);
  auto list_len = r.u16();
  if (!list_len || *list_len != ext.size() - 2 || *list_len == 0) return "bad server_name list length";
  bool seen_host = false;
  while (!r.empty()) {
    auto type = r.u8();
    auto len = r.u16();
    if (!type || !len) return "truncated server_name entry";
    auto name = r.bytes(*len);
    if (!name) return "truncated server_name entry";
    if (*type != 0) continue;  // only host_name is defined; others are skipped
    if (seen_host) return "more than one host_name";
    seen_host = true;
    if (!valid_host_name(*name)) return "host_name is not a DNS name";
    info.sni = normalized(*name);
  }
  return nullptr;
}

const char* parse_alpn(std::string_view ext, ClientHelloInfo& info) {
  Reader r(ext);
  auto list_len = r.u16();
  if (!list_len || *list_len != ext.size() - 2 || *list_len < 2) return "bad ALPN list length";
  while (!r.empty()) {
    auto len = r.u8();
    if (!len || *len == 0) return "empty ALPN protocol name";
    auto name = r.bytes(*len);
    if (!name) return "truncated ALPN protocol name";
    info.alpn.emplace_back(*name);
  }
  return nullptr;
}

// The ClientHello body (after the 4-byte handshake header), RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2.
ClientHelloInfo parse_body(std::string_view body) {
  Reader r(body);
  auto version = r.u16();
  if (!version || (*version >> 8) != 3) return invalid("bad legacy_version");
  if (!r.bytes(32)) return invalid("truncated random");
  auto sid_len = r.u8();
  if (!sid_len || *sid_len > 32 || !r.bytes(*sid_len)) return invalid("bad session id");
  auto cs_len = r.u16();
  if (!cs_len || *cs_len < 2 || *cs_len % 2 != 0 || !r.bytes(*cs_len)) return invalid("bad cipher suites");
  auto comp_len = r.u8();
  if (!comp_len || *comp_len < 1 || !r.bytes(*comp_len)) return invalid("bad compression methods");
  ClientHelloInfo info;
  info.status = PeekStatus::kHello;
  if (r.empty()) return info;  // no extensions at all (old clients)
  auto ext_total = r.u16();
  if (!ext_total) return invalid("truncated extensions length");
  auto exts = r.bytes(*ext_total);
  if (!exts || !r.empty()) return invalid("extensions length does not match the hello");
  Reader e(*exts);
  std::vector<std::uint16_t> seen;
  while (!e.empty()) {
    auto type = e.u16();
    auto len = e.u16();
    if (!type || !len) return invalid("truncated extension header");
    auto data = e.bytes(*len);
    if (!data) return invalid("truncated extension");
    for (auto t : seen)
      if (t == *type) return invalid("duplicate extension");
    if (seen.size() < 512) seen.push_back(static_cast<std::uint16_t>(*type));
    else return invalid("too many extensions");
    const char* error = nullptr;
    if (*type == kExtServerName) error = parse_server_name(*data, info);
    else if (*type == kExtAlpn) error = parse_alpn(*data, info);
    if (error) return invalid(error);
  }
  return info;
}

}  // namespace

ClientHelloInfo peek_client_hello(std::string_view data, std::size_t max_bytes) {
  const bool at_bound = data.size() >= max_bytes;
  if (at_bound) data = data.substr(0, max_bytes);
  auto need_more = [&]() {
    if (at_bound) return invalid("ClientHello larger than the peek bound");
    return ClientHelloInfo{};
  };
  // Recognize the start of a handshake record byte by byte, so a short prefix is answered early.
  if (data.empty()) return need_more();
  if (static_cast<std::uint8_t>(data[0]) != kRecordHandshake) return not_tls();
  if (data.size() >= 2 && static_cast<std::uint8_t>(data[1]) != 3) return not_tls();
  if (data.size() >= 3 && static_cast<std::uint8_t>(data[2]) > 4) return not_tls();

  std::string handshake;  // the handshake message, reassembled from record fragments
  std::size_t pos = 0;
  while (true) {
    if (data.size() - pos < kRecordHeader) return need_more();
    Reader header(data.substr(pos, kRecordHeader));
    auto type = header.u8();
    auto version = header.u16();
    auto length = header.u16();
    if (*type != kRecordHandshake) return invalid("non-handshake record inside the hello");
    if ((*version >> 8) != 3) return invalid("bad record version");
    if (*length == 0) return invalid("empty handshake record");
    if (*length > kMaxRecordPayload) return invalid("record too long");
    const std::size_t available = data.size() - pos - kRecordHeader;
    const bool complete = available >= *length;
    handshake.append(data.substr(pos + kRecordHeader, complete ? *length : available));
    pos += kRecordHeader + *length;
    // The handshake header is judged as soon as it is here, even inside an incomplete record,
    // so an oversize hello is refused without waiting for its bytes.
    if (handshake.size() < 4) {
      if (!complete) return need_more();
      continue;
    }
    if (static_cast<std::uint8_t>(handshake[0]) != kHandshakeClientHello) return invalid("first handshake message is not a ClientHello");
    Reader hs(std::string_view(handshake).substr(1, 3));
    std::size_t body_len = *hs.u24();
    if (body_len + 4 + kRecordHeader > max_bytes) return invalid("ClientHello larger than the peek bound");
    if (!complete) return need_more();
    if (handshake.size() < body_len + 4) continue;
    if (handshake.size() > body_len + 4) return invalid("bytes after the ClientHello in its record");
    ClientHelloInfo info = parse_body(std::string_view(handshake).substr(4));
    if (info.status == PeekStatus::kHello) info.hello_bytes = pos;
    return info;
  }
}

std::string_view to_string(PeekStatus status) noexcept {
  switch (status) {
    case PeekStatus::kNeedMore: return "need_more";
    case PeekStatus::kNotTls: return "not_tls";
    case PeekStatus::kInvalid: return "invalid";
    case PeekStatus::kHello: return "hello";
  }
  return "unknown";
}

}  // namespace airlock::tls
