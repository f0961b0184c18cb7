// The I/O loop around the HTTP/2 bridge (h2_pump.cpp) over scripted streams: it reads what is
// ready in batches before writing, and a batch boundary must never count as a pause (a pause
// lets the bridge release held bytes, e.g. the start of a placeholder). Values are fake.
#include "gateway/h2_pump.hpp"

#include <secrets/engine/engine_test_util.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/this_coro.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace airlock::gateway {
namespace {

using http::h2::Event;
using http::h2::Headers;
using http::h2::Role;
using http::h2::Session;

const std::string kBody = "body-FAKE-pump";
const std::string kPlaceholder = "$MSB_BODY";

// Hands out its script in reads of at most `chunk` bytes, ready while any is left; then waits
// (bounded) until shut down, or ends at once when `wait` is null.
class ScriptedStream final : public Stream {
 public:
  ScriptedStream(std::string script, std::size_t chunk, asio::steady_timer* wait)
      : script_(std::move(script)), chunk_(chunk), wait_(wait) {}

  asio::awaitable<IoResult> read_some(char* out, std::size_t size) override {
    // Through the executor like a real read, so the other side runs in between.
    co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    if (pos_ < script_.size()) {
      const std::size_t n = std::min({size, chunk_, script_.size() - pos_});
      std::memcpy(out, script_.data() + pos_, n);
      pos_ += n;
      co_return IoResult{n, {}};
    }
    if (wait_) {
      std::error_code ec;
      co_await wait_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    co_return IoResult{0, asio::error::eof};
  }
  asio::awaitable<std::error_code> write_all(std::string_view data) override {
    written.append(data);
    co_return std::error_code{};
  }
  asio::awaitable<std::error_code> shutdown_send() override {
    if (wait_) wait_->cancel();
    co_return std::error_code{};
  }
  bool readable_now() override { return pos_ < script_.size(); }

  std::string written;

 private:
  std::string script_;
  std::size_t pos_ = 0;
  std::size_t chunk_;
  asio::steady_timer* wait_;
};

struct Hooks final : H2Hooks {
  void notify(const std::vector<H2Notice>& ns) override { notices.insert(notices.end(), ns.begin(), ns.end()); }
  void touch() override {}
  bool within_budget(std::size_t) override { return true; }
  bool aborted() override { return closed; }
  void close(bool) override { closed = true; }
  void bytes(std::size_t, std::size_t) override {}
  void answered(std::chrono::steady_clock::duration latency) override {
    ++answered_streams;
    EXPECT_GE(latency.count(), 0);
  }
  std::size_t answered_streams = 0;
  std::shared_ptr<const SecretsSnapshot> newer_secrets(std::uint64_t) override { return nullptr; }
  bool closed = false;
  std::vector<H2Notice> notices;
};

// A client that learnt a server's SETTINGS (so its windows allow a large body), then sends one
// POST whose body is `body`: the bytes a guest would send after the handshake, in order.
std::string guest_script(const std::string& body) {
  Session client(Role::kClient, {});
  Session server(Role::kServer, {});
  std::string script, c, s;
  std::vector<Event> ev;
  client.pending_output(c);
  server.receive(c, ev);
  server.pending_output(s);
  client.receive(s, ev);
  script += c;
  const Headers head = {{":method", "POST"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", "/v1"}};
  const auto r = client.submit_request(head, false);
  EXPECT_EQ(r.error, http::h2::H2Error::kNone);
  client.submit_data(r.stream, body, true);
  c.clear();
  client.pending_output(c);
  script += c;
  return script;
}

// The upstream's first bytes: a server's SETTINGS and connection WINDOW_UPDATE.
std::string upstream_script() {
  Session server(Role::kServer, {});
  std::string s;
  server.pending_output(s);
  return s;
}

// A bridge for api.example.com (pinned at its test address) gated with `specs`.
struct TestBridge {
  explicit TestBridge(const std::vector<secrets::testing::SecretSpec>& specs) : bridge(snapshot(specs), context()) {}
  static std::shared_ptr<const SecretsSnapshot> snapshot(const std::vector<secrets::testing::SecretSpec>& specs) {
    auto s = std::make_shared<SecretsSnapshot>();
    s->set = std::make_shared<const secrets::SecretSet>(secrets::testing::make_secrets(specs), ViolationAction::kBlockAndLog);
    s->scrub_forms.emplace(s->set->secrets());
    s->generation = 1;
    return s;
  }
  secrets::ConnectionContext context() {
    pins.pin(secrets::testing::api_ip(), "api.example.com");
    return secrets::testing::tls_context(&pins);
  }
  secrets::testing::FakePins pins;  // constructed before the bridge, which points to them
  H2Bridge bridge;
};

struct PumpRun {
  std::string to_upstream;  // the DATA that reached the upstream, read by a real server session
  std::string wire;         // every byte written to the upstream
  std::vector<H2Notice> notices;
};

constexpr std::size_t kChunk = kScratchBytes;  // the gateway's read size
constexpr std::size_t kBatch = 64 * 1024;      // h2_pump.cpp's kBatchBytes

// One POST whose body has `placeholder` across the pump's batch boundary, through the pump.
PumpRun run_across_boundary(const std::string& placeholder, const std::vector<secrets::testing::SecretSpec>& specs) {
  std::string script;
  for (std::size_t pad = kBatch - 400; pad < kBatch; ++pad) {
    script = guest_script(std::string(pad, 'a') + placeholder + std::string(40000, 'b'));
    const std::size_t at = script.find(placeholder);
    if (at != std::string::npos && at < kBatch && at + placeholder.size() > kBatch) break;
    script.clear();
  }
  EXPECT_FALSE(script.empty()) << "no padding put the placeholder across the batch boundary";

  TestBridge b(specs);
  H2Bridge& bridge = b.bridge;

  asio::io_context io;
  asio::steady_timer upstream_wait(io);
  upstream_wait.expires_after(std::chrono::seconds(10));  // bounds the test if the pump never ends
  ScriptedStream guest(script, kChunk, nullptr);
  ScriptedStream upstream(upstream_script(), kChunk, &upstream_wait);
  Hooks hooks;
  asio::co_spawn(io, run_h2_bridge(guest, upstream, bridge, hooks, kChunk), asio::detached);
  io.run();

  PumpRun run;
  run.wire = upstream.written;
  run.notices = hooks.notices;
  Session verifier(Role::kServer, {});
  std::vector<Event> events;
  verifier.receive(upstream.written, events);
  for (const Event& e : events)
    if (e.kind == Event::Kind::kData) run.to_upstream += e.data;
  return run;
}

// A real HTTP/2 server (a Session) as the upstream: every request that ends is answered 200
// with a small body. Reads wait until there is something to send, or the pump shuts it down.
class ServerStream final : public Stream {
 public:
  explicit ServerStream(asio::io_context& io) : server_(Role::kServer, {}), ready_(io) {
    ready_.expires_at(asio::steady_timer::time_point::max());
  }
  asio::awaitable<IoResult> read_some(char* out, std::size_t size) override {
    for (;;) {
      if (pending_.empty()) server_.pending_output(pending_);
      if (!pending_.empty()) {
        const std::size_t n = std::min(size, pending_.size());
        std::memcpy(out, pending_.data(), n);
        pending_.erase(0, n);
        co_return IoResult{n, {}};
      }
      if (closed_) co_return IoResult{0, asio::error::eof};
      std::error_code ec;
      co_await ready_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      ready_.expires_at(asio::steady_timer::time_point::max());
    }
  }
  asio::awaitable<std::error_code> write_all(std::string_view data) override {
    std::vector<Event> events;
    server_.receive(data, events);
    for (const Event& e : events) {
      if ((e.kind == Event::Kind::kHeaders || e.kind == Event::Kind::kData) && e.end_stream) {
        server_.submit_response(e.stream, {{":status", "200"}}, false);
        server_.submit_data(e.stream, "ok", true);
        ++answered;
      }
    }
    ready_.cancel();
    co_return std::error_code{};
  }
  asio::awaitable<std::error_code> shutdown_send() override {
    closed_ = true;
    ready_.cancel();
    co_return std::error_code{};
  }
  int answered = 0;

 private:
  Session server_;
  std::string pending_;
  asio::steady_timer ready_;
  bool closed_ = false;
};

// The request-latency histogram's input: the pump reports one latency per stream whose response
// reached the guest, none for a stream the gates refused.
TEST(H2Pump, EachAnsweredStreamIsReportedOnceWithItsLatency) {
  Session client(Role::kClient, {});
  std::string script;
  client.pending_output(script);
  const std::vector<std::string> authorities = {"api.example.com", "evil.example", "api.example.com", "api.example.com"};
  for (const std::string& authority : authorities) {
    const Headers head = {{":method", "GET"}, {":scheme", "https"}, {":authority", authority}, {":path", "/v1"},
                          {"authorization", "Bearer " + kPlaceholder}};
    ASSERT_EQ(client.submit_request(head, true).error, http::h2::H2Error::kNone);
  }
  client.pending_output(script);

  TestBridge b({{"BODY", kBody, {"api.example.com"}}});
  H2Bridge& bridge = b.bridge;

  asio::io_context io;
  asio::steady_timer guest_wait(io);
  guest_wait.expires_after(std::chrono::milliseconds(500));  // then the guest hangs up
  ScriptedStream guest(script, kChunk, &guest_wait);
  ServerStream upstream(io);
  Hooks hooks;
  asio::co_spawn(io, run_h2_bridge(guest, upstream, bridge, hooks, kChunk), asio::detached);
  io.run();

  EXPECT_EQ(upstream.answered, 3) << "the refused stream reached the upstream, or a request was lost";
  EXPECT_EQ(hooks.answered_streams, 3u);
  std::size_t refused = 0;
  for (const H2Notice& n : hooks.notices) refused += n.kind == H2Notice::Kind::kBlocked ? 1 : 0;
  EXPECT_EQ(refused, 1u);
  // What the guest got: three answers and one reset.
  std::vector<Event> events;
  client.receive(guest.written, events);
  int ok = 0;
  for (const Event& e : events) ok += e.kind == Event::Kind::kData && e.end_stream ? 1 : 0;
  EXPECT_EQ(ok, 3);
}

// The frames in `wire` (a session's output, after the client preface if it has one): type and
// flags of each, in order.
std::vector<std::pair<int, int>> frames_of(std::string_view wire) {
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  if (wire.substr(0, kPreface.size()) == kPreface) wire.remove_prefix(kPreface.size());
  std::vector<std::pair<int, int>> out;
  while (wire.size() >= 9) {
    const auto b = [&](std::size_t i) { return static_cast<unsigned char>(wire[i]); };
    const std::size_t length = (std::size_t{b(0)} << 16) | (std::size_t{b(1)} << 8) | b(2);
    out.emplace_back(b(3), b(4));
    wire.remove_prefix(std::min(wire.size(), 9 + length));
  }
  return out;
}
bool has_frame(std::string_view wire, int type, int flags = 0) {
  for (const auto& [t, f] : frames_of(wire))
    if (t == type && (f & flags) == flags) return true;
  return false;
}
constexpr int kDataFrame = 0;
constexpr int kHeadersFrame = 1;
constexpr int kSettingsFrame = 4;

// A stream whose reads and writes go as the test stages them: each chunk is read once its
// condition holds; a write for which `hold` is true waits (bounded) until `release` holds.
// Writers are serialized, as TlsStream's are. Everything ends by `deadline`.
class StagedStream final : public Stream {
 public:
  struct Chunk {
    std::string bytes;
    std::function<bool()> ready;
  };
  StagedStream(asio::io_context& io, std::vector<Chunk> chunks, std::chrono::steady_clock::time_point deadline)
      : chunks_(std::move(chunks)), deadline_(deadline), gate_(io.get_executor()) {}

  std::function<bool(std::string_view)> hold = [](std::string_view) { return false; };
  std::function<bool()> release = [] { return true; };
  std::function<bool()> ended = [] { return false; };  // reads end (EOF) once true
  std::string written;

  asio::awaitable<IoResult> read_some(char* out, std::size_t size) override {
    while (!shut_ && !ended() && std::chrono::steady_clock::now() < deadline_) {
      if (next_ < chunks_.size() && chunks_[next_].ready()) {
        const std::string& c = chunks_[next_++].bytes;
        EXPECT_LE(c.size(), size);
        std::memcpy(out, c.data(), std::min(size, c.size()));
        co_return IoResult{std::min(size, c.size()), {}};
      }
      co_await pause();
    }
    co_return IoResult{0, asio::error::eof};
  }
  asio::awaitable<std::error_code> write_all(std::string_view data) override {
    co_await gate_.lock();
    if (hold(data))
      while (!release() && std::chrono::steady_clock::now() < deadline_) co_await pause();
    written.append(data);
    gate_.unlock();
    co_return std::error_code{};
  }
  asio::awaitable<std::error_code> shutdown_send() override {
    shut_ = true;
    co_return std::error_code{};
  }

 private:
  static asio::awaitable<void> pause() {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
    co_await t.async_wait(asio::use_awaitable);
  }
  std::vector<Chunk> chunks_;
  std::size_t next_ = 0;
  std::chrono::steady_clock::time_point deadline_;
  WriteGate gate_;
  bool shut_ = false;
};

// Both sides' writes may be in flight at once (the guest side's upstream write waits while the
// upstream side writes to the guest): bytes owed the guest must still leave in the order its
// session produced them. Staged: the guest's SETTINGS ACK is taken while the request's write to
// the upstream is held, then the response arrives; the old pump wrote the response first (a
// reordered session byte stream: HPACK state, a stream's DATA in the wrong order).
TEST(H2Pump, BytesOwedTheGuestLeaveInTheOrderTheyWereProduced) {
  Session client(Role::kClient, {});
  std::string guest_bytes;
  client.pending_output(guest_bytes);  // preface and SETTINGS
  const Headers head = {{":method", "GET"}, {":scheme", "https"}, {":authority", "api.example.com"}, {":path", "/v1"}};
  ASSERT_EQ(client.submit_request(head, true).error, http::h2::H2Error::kNone);
  client.pending_output(guest_bytes);

  // The upstream: its SETTINGS, then (once the request is on its way) SETTINGS ACK and the answer.
  Session server(Role::kServer, {});
  std::string up_settings, up_answer;
  server.pending_output(up_settings);
  {
    Session peer(Role::kClient, {});  // what the bridge's client session will send: ACKed, stream 1
    std::string c;
    std::vector<Event> ev;
    peer.pending_output(c);
    ASSERT_EQ(peer.submit_request(head, true).error, http::h2::H2Error::kNone);
    peer.pending_output(c);
    server.receive(c, ev);
    server.submit_response(1, {{":status", "200"}}, false);
    server.submit_data(1, "ok", true);
    server.pending_output(up_answer);
  }

  TestBridge b({{"BODY", kBody, {"api.example.com"}}});
  H2Bridge& bridge = b.bridge;

  asio::io_context io;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  StagedStream* guest_ptr = nullptr;
  StagedStream* upstream_ptr = nullptr;
  bool request_on_its_way = false;  // its write to the upstream has begun
  // The guest speaks once the upstream's SETTINGS were acknowledged (the upstream side's first
  // write after the prefaces), so the request's write to the upstream is the only one in flight.
  StagedStream guest(io, {{guest_bytes, [&] { return has_frame(upstream_ptr->written, kSettingsFrame, 1); }}},
                     deadline);
  StagedStream upstream(io, {{up_settings, [] { return true; }},
                             {up_answer, [&] { return request_on_its_way; }}},
                        deadline);
  guest_ptr = &guest;
  upstream_ptr = &upstream;
  guest.ended = [&] { return has_frame(guest.written, kDataFrame); };  // then the guest hangs up
  // The request's write waits until the response head reached the guest (the old pump's order),
  // or 300 ms (the fixed pump writes nothing to the guest while it waits).
  const auto held_until = std::make_shared<std::chrono::steady_clock::time_point>();
  upstream.hold = [&, held_until](std::string_view data) {
    *held_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    if (!has_frame(data, kHeadersFrame)) return false;
    request_on_its_way = true;
    return true;
  };
  upstream.release = [&, held_until] {
    return has_frame(guest_ptr->written, kHeadersFrame) || std::chrono::steady_clock::now() >= *held_until;
  };
  Hooks hooks;
  asio::co_spawn(io, run_h2_bridge(guest, upstream, bridge, hooks, kChunk), asio::detached);
  io.run();

  // The guest's session queued its SETTINGS ACK (for the guest's SETTINGS) before the response.
  const auto frames = frames_of(guest.written);
  std::ptrdiff_t ack = -1, headers = -1;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].first == kSettingsFrame && (frames[i].second & 1) != 0 && ack < 0) ack = static_cast<std::ptrdiff_t>(i);
    if (frames[i].first == kHeadersFrame && headers < 0) headers = static_cast<std::ptrdiff_t>(i);
  }
  ASSERT_GE(ack, 0) << "the guest's SETTINGS were never acknowledged";
  ASSERT_GE(headers, 0) << "the response never reached the guest";
  EXPECT_LT(ack, headers) << "bytes owed the guest left in another order than produced";
  std::vector<Event> events;
  EXPECT_EQ(client.receive(guest.written, events), http::h2::H2Error::kNone);
  std::string body;
  for (const Event& e : events)
    if (e.kind == Event::Kind::kData) body += e.data;
  EXPECT_EQ(body, "ok");
}

InjectionScopes body_scope() {
  InjectionScopes scopes;
  scopes.headers = false;
  scopes.basic_auth = false;
  scopes.body = true;
  return scopes;
}

TEST(H2Pump, PlaceholderAcrossABatchBoundaryIsSubstituted) {
  const PumpRun run = run_across_boundary(kPlaceholder, {{"BODY", kBody, {"api.example.com"}, body_scope()}});
  ASSERT_GT(run.to_upstream.size(), kBatch) << "the body did not reach the upstream";
  EXPECT_NE(run.to_upstream.find(kBody), std::string::npos) << "the value was not substituted";
  EXPECT_EQ(run.wire.find("$MSB_B"), std::string::npos) << "a placeholder start reached the upstream";
}

// A placeholder of a secret this host may not receive, split by the batch boundary: found (a
// violation, the stream is blocked) and its first half held back until the verdict. 23d4a24's
// pump treated a full batch as a pause, so the gate released the first half to the upstream.
TEST(H2Pump, DisallowedPlaceholderAcrossABatchBoundaryIsAViolation) {
  const PumpRun run = run_across_boundary("$MSB_OTHER", {{"OTHER", "other-FAKE-pump", {"other.example"}, body_scope()}});
  bool blocked = false;
  for (const H2Notice& n : run.notices)
    if (n.kind == H2Notice::Kind::kBlocked && n.block && n.block->violation) blocked = true;
  EXPECT_TRUE(blocked) << "the split placeholder was not found";
  // Its start was held back until the verdict, not sent ahead of it.
  EXPECT_EQ(run.wire.find("$MSB_O"), std::string::npos) << "a placeholder start reached the upstream";
}

}  // namespace
}  // namespace airlock::gateway
