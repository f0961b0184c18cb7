// The I/O around an H2Bridge (see h2_pump.hpp).
#include "gateway/h2_pump.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/this_coro.hpp>

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

  // What the bridge owes one peer. Both sides take the bridge's output (after each batch of
  // input) and both write it, and one side's write may wait on a socket while the other side
  // runs: so what is taken is queued in the order the bridge produced it, and the side that holds
  // the peer's turn writes everything queued by then. A later take never overtakes an earlier one
  // (a session's frames are one ordered stream: HPACK state, a stream's DATA).
  struct Outbox {
    Outbox(Stream& s, bool values, const asio::any_io_executor& ex) : to(s), holds_values(values), turn(ex) {}
    ~Outbox() { drop(); }
    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;
    Stream& to;
    bool holds_values;  // the upstream's may hold values: wiped after use
    WriteGate turn;
    std::string queued;   // taken, not yet written
    std::string sending;  // the turn holder's (swapped with queued), kept for its capacity
    // The guest's: when the streams whose response heads are in `queued` / `sending` had their
    // request head arrive (counted once written).
    std::vector<H2Bridge::Clock::time_point> answered, answering;

    void drop() {
      if (holds_values) wipe(queued);
      queued.clear();
      answered.clear();
    }
  };
  Outbox to_upstream, to_guest;
  std::vector<H2Notice> notices;

  Pump(Stream& g, Stream& u, H2Bridge& b, H2Hooks& h, std::size_t size, const asio::any_io_executor& ex)
      : guest(g), upstream(u), bridge(b), hooks(h), read_size(size), to_upstream(u, true, ex), to_guest(g, false, ex) {}

  // Takes what the bridge owes both peers now. Its notices go first (a substitution's audit
  // record before the bytes that carry it). False: the connection ends.
  bool take() {
    bridge.take_output(to_guest.queued, to_upstream.queued);
    bridge.take_answered(to_guest.answered);
    bridge.take_notices(notices);
    if (!notices.empty()) hooks.notify(notices);
    notices.clear();
    const std::size_t owed = to_guest.queued.size() + to_guest.sending.size() + to_upstream.queued.size() +
                             to_upstream.sending.size();
    if (hooks.aborted() || !hooks.within_budget(bridge.held_bytes() + owed)) {
      to_upstream.drop();
      return false;
    }
    return true;
  }

  // Writes what is queued for one peer, in its turn (after the write ahead of it, which may have
  // taken these bytes with its own). False: the connection ends.
  asio::awaitable<bool> send(Outbox& box) {
    if (box.queued.empty()) co_return true;
    if (!box.turn.try_lock()) co_await box.turn.lock();
    box.sending.swap(box.queued);
    box.answering.swap(box.answered);
    std::error_code ec;
    if (!box.sending.empty()) ec = co_await box.to.write_all(box.sending);
    if (box.holds_values) wipe(box.sending);
    box.sending.clear();
    if (box.sending.capacity() > kKeepBytes) std::string().swap(box.sending);
    if (!ec && !box.answering.empty()) {
      const auto now = H2Bridge::Clock::now();
      for (const auto started : box.answering) hooks.answered(now - started);
    }
    box.answering.clear();
    box.turn.unlock();
    if (ec) {
      if (!hooks.aborted()) hooks.close(true);
      co_return false;
    }
    co_return true;
  }

  asio::awaitable<bool> write_out() {
    if (!take()) co_return false;
    // Each co_await's result in a local: g++ 12 built this function with `if (!co_await ...)
    // co_return false;` into one whose `this` was garbage (a reduced case crashes the same way).
    const bool sent_up = co_await send(to_upstream);
    if (!sent_up) co_return false;
    const bool sent_down = co_await send(to_guest);
    if (!sent_down) co_return false;
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
        co_await write_out();
        if (!hooks.aborted()) {
          co_await other.shutdown_send();
          hooks.close(false);
        }
        break;
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
  auto executor = co_await asio::this_coro::executor;
  Pump pump(guest, upstream, bridge, hooks, read_size, executor);
  // Both prefaces and SETTINGS go first.
  if (!co_await pump.write_out()) co_return;
  co_await (pump.side(true) && pump.side(false));
}

}  // namespace airlock::gateway
