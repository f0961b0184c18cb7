#include "dns/forwarder.hpp"

#include "dns/answer.hpp"

#include <airlock/errors.hpp>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/dispatch.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/random.h>
#include <sys/socket.h>

#include <fstream>
#include <set>
#include <sstream>

namespace airlock::dns {

using asio::awaitable;
using namespace asio::experimental::awaitable_operators;
using udp = asio::ip::udp;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::experimental::as_tuple(asio::use_awaitable);

std::uint16_t random_id() {
  std::uint16_t id = 0;
  if (getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
    // getrandom on a 2-byte request does not fail short once the pool is ready; keep a value anyway.
    id = static_cast<std::uint16_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  return id;
}

void set_id(std::string& wire, std::uint16_t id) {
  wire[0] = static_cast<char>(id >> 8);
  wire[1] = static_cast<char>(id & 0xff);
}

std::string encode_or_empty(const Message& m) {
  std::string out;
  if (build(m, out)) out.clear();
  return out;
}

// Is `reply` the answer to the query we sent (id, QR, the same single question)?
bool matches_query(const Message& reply, std::uint16_t id, const Message& query) {
  return reply.header.qr() && reply.header.id == id && reply.header.opcode() == 0 && reply.questions.size() == 1 &&
         reply.questions.front() == query.questions.front();
}

}  // namespace

std::string_view to_string(Outcome outcome) noexcept {
  switch (outcome) {
    case Outcome::kAnswered: return "answered";
    case Outcome::kTruncated: return "truncated";
    case Outcome::kDeniedDomain: return "denied-domain";
    case Outcome::kRebinding: return "rebinding";
    case Outcome::kServFail: return "servfail";
    case Outcome::kFormErr: return "formerr";
    case Outcome::kNotImp: return "notimp";
    case Outcome::kDropped: return "dropped";
  }
  return "?";
}

std::vector<udp::endpoint> read_resolv_conf(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read resolver list " + path);
  std::vector<udp::endpoint> out;
  std::string line;
  while (std::getline(in, line) && out.size() < 16) {
    std::istringstream words(line);
    std::string key, value;
    if (!(words >> key >> value) || key != "nameserver") continue;
    std::error_code ec;
    const auto address = asio::ip::make_address(value, ec);
    if (!ec) out.emplace_back(address, 53);
  }
  if (out.empty()) throw ConfigError(path + " names no resolver (no valid `nameserver` line)");
  return out;
}

// What the coroutines share with stop(): outlives the Forwarder while frames still reference it.
struct Forwarder::State {
  bool stopped = false;
  std::size_t udp_in_flight = 0;
  std::size_t tcp_clients = 0;  // counted from accept, so a burst cannot overshoot the cap
  std::vector<std::shared_ptr<udp::socket>> udp_sockets;
  std::vector<std::shared_ptr<tcp::acceptor>> acceptors;
  std::set<tcp::socket*> clients;
};

Forwarder::Forwarder(asio::any_io_executor executor, ForwarderOptions options, PinSet& pins,
                     const policy::Policy& policy)
    : strand_(asio::make_strand(std::move(executor))),
      options_(std::move(options)),
      pins_(pins),
      policy_(policy),
      state_(std::make_shared<State>()) {
  if (options_.upstreams.empty()) options_.upstreams = read_resolv_conf();
  if (options_.tries == 0) options_.tries = 1;
}

Forwarder::~Forwarder() = default;

void Forwarder::serve_udp(udp::socket socket) {
  auto s = std::make_shared<udp::socket>(std::move(socket));
  asio::dispatch(strand_, [this, s] {
    state_->udp_sockets.push_back(s);
    asio::co_spawn(strand_, udp_loop(s), asio::detached);
  });
}

void Forwarder::serve_tcp(tcp::acceptor acceptor) {
  auto a = std::make_shared<tcp::acceptor>(std::move(acceptor));
  asio::dispatch(strand_, [this, a] {
    state_->acceptors.push_back(a);
    asio::co_spawn(strand_, tcp_accept_loop(a), asio::detached);
  });
}

std::error_code Forwarder::serve_udp_fd(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {errno, std::system_category()};
  udp::socket socket(strand_);
  std::error_code ec;
  socket.assign(addr.ss_family == AF_INET6 ? udp::v6() : udp::v4(), fd, ec);
  if (ec) return ec;
  serve_udp(std::move(socket));
  return {};
}

std::error_code Forwarder::serve_tcp_fd(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {errno, std::system_category()};
  tcp::acceptor acceptor(strand_);
  std::error_code ec;
  acceptor.assign(addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  if (ec) return ec;
  serve_tcp(std::move(acceptor));
  return {};
}

std::error_code Forwarder::listen(const asio::ip::address& address, std::uint16_t port, std::uint16_t& bound_port) {
  std::error_code ec;
  for (int attempt = 0; attempt < 20; ++attempt) {
    udp::socket u(strand_);
    u.open(address.is_v4() ? udp::v4() : udp::v6(), ec);
    if (!ec) u.bind(udp::endpoint(address, port), ec);
    if (ec) return ec;
    const std::uint16_t chosen = u.local_endpoint(ec).port();
    if (ec) return ec;
    tcp::acceptor t(strand_);
    t.open(address.is_v4() ? tcp::v4() : tcp::v6(), ec);
    if (!ec) t.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) t.bind(tcp::endpoint(address, chosen), ec);
    if (!ec) t.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      if (port == 0 && ec == asio::error::address_in_use) continue;  // the free UDP port is taken on TCP
      return ec;
    }
    bound_port = chosen;
    serve_udp(std::move(u));
    serve_tcp(std::move(t));
    return {};
  }
  return ec;
}

