#pragma once
// The admin listener (off unless asked for): GET /metrics (Prometheus text), /healthz (the process
// answers), /readyz (the gateway is serving: 200, else 503) and, when given a handler, POST
// /reload. Only on loopback or a unix socket:
// it holds no value, but it is not for the network. One thread of its own; every connection has a
// 5 s deadline, an 8 KiB request limit and one request; at most 16 at once (more are closed).
#include <functional>
#include <memory>
#include <string>

namespace airlock::gateway {

struct AdminResult {
  bool ok = false;
  std::string message;  // the response body (one line); never a value
};

struct AdminHandlers {
  std::function<std::string()> metrics;  // the /metrics body; called on the admin thread
  std::function<bool()> ready;           // /readyz
  // POST /reload (absent: 404): 200 with the message when ok, else 422. On the admin thread.
  std::function<AdminResult()> reload;
};

class AdminServer {
 public:
  // `address`: "127.0.0.1:PORT", "[::1]:PORT" (port 0: any) or "unix:/path" (created mode 0660,
  // a stale socket there replaced, removed at stop). Throws ConfigError for anything else or
  // when it cannot bind.
  AdminServer(const std::string& address, AdminHandlers handlers);
  ~AdminServer();  // stops and joins the thread
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  std::string endpoint() const;  // what it is bound to: "127.0.0.1:15020" or "unix:/path"

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::gateway
