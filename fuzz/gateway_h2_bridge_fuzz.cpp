// libFuzzer target for the gateway's HTTP/2 bridge (gateway/h2_bridge, issue 13): a guest's frames
// in, through the guest-side codec, the per-stream engine gates and the upstream-side codec, to a
// real nghttp2 server that echoes every request (its header values and body back in a response
// header, DATA and a trailer).
//
// Input: control byte 0: bit 0 the connection's SNI (0: api.example.com, pinned; 1: evil.example),
// bit 1 block-and-terminate, bit 2 the guest pauses after each piece (held request bytes leave),
// bit 3 a reload after the first piece (later streams on the other snapshot, issue 17); byte 1: the size of the pieces the guest's bytes are fed in
// (1-256). Then the guest's byte stream (seeds start with the client preface).
// Properties checked (abort on failure): no crash or sanitizer report; the bytes the bridge holds
// stay bounded; the upstream receives A's value only on a stream whose :authority is the SNI
// api.example.com, and only as never-indexed fields (unless the guest typed the value itself);
// no DATA byte toward the guest holds a value (echoes are scrubbed); a notice never holds a value.
#include "gateway/h2_bridge.hpp"

#include <secrets/engine/engine_test_util.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace airlock;
using airlock::http::h2::Event;
using airlock::http::h2::Header;
using airlock::http::h2::Headers;
using airlock::http::h2::Role;
using airlock::http::h2::Session;

constexpr std::string_view kValueA = "va-FAKE-h2";
constexpr std::string_view kValueB = "vb-FAKE-h2";

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct World {
  secrets::testing::FakePins pins;
  std::shared_ptr<const gateway::SecretsSnapshot> snapshots[2];
  World() {
    pins.pin(secrets::testing::api_ip(), "api.example.com");
    pins.pin(secrets::testing::evil_ip(), "evil.example");
    InjectionScopes body;
    body.body = true;
    body.query = true;
    const std::vector<secrets::testing::SecretSpec> specs = {
        {"A", std::string(kValueA), {"api.example.com"}, body},
        {"B", std::string(kValueB), {"other.example.net"}, {}},
    };
    const ViolationAction actions[2] = {ViolationAction::kBlockAndLog, ViolationAction::kBlockAndTerminate};
    for (int i = 0; i < 2; ++i) {
      auto snap = std::make_shared<gateway::SecretsSnapshot>();
      snap->set = std::make_shared<secrets::SecretSet>(secrets::testing::make_secrets(specs), actions[i]);
      snap->scrub_forms.emplace(snap->set->secrets());
      snap->generation = static_cast<std::uint64_t>(i) + 1;
      snapshots[i] = std::move(snap);
    }
  }
};

World& world() {
  static World w;
  return w;
}

bool has_value(std::string_view s) {
  return s.find(kValueA) != std::string_view::npos || s.find(kValueB) != std::string_view::npos;
}

// Every DATA frame payload in a stream of HTTP/2 frames that starts at a frame boundary (the
// server's bytes toward the guest: SETTINGS first, no preface).
void data_payloads(std::string_view wire, std::string& out) {
  while (wire.size() >= 9) {
    const std::size_t len = (std::size_t(std::uint8_t(wire[0])) << 16) | (std::size_t(std::uint8_t(wire[1])) << 8) |
                            std::uint8_t(wire[2]);
    if (wire.size() < 9 + len) return;
    if (wire[3] == 0) out.append(wire.substr(9, len));
    wire.remove_prefix(9 + len);
  }
}

// The host part of an authority as the gates compare it (lower case, no port, no trailing dot).
std::string host_of(std::string_view authority) {
  std::string h(authority.substr(0, authority.find(':')));
  for (char& c : h) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  if (!h.empty() && h.back() == '.') h.pop_back();
  return h;
}

struct Upstream {
  Session session{Role::kServer, {}};
  std::string authority_of[1024];
  bool typed = false;  // the guest typed a value itself: nothing to conclude from seeing one
  std::string sni;