void Forwarder::stop() {
  auto state = state_;
  asio::dispatch(strand_, [state] {
    state->stopped = true;
    std::error_code ignored;
    for (auto& s : state->udp_sockets) s->close(ignored);
    for (auto& a : state->acceptors) a->close(ignored);
    for (auto* c : state->clients) c->close(ignored);
    state->udp_sockets.clear();
    state->acceptors.clear();
  });
}

// ---- upstream ----

awaitable<std::error_code> Forwarder::ask_udp(const udp::endpoint& upstream, const std::string& query,
                                              const Message& parsed, std::string& reply, Message& answer) {
  ++stats_.upstream_udp;
  udp::socket socket(strand_);
  std::error_code ec;
  socket.open(upstream.protocol(), ec);
  if (!ec) socket.connect(upstream, ec);  // replies from anywhere else are never seen
  if (ec) co_return ec;
  std::string wire = query;
  const std::uint16_t id = random_id();
  set_id(wire, id);
  asio::steady_timer deadline(strand_);
  deadline.expires_after(options_.try_timeout);
  auto sent = co_await (socket.async_send(asio::buffer(wire), kTuple) || deadline.async_wait(kTuple));
  if (sent.index() == 1) co_return asio::error::timed_out;
  if (auto [send_ec, n] = std::get<0>(sent); send_ec) co_return send_ec;
  std::string buffer(kMaxMessageBytes, '\0');
  while (true) {
    auto got = co_await (socket.async_receive(asio::buffer(buffer), kTuple) || deadline.async_wait(kTuple));
    if (got.index() == 1) co_return asio::error::timed_out;
    auto [recv_ec, n] = std::get<0>(got);
    if (recv_ec) co_return recv_ec;
    const std::string_view bytes(buffer.data(), n);
    Message m;
    if (parse(bytes, m) || !matches_query(m, id, parsed)) continue;  // stray or forged: keep waiting
    reply.assign(bytes);
    answer = std::move(m);
    co_return std::error_code{};
  }
}

