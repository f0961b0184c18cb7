#include <http/websocket_deflate.hpp>
#include <http/wiping_alloc.hpp>

#include <common/value_sink.hpp>

#include <openssl/crypto.h>
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace airlock::http::websocket {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  while (true) {
    const std::size_t at = s.find(sep);
    parts.push_back(trim(s.substr(0, at)));
    if (at == std::string_view::npos) break;
    s.remove_prefix(at + 1);
  }
  return parts;
}

// "8".."15", optionally quoted.
bool window_bits(std::string_view v, int& out) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() > 2) return false;
  int n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  if (n < 8 || n > 15) return false;
  out = n;
  return true;
}

// The relay compresses every message again on the data path: zlib's fastest level (about 4×
// level 6's speed here for a few percent more bytes; bench/http_websocket_bench.cpp).
constexpr int kLevel = Z_BEST_SPEED;

constexpr unsigned char kTail[4] = {0x00, 0x00, 0xFF, 0xFF};

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

}  // namespace

Negotiated parse_extensions(std::string_view field, DeflateParams& params) {
  params = DeflateParams{};
  std::vector<std::string_view> extensions;
  for (std::string_view e : split(field, ','))
    if (!e.empty()) extensions.push_back(e);
  if (extensions.empty()) return Negotiated::kNone;
  if (extensions.size() != 1) return Negotiated::kUnsupported;
  const std::vector<std::string_view> items = split(extensions[0], ';');
  if (!iequals(items[0], "permessage-deflate")) return Negotiated::kUnsupported;
  bool seen[4] = {false, false, false, false};
  for (std::size_t i = 1; i < items.size(); ++i) {
    const std::string_view item = items[i];
    const std::size_t eq = item.find('=');
    const std::string_view name = trim(item.substr(0, eq));
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : trim(item.substr(eq + 1));
    const bool has_value = eq != std::string_view::npos;
    int slot = -1;
    if (iequals(name, "server_no_context_takeover") && !has_value) {
      slot = 0;
      params.server_no_context_takeover = true;
    } else if (iequals(name, "client_no_context_takeover") && !has_value) {
      slot = 1;
      params.client_no_context_takeover = true;
    } else if (iequals(name, "server_max_window_bits") && has_value && window_bits(value, params.server_max_window_bits)) {
      slot = 2;
    } else if (iequals(name, "client_max_window_bits") && has_value && window_bits(value, params.client_max_window_bits)) {
      slot = 3;
    } else {
      return Negotiated::kUnsupported;
    }
    if (seen[slot]) return Negotiated::kUnsupported;
    seen[slot] = true;
  }
  return Negotiated::kDeflate;
}

// ---- inflate ----

struct MessageInflater::State {
  z_stream z{};
  ~State() { inflateEnd(&z); }
};

MessageInflater::MessageInflater(int window_bits, bool no_context_takeover, std::size_t max_output, std::size_t max_ratio)
    : reset_each_(no_context_takeover), max_output_(max_output), max_ratio_(max_ratio) {
  auto s = std::make_unique<State>();
  use_wiping_allocator(s->z);
  // zlib inflates a window of 8 with 9 bits (a larger window reads a smaller one's stream).
  if (inflateInit2(&s->z, -std::max(9, std::min(15, window_bits))) != Z_OK) {
    error_ = Error::kNoMemory;
    return;
  }
  s_ = std::move(s);
}

MessageInflater::~MessageInflater() = default;

