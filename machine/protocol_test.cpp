#include "machine/protocol.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace airlock::machine {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string error_of(std::string_view line) {
  try {
    parse_request(line);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(MachineProtocol, RunRequestRoundTrips) {
  RunRequest r;
  r.id = 7;
  r.argv = {"sh", "-c", "echo hi"};
  r.env = {{"A", "1"}};
  r.workdir = "/tmp";
  r.stdin_bytes = std::string("in\0put", 6);
  r.timeout_ms = 1500;
  const std::string line = encode_request(r);
  EXPECT_EQ(line.back(), '\n');
  const RunRequest back = std::get<RunRequest>(parse_request(line));
  EXPECT_EQ(back.id, 7u);
  EXPECT_EQ(back.argv, r.argv);
  EXPECT_EQ(back.env, r.env);
  EXPECT_EQ(back.workdir, "/tmp");
  EXPECT_EQ(back.stdin_bytes, r.stdin_bytes);
  EXPECT_EQ(back.timeout_ms, 1500u);
  EXPECT_TRUE(std::holds_alternative<StopRequest>(parse_request(R"({"type":"stop"})")));
  EXPECT_EQ(std::get<CancelRequest>(parse_request(encode_request(CancelRequest{9}))).id, 9u);
  EXPECT_EQ(encode_kill_frame(), std::string("K\0\0\0\0", 5));
}

TEST(MachineProtocol, BadRequestsAreErrors) {
  EXPECT_THAT(error_of("nope"), HasSubstr("not a JSON object"));
  EXPECT_THAT(error_of(R"({"type":"dance"})"), HasSubstr("unknown type"));
  EXPECT_THAT(error_of(R"({"type":"run","argv":["x"]})"), HasSubstr("id"));
  EXPECT_THAT(error_of(R"({"type":"run","id":1,"argv":[]})"), HasSubstr("argv"));
  EXPECT_THAT(error_of(R"({"type":"run","id":1,"argv":[""]})"), HasSubstr("argv[0]"));
  EXPECT_THAT(error_of(R"({"type":"run","id":1,"argv":["x"],"stdin":"!!"})"), HasSubstr("base64"));
  EXPECT_THAT(error_of(R"({"type":"run","id":1,"argv":["x"],"workdir":"rel"})"), HasSubstr("absolute"));
  EXPECT_THAT(error_of(R"({"type":"run","id":1,"argv":["x"],"env":{"A=B":"1"}})"), HasSubstr("'='"));
}

TEST(MachineProtocol, ARequestCarryingAValueIntoTheSandboxIsRefused) {
  std::vector<SecretBinding> secrets;
  secrets.push_back(SecretBuilder().env("API_KEY").value("sk-fake-proto-1234").allow_host("a.test").build());
  RunRequest ok;
  ok.argv = {"sh", "-c", "echo $API_KEY"};
  EXPECT_NO_THROW(check_run_request(ok, secrets));
  auto refused = [&](RunRequest r) {
    try {
      check_run_request(r, secrets);
    } catch (const ConfigError& e) {
      EXPECT_THAT(e.what(), Not(HasSubstr("sk-fake-proto-1234")));
      return std::string(e.what());
    }
    return std::string();
  };
  RunRequest in_argv = ok;
  in_argv.argv.push_back("Bearer sk-fake-proto-1234");
  EXPECT_THAT(refused(in_argv), HasSubstr("value of secret \"API_KEY\""));
  RunRequest in_env = ok;
  in_env.env = {{"OTHER", "xsk-fake-proto-1234x"}};
  EXPECT_THAT(refused(in_env), HasSubstr("value of secret"));
  RunRequest in_stdin = ok;
  in_stdin.stdin_bytes = "token=sk-fake-proto-1234\n";
  EXPECT_THAT(refused(in_stdin), HasSubstr("value of secret"));
  RunRequest in_cwd = ok;
  in_cwd.workdir = "/sk-fake-proto-1234";
  EXPECT_THAT(refused(in_cwd), HasSubstr("value of secret"));
  RunRequest sets_var = ok;
  sets_var.env = {{"API_KEY", "x"}};
  EXPECT_THAT(refused(sets_var), HasSubstr("variable"));
}

TEST(MachineProtocol, EventsRoundTrip) {
  ExitedEvent x;
  x.id = 3;
  x.code = 42;
  x.stdout_bytes = std::string("\xff\x00out", 5);
  x.stderr_bytes = "err";
  x.stdout_truncated = true;
  const std::string line = encode_event(x);
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // one line
  const ExitedEvent back = std::get<ExitedEvent>(parse_event(line));
  EXPECT_EQ(back.code, 42);
  EXPECT_EQ(back.stdout_bytes, x.stdout_bytes);
  EXPECT_TRUE(back.stdout_truncated);
  EXPECT_FALSE(back.stderr_truncated);

  const auto started = std::get<StartedEvent>(parse_event(encode_event(StartedEvent{"sb1", {{"K", "$MSB_K"}}})));
  EXPECT_EQ(started.placeholders.at(0).second, "$MSB_K");
  const auto v = std::get<ViolationEvent>(parse_event(encode_event(ViolationEvent{R"({"secret":"K"})"})));
  EXPECT_THAT(v.record, HasSubstr("\"secret\":\"K\""));
  const auto e = std::get<ErrorEvent>(parse_event(encode_event(ErrorEvent{5, "bad \xff path\nnext"})));
  EXPECT_EQ(e.id, 5u);
  EXPECT_THAT(e.message, HasSubstr("next"));
  const auto s = std::get<StoppedEvent>(parse_event(encode_event(StoppedEvent{125, "terminated"})));
  EXPECT_EQ(s.code, 125);
}

TEST(MachineProtocol, Base64IsStrict) {
  for (const std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  }
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_FALSE(base64_decode("Zm9"));
  EXPECT_FALSE(base64_decode("Zm=v"));
  EXPECT_FALSE(base64_decode("Zh=="));  // non-zero dropped bits
  EXPECT_FALSE(base64_decode("Zm9v!A=="));
}

TEST(MachineProtocol, RunFrameLayout) {
  RunRequest r;
  r.argv = {"echo", "a b"};
  r.env = {{"K", "V"}};
  r.stdin_bytes = "IN";
  const std::string f = encode_run_frame(r);
  ASSERT_GE(f.size(), kFrameHeaderBytes);
  EXPECT_EQ(f[0], 'R');
  const std::string payload = f.substr(kFrameHeaderBytes);
  EXPECT_EQ(static_cast<std::size_t>(static_cast<std::uint8_t>(f[1])), payload.size());
  EXPECT_EQ(payload, std::string("2\0" "1\0" "0\0" "\0" "echo\0" "a b\0" "K=V\0" "IN", 22));
}

TEST(MachineProtocol, AgentFramesAreReassembledAndBounded) {
  AgentFrameReader reader;
  const std::string frames = std::string("O\x03\0\0\0abc", 8) + std::string("X\x04\0\0\0" "42\0" "0", 9);
  for (char c : frames) reader.feed(std::string_view(&c, 1));  // byte by byte
  auto out = reader.next();
  ASSERT_TRUE(out);
  EXPECT_EQ(out->type, 'O');
  EXPECT_EQ(out->payload, "abc");
  auto exit = reader.next();
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->type, 'X');
  // The exit payload is "42\0" then "0"... without its final NUL: malformed.
  EXPECT_FALSE(parse_exit_payload(exit->payload));
  EXPECT_EQ(parse_exit_payload(std::string("42\0" "1\0", 5))->code, 42);
  EXPECT_TRUE(parse_exit_payload(std::string("42\0" "1\0", 5))->timed_out);
  EXPECT_FALSE(parse_exit_payload(std::string("256\0" "0\0", 6)));
  EXPECT_FALSE(parse_exit_payload(std::string("-1\0" "0\0", 5)));
  EXPECT_FALSE(reader.next());
  EXPECT_TRUE(reader.error().empty());

  AgentFrameReader big;
  big.feed(std::string("O\xff\xff\xff\x7f", 5));
  EXPECT_FALSE(big.next());
  EXPECT_THAT(big.error(), HasSubstr("over"));
  AgentFrameReader unknown;
  unknown.feed(std::string("Z\0\0\0\0", 5));
  EXPECT_FALSE(unknown.next());
  EXPECT_THAT(unknown.error(), HasSubstr("unknown"));
}

}  // namespace
}  // namespace airlock::machine