awaitable<std::error_code> Forwarder::ask_tcp(const udp::endpoint& upstream, const std::string& query,
                                              const Message& parsed, std::string& reply, Message& answer) {
  ++stats_.upstream_tcp;
  tcp::socket socket(strand_);
  asio::steady_timer deadline(strand_);
  deadline.expires_after(options_.try_timeout);
  const tcp::endpoint to(upstream.address(), upstream.port());
  auto connected = co_await (socket.async_connect(to, kTuple) || deadline.async_wait(kTuple));
  if (connected.index() == 1) co_return asio::error::timed_out;
  if (auto [ec] = std::get<0>(connected); ec) co_return ec;

  std::string wire(2, '\0');
  wire += query;
  const std::uint16_t id = random_id();
  wire[0] = static_cast<char>(query.size() >> 8);
  wire[1] = static_cast<char>(query.size() & 0xff);
  wire[2] = static_cast<char>(id >> 8);
  wire[3] = static_cast<char>(id & 0xff);
  auto written = co_await (asio::async_write(socket, asio::buffer(wire), kTuple) || deadline.async_wait(kTuple));
  if (written.index() == 1) co_return asio::error::timed_out;
  if (auto [ec, n] = std::get<0>(written); ec) co_return ec;

  unsigned char length[2];
  auto got_length = co_await (asio::async_read(socket, asio::buffer(length), kTuple) || deadline.async_wait(kTuple));
  if (got_length.index() == 1) co_return asio::error::timed_out;
  if (auto [ec, n] = std::get<0>(got_length); ec) co_return ec;
  const std::size_t size = (std::size_t{length[0]} << 8) | length[1];
  std::string buffer(size, '\0');
  auto got = co_await (asio::async_read(socket, asio::buffer(buffer), kTuple) || deadline.async_wait(kTuple));
  if (got.index() == 1) co_return asio::error::timed_out;
  if (auto [ec, n] = std::get<0>(got); ec) co_return ec;
  Message m;
  if (auto ec = parse(buffer, m)) co_return ec;
  if (!matches_query(m, id, parsed)) co_return make_error_code(Errc::kBadRdata);
  reply = std::move(buffer);
  answer = std::move(m);
  co_return std::error_code{};
}

// ---- one query ----

awaitable<std::string> Forwarder::resolve(std::string query, Transport transport, Outcome* outcome) {
  ++stats_.queries;
  Outcome local = Outcome::kDropped;
  Outcome& out = outcome ? *outcome : local;
  Message q;
  if (auto ec = parse(query, q)) {
    Header header;
    std::optional<Question> question;
    parse_question(query, header, question);
    if (query.size() < kHeaderBytes || header.qr()) {
      ++stats_.dropped;
      out = Outcome::kDropped;
      co_return std::string{};
    }
    Message formerr;
    formerr.header.id = header.id;
    formerr.header.flags = static_cast<std::uint16_t>(header.flags & 0x7900);
    formerr.header.set_qr(true);
    formerr.header.set_rcode(rcode::kFormErr);
    out = Outcome::kFormErr;
    co_return encode_or_empty(formerr);
  }
  if (q.header.qr()) {
    ++stats_.dropped;
    out = Outcome::kDropped;
    co_return std::string{};
  }
  if (q.header.opcode() != 0) {
    out = Outcome::kNotImp;
    co_return encode_or_empty(make_response(q, rcode::kNotImp, options_.advertised_udp_payload));
  }
  if (q.questions.size() != 1) {
    out = Outcome::kFormErr;
    co_return encode_or_empty(make_response(q, rcode::kFormErr, options_.advertised_udp_payload));
  }
  if (policy_.denies_domain(q.questions.front().name.text())) {
    ++stats_.denied_domain;
    out = Outcome::kDeniedDomain;
    co_return encode_or_empty(make_response(q, rcode::kNxDomain, options_.advertised_udp_payload));
  }

  std::string reply;
  Message answer;
  std::error_code ec = asio::error::timed_out;
  for (unsigned attempt = 0; attempt < options_.tries && ec; ++attempt) {
    const udp::endpoint& upstream = options_.upstreams[attempt % options_.upstreams.size()];
    if (transport == Transport::kUdp) {
      ec = co_await ask_udp(upstream, query, q, reply, answer);
      if (!ec && answer.header.tc()) {
        ++stats_.tcp_retries;
        ec = co_await ask_tcp(upstream, query, q, reply, answer);
      }
    } else {
      ec = co_await ask_tcp(upstream, query, q, reply, answer);
    }
  }
  if (ec) {
    ++stats_.servfail;
    out = Outcome::kServFail;
    co_return encode_or_empty(make_response(q, rcode::kServFail, options_.advertised_udp_payload));
  }

  switch (check_answer(answer, policy_)) {
    case policy::AnswerVerdict::kPass:
      break;
    case policy::AnswerVerdict::kDeniedDomain:
      ++stats_.denied_domain;
      out = Outcome::kDeniedDomain;
      co_return encode_or_empty(make_response(q, rcode::kNxDomain, options_.advertised_udp_payload));
    case policy::AnswerVerdict::kRebinding:
      ++stats_.rebinding;
      out = Outcome::kRebinding;
      co_return encode_or_empty(make_response(q, rcode::kNxDomain, options_.advertised_udp_payload));
  }

  // Pinned before the guest can read the answer, so its first connection finds the pin.
  pins_.record(answer, pins_.now());
  set_id(reply, q.header.id);
  if (transport == Transport::kUdp) {
    const std::size_t limit = std::min(q.udp_payload_limit(), options_.max_udp_payload);
    if (reply.size() > std::max<std::size_t>(limit, kMinUdpPayload)) {
      Message cut = truncated(answer);
      cut.header.id = q.header.id;
      ++stats_.truncated;
      out = Outcome::kTruncated;
      co_return encode_or_empty(cut);
    }
  }
  ++stats_.answered;
  out = Outcome::kAnswered;
  co_return reply;
}