  void receive(std::string_view bytes) {
    std::vector<Event> events;
    session.receive(bytes, events);
    for (Event& e : events) on(e);
  }
  void on(Event& e) {
    const std::size_t slot = static_cast<std::size_t>(e.stream) % 1024;
    if (e.kind == Event::Kind::kHeaders) {
      std::string echo;
      authority_of[slot].clear();
      for (const Header& h : e.headers) {
        if (h.name == ":authority" || (h.name == "host" && authority_of[slot].empty())) authority_of[slot] = host_of(h.value);
      }
      for (const Header& h : e.headers) {
        check(typed || h.value.find(kValueB) == std::string::npos);  // B is never eligible here
        if (!typed && h.value.find(kValueA) != std::string::npos) {
          check(h.never_index);
          check(sni == "api.example.com" && authority_of[slot] == sni);
        }
        echo += h.value;
        echo += '|';  // not a space: a trailing one would make the response malformed
      }
      if (echo.size() > 4096) echo.resize(4096);
      const Headers head = {{":status", "200"}, {"x-echo", echo}};
      session.submit_response(e.stream, head, false);
      session.submit_data(e.stream, echo, false);
    }
    if (e.kind == Event::Kind::kData) {
      if (!typed && e.data.find(kValueA) != std::string::npos) check(sni == "api.example.com" && authority_of[slot] == sni);
      check(typed || e.data.find(kValueB) == std::string::npos);
      session.submit_data(e.stream, e.data.substr(0, 4096), false);
      session.consumed(e.stream, e.data.size());
    }
    if (e.end_stream && (e.kind == Event::Kind::kData || e.kind == Event::Kind::kHeaders || e.kind == Event::Kind::kTrailers)) {
      session.submit_trailers(e.stream, {{"grpc-status", "0"}, {"grpc-message", std::string(kValueA)}});
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  World& w = world();
  const bool evil = (data[0] & 1) != 0;
  const std::size_t which = (data[0] >> 1) & 1;
  const std::shared_ptr<const gateway::SecretsSnapshot>& snapshot = w.snapshots[which];
  const std::size_t piece = std::size_t(data[1]) + 1;
  const std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);

  const std::string sni = evil ? "evil.example" : "api.example.com";
  gateway::H2Bridge bridge(snapshot, secrets::testing::tls_context(&w.pins, sni, evil ? secrets::testing::evil_ip() : secrets::testing::api_ip()));
  auto up = std::make_unique<Upstream>();
  up->sni = sni;
  up->typed = input.find("FAKE-h2") != std::string_view::npos;

  std::string to_guest_all;
  std::size_t pos = 0;
  for (int round = 0; round < 4096 && !bridge.terminated(); ++round) {
    // A reload after the first piece: later streams on the other snapshot, two scrubbers a stream.
    if (round == 1 && (data[0] & 8) != 0) bridge.use_snapshot(w.snapshots[1 - which]);
    bool moved = false;
    if (pos < input.size()) {
      const std::string_view chunk = input.substr(pos, piece);
      pos += chunk.size();
      bridge.from_guest(chunk);
      if ((data[0] & 4) != 0) bridge.flush_requests();  // the guest "paused" after each piece
      moved = true;
    }
    std::string g, u;
    bridge.take_output(g, u);
    if (!u.empty()) {
      up->receive(u);
      moved = true;
    }
    std::string back;
    up->session.pending_output(back);
    if (!back.empty()) {
      bridge.from_upstream(back);
      bridge.flush_responses();
      std::string u2;
      bridge.take_output(g, u2);
      if (!u2.empty()) up->receive(u2);
      moved = true;
    }
    to_guest_all += g;
    for (const gateway::H2Notice& n : bridge.take_notices()) {
      check(!has_value(n.reason));
      if (n.block) check(!has_value(n.block->reason) && !has_value(n.block->host));
    }
    check(bridge.held_bytes() < (64u << 20));
    if (!moved && g.empty()) break;
  }
  std::string payloads;
  data_payloads(to_guest_all, payloads);
  check(payloads.find(kValueA) == std::string::npos && payloads.find(kValueB) == std::string::npos);
  return 0;
}