Error MessageInflater::inflate(std::string_view compressed, std::string& out) {
  wipe(out);
  if (error_ != Error::kNone) return error_;
  const std::size_t cap = std::min<std::size_t>(max_output_, max_ratio_ * compressed.size() + kInflateSlack);
  z_stream& z = s_->z;
  char buf[16384];
  std::size_t dirty = 0;  // bytes of buf written so far (wiped at the end, not all 16 KiB)
  bool done = false;
  for (int part = 0; part < 2 && !done; ++part) {
    const std::string_view in = part == 0 ? compressed : std::string_view(reinterpret_cast<const char*>(kTail), 4);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    while (true) {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      const int r = ::inflate(&z, Z_SYNC_FLUSH);
      const std::size_t got = sizeof buf - z.avail_out;
      dirty = std::max(dirty, got);
      if (out.size() + got > cap) {
        OPENSSL_cleanse(buf, dirty);
        wipe(out);
        return error_ = Error::kInflateTooLarge;
      }
      out.append(buf, got);
      if (r == Z_STREAM_END) {
        // A final block ends the stream: the next message starts a fresh one (RFC 7692 §7.2.3.1
        // allows BFINAL); bytes after it are not deflate data.
        if (z.avail_in != 0) {
          // Only the 4-byte tail may follow a final block.
          const std::size_t left = z.avail_in;
          const bool only_tail = part == 1 || (left <= 4 && std::memcmp(z.next_in, kTail, left) == 0);
          if (!only_tail) {
            OPENSSL_cleanse(buf, dirty);
            wipe(out);
            return error_ = Error::kInflateCorrupt;
          }
        }
        inflateReset(&z);
        done = true;
        break;
      }
      if (r != Z_OK && r != Z_BUF_ERROR) {
        OPENSSL_cleanse(buf, dirty);
        wipe(out);
        return error_ = Error::kInflateCorrupt;
      }
      if (z.avail_in == 0 && z.avail_out != 0) break;
      if (r == Z_BUF_ERROR && z.avail_in != 0 && z.avail_out != 0) {
        OPENSSL_cleanse(buf, dirty);
        wipe(out);
        return error_ = Error::kInflateCorrupt;
      }
    }
  }
  OPENSSL_cleanse(buf, dirty);
  // With the tail consumed, a well-formed message ends between blocks (zlib: 128 in data_type
  // when it waits for the next block header). Anything else (an empty payload, a block cut
  // short) would leave the next message to be read from inside this one: corrupt.
  if (!done && (z.avail_in != 0 || (z.data_type & 128) == 0)) {
    wipe(out);
    return error_ = Error::kInflateCorrupt;
  }
  if (reset_each_) inflateReset(&z);
  return Error::kNone;
}

// ---- deflate ----

struct MessageDeflater::State {
  z_stream z{};
  ~State() { deflateEnd(&z); }
};

MessageDeflater::MessageDeflater(int window_bits, bool no_context_takeover) : reset_each_(no_context_takeover) {
  if (window_bits < 9 || window_bits > 15) return;  // usable() false: messages go uncompressed
  auto s = std::make_unique<State>();
  use_wiping_allocator(s->z);
  if (deflateInit2(&s->z, kLevel, Z_DEFLATED, -window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) return;
  s_ = std::move(s);
}

MessageDeflater::~MessageDeflater() = default;

Error MessageDeflater::deflate(std::string_view message, std::string& out) {
  wipe(out);
  if (!s_) return Error::kNoMemory;
  z_stream& z = s_->z;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z.avail_in = static_cast<uInt>(message.size());
  // Straight into `out` (no scratch to wipe): grown when deflateBound was not enough.
  std::size_t used = 0;
  out.resize(deflateBound(&z, static_cast<uLong>(message.size())) + 16);
  while (true) {
    if (out.size() - used < 64) ValueSink(out).resize(out.size() * 2);  // the old buffer is wiped
    z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
    z.avail_out = static_cast<uInt>(out.size() - used);
    const int r = ::deflate(&z, Z_SYNC_FLUSH);
    used = out.size() - z.avail_out;
    if (r != Z_OK && r != Z_BUF_ERROR) {
      wipe(out);
      return Error::kNoMemory;
    }
    if (z.avail_in == 0 && z.avail_out != 0) break;
  }
  out.erase(std::min(used, out.size()));  // (not resize: g++ 12 -O3 reads its growth path as an overlapping copy, -Wrestrict)
  // A sync flush ends with an empty stored block: 0x00 0x00 0xFF 0xFF, removed (RFC 7692 §7.2.1).
  if (out.size() >= 4 && std::memcmp(out.data() + out.size() - 4, kTail, 4) == 0) out.resize(out.size() - 4);
  if (out.empty()) out.push_back('\0');  // never an empty payload (RFC 7692 §7.2.3.6: one 0x00)
  if (reset_each_) deflateReset(&z);
  return Error::kNone;
}

}  // namespace airlock::http::websocket