// ---- guest servers ----

awaitable<void> Forwarder::udp_loop(std::shared_ptr<udp::socket> socket) {
  std::string buffer(kMaxMessageBytes, '\0');
  auto state = state_;
  while (!state->stopped) {
    udp::endpoint from;
    auto [ec, n] = co_await socket->async_receive_from(asio::buffer(buffer), from, kTuple);
    if (ec) {
      if (state->stopped || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      continue;  // e.g. an ICMP error reported on the socket
    }
    if (state->udp_in_flight >= options_.max_udp_in_flight) {
      ++stats_.dropped;
      continue;
    }
    ++state->udp_in_flight;
    asio::co_spawn(strand_, udp_query(socket, buffer.substr(0, n), from), asio::detached);
  }
}

awaitable<void> Forwarder::udp_query(std::shared_ptr<udp::socket> socket, std::string query, udp::endpoint from) {
  struct Release {
    std::shared_ptr<State> state;
    ~Release() { --state->udp_in_flight; }
  } release{state_};
  const std::string reply = co_await resolve(std::move(query), Transport::kUdp);
  if (reply.empty() || state_->stopped) co_return;
  co_await socket->async_send_to(asio::buffer(reply), from, kTuple);
}

awaitable<void> Forwarder::tcp_accept_loop(std::shared_ptr<tcp::acceptor> acceptor) {
  auto state = state_;
  while (!state->stopped) {
    auto [ec, socket] = co_await acceptor->async_accept(kTuple);
    if (ec) {
      if (state->stopped || ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      // Out of descriptors or similar: back off briefly instead of spinning.
      asio::steady_timer pause(strand_, std::chrono::milliseconds(100));
      co_await pause.async_wait(kTuple);
      continue;
    }
    if (state->tcp_clients >= options_.max_tcp_clients) {
      std::error_code ignored;
      socket.close(ignored);
      ++stats_.dropped;
      continue;
    }
    ++state->tcp_clients;
    asio::co_spawn(strand_, tcp_client(std::move(socket)), asio::detached);
  }
}

awaitable<void> Forwarder::tcp_client(tcp::socket socket) {
  struct Registration {
    std::shared_ptr<State> state;
    tcp::socket* socket;
    ~Registration() {
      state->clients.erase(socket);
      --state->tcp_clients;
    }
  } registration{state_, &socket};
  state_->clients.insert(&socket);
  asio::steady_timer deadline(strand_);
  while (!state_->stopped) {
    deadline.expires_after(options_.tcp_idle_timeout);
    unsigned char length[2];
    auto got_length = co_await (asio::async_read(socket, asio::buffer(length), kTuple) || deadline.async_wait(kTuple));
    if (got_length.index() == 1 || std::get<0>(std::get<0>(got_length))) break;
    const std::size_t size = (std::size_t{length[0]} << 8) | length[1];
    if (size == 0) break;
    std::string query(size, '\0');
    deadline.expires_after(options_.try_timeout);
    auto got = co_await (asio::async_read(socket, asio::buffer(query), kTuple) || deadline.async_wait(kTuple));
    if (got.index() == 1 || std::get<0>(std::get<0>(got))) break;
    const std::string reply = co_await resolve(std::move(query), Transport::kTcp);
    if (reply.empty() || state_->stopped) break;
    std::string framed(2, '\0');
    framed[0] = static_cast<char>(reply.size() >> 8);
    framed[1] = static_cast<char>(reply.size() & 0xff);
    framed += reply;
    deadline.expires_after(options_.try_timeout);
    auto written = co_await (asio::async_write(socket, asio::buffer(framed), kTuple) || deadline.async_wait(kTuple));
    if (written.index() == 1 || std::get<0>(std::get<0>(written))) break;
  }
  std::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
}

}  // namespace airlock::dns
