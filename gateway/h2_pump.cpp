// The I/O around an H2Bridge (see h2_pump.hpp).
#include "gateway/h2_pump.hpp"

#include <asio/experimental/awaitable_operators.hpp>

#include <openssl/crypto.h>

#include <string>

namespace airlock::gateway {
namespace {

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

struct Pump {
  Stream& guest;
  Stream& upstream;
  H2Bridge& bridge;
  H2Hooks& hooks;
  std::size_t read_size;

  // Notices first (a substitution's audit record before the bytes that carry it), then the bytes.
  asio::awaitable<bool> write_out() {
    std::string g, u;
    bridge.take_output(g, u);
    for (const H2Notice& n : bridge.take_notices()) hooks.notice(n);
    if (hooks.aborted()) {
      wipe(u);
      co_return false;
    }
    if (!hooks.within_budget(bridge.held_bytes() + g.size() + u.size())) {
      wipe(u);
      co_return false;
    }
    if (!u.empty()) {
      const std::error_code ec = co_await upstream.write_all(u);
      wipe(u);
      if (ec) {
        if (!hooks.aborted()) hooks.close(true);
        co_return false;
      }
    }
    if (!g.empty()) {
      const std::error_code ec = co_await guest.write_all(g);
      if (ec) {
        if (!hooks.aborted()) hooks.close(true);
        co_return false;
      }
    }
    if (bridge.terminated()) {
      if (!hooks.aborted()) hooks.close(true);
      co_return false;
    }
    co_return true;
  }

  asio::awaitable<void> side(bool from_guest) {
    Stream& from = from_guest ? guest : upstream;
    Stream& other = from_guest ? upstream : guest;
    while (!hooks.aborted()) {
      char* buf = pump_scratch();
      const IoResult r = co_await from.read_some(buf, read_size);
      if (hooks.aborted()) break;
      if (r.error) {
        // One side ended: what is owed the other still goes, then it ends too.
        co_await write_out();
        if (!hooks.aborted()) {
          co_await other.shutdown_send();
          hooks.close(false);
        }
        break;
      }
      hooks.touch();
      // A reload since the last read: what comes next (new streams, response bytes) sees it.
      if (auto newer = hooks.newer_secrets(bridge.generation())) bridge.use_snapshot(std::move(newer));
      if (from_guest) {
        hooks.bytes(r.bytes, 0);
        bridge.from_guest(std::string_view(buf, r.bytes));
        if (!from.readable_now()) bridge.flush_requests();
      } else {
        hooks.bytes(0, r.bytes);
        bridge.from_upstream(std::string_view(buf, r.bytes));
        if (!from.readable_now()) bridge.flush_responses();
      }
      if (!co_await write_out()) break;
      if (bridge.done()) {
        hooks.close(false);
        break;
      }
    }
  }
};

}  // namespace

asio::awaitable<void> run_h2_bridge(Stream& guest, Stream& upstream, H2Bridge& bridge, H2Hooks& hooks,
                                    std::size_t read_size) {
  using namespace asio::experimental::awaitable_operators;
  Pump pump{guest, upstream, bridge, hooks, read_size};
  // Both prefaces and SETTINGS go first.
  if (!co_await pump.write_out()) co_return;
  co_await (pump.side(true) && pump.side(false));
}

}  // namespace airlock::gateway
