// The I/O around an H2Bridge (see h2_pump.hpp).
#include "gateway/h2_pump.hpp"

#include <asio/experimental/awaitable_operators.hpp>

#include <openssl/crypto.h>

#include <string>
#include <vector>

namespace airlock::gateway {
namespace {

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

// Input read into the bridge before its output is written (bounds what a batch adds to the
// bridge's buffers; the budget is checked on every write as before).
constexpr std::size_t kBatchBytes = 64 * 1024;
// Output buffers larger than this are released after a write (idle memory).
constexpr std::size_t kKeepBytes = 64 * 1024;

struct Pump {
  Stream& guest;
  Stream& upstream;
  H2Bridge& bridge;
  H2Hooks& hooks;
  std::size_t read_size;

  // Notices first (a substitution's audit record before the bytes that carry it), then the bytes.
  // Output buffers, one pair per side (a side's write may be suspended while the other side
  // writes), kept across calls (cleared, the upstream one wiped) so a write costs no
  // allocation; a buffer that grew past kKeepBytes is let go after use.
  struct Out {
    std::string g, u;
  };
  Out outs[2];
  std::vector<H2Bridge::Clock::time_point> answered;  // kept across calls (no allocation per write)
  std::vector<H2Notice> notices;

  asio::awaitable<bool> write_out(Out& out) {
    std::string& g = out.g;
    std::string& u = out.u;
    g.clear();
    u.clear();
    bridge.take_output(g, u);
    // The streams whose response heads are in these bytes; counted once they are written (taken
    // now: another side's call may add more while this one waits on a write).
    std::vector<H2Bridge::Clock::time_point> ended;
    ended.swap(answered);  // its capacity, if no other call holds it
    ended.clear();
    bridge.take_answered(ended);
    bridge.take_notices(notices);
    for (const H2Notice& n : notices) hooks.notice(n);
    notices.clear();
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
    if (u.capacity() > kKeepBytes) std::string().swap(u);
    if (!g.empty()) {
      const std::error_code ec = co_await guest.write_all(g);
      g.clear();
      if (g.capacity() > kKeepBytes) std::string().swap(g);
      if (ec) {
        if (!hooks.aborted()) hooks.close(true);
        co_return false;
      }
      if (!ended.empty()) {
        const auto now = H2Bridge::Clock::now();
        for (const auto started : ended) hooks.answered(now - started);
      }
      ended.clear();
      if (answered.capacity() < ended.capacity()) answered.swap(ended);
    }
    if (bridge.terminated()) {
      if (!hooks.aborted()) hooks.close(true);
      co_return false;
    }
    co_return true;
  }

  // Reads what is ready (up to kBatchBytes) into the bridge before writing once: the frames of
  // several TLS records, e.g. several streams' requests, leave in one record and one send
  // instead of one per record read.
  asio::awaitable<void> side(bool from_guest) {
    Stream& from = from_guest ? guest : upstream;
    Stream& other = from_guest ? upstream : guest;
    Out& out = outs[from_guest ? 0 : 1];
    while (!hooks.aborted()) {
      std::size_t batched = 0;
      bool failed = false;
      for (;;) {
        char* buf = pump_scratch();
        const IoResult r = co_await from.read_some(buf, read_size);
        if (hooks.aborted()) co_return;
        if (r.error) {
          failed = true;
          break;
        }
        hooks.touch();
        batched += r.bytes;
        // Held bytes (a placeholder's or a value's possible start) are let go only at a pause,
        // never because a batch is full: a value split across the batch boundary is still
        // found whole.
        const bool ready = from.readable_now();
        // A reload since the last read: what comes next (new streams, response bytes) sees it.
        if (auto newer = hooks.newer_secrets(bridge.generation())) bridge.use_snapshot(std::move(newer));
        if (from_guest) {
          hooks.bytes(r.bytes, 0);
          bridge.from_guest(std::string_view(buf, r.bytes), H2Bridge::Clock::now());
          if (!ready) bridge.flush_requests();
        } else {
          hooks.bytes(0, r.bytes);
          bridge.from_upstream(std::string_view(buf, r.bytes));
          if (!ready) bridge.flush_responses();
        }
        if (!ready || batched >= kBatchBytes || bridge.terminated() || bridge.done()) break;
      }
      if (failed) {
        // One side ended: what is owed the other still goes, then it ends too.
        co_await write_out(out);
        if (!hooks.aborted()) {
          co_await other.shutdown_send();
          hooks.close(false);
        }
        break;
      }
      if (!co_await write_out(out)) break;
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
  Pump pump{guest, upstream, bridge, hooks, read_size, {}, {}, {}};
  // Both prefaces and SETTINGS go first.
  if (!co_await pump.write_out(pump.outs[0])) co_return;
  co_await (pump.side(true) && pump.side(false));
}

}  // namespace airlock::gateway
