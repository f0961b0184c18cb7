// Table-driven tests of the incremental request parser. Every case is fed whole, one byte at a
// time, at every two-piece split (small inputs) and at a few random splits, and must give the same
// events, the same error, and the same number of bytes consumed each time.
#include "http/request_parser.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace airlock::http {
namespace {

using namespace std::string_literals;

std::string kind_name(FramingKind k) {
  switch (k) {
    case FramingKind::kEmptyLine: return "empty_line";
    case FramingKind::kChunkHeader: return "chunk_header";
    case FramingKind::kChunkEnd: return "chunk_end";
    case FramingKind::kLastChunk: return "last_chunk";
  }
  return "?";
}

// Everything a head says besides its bytes: the spans, framing and flags, as one string (the
// fast paths for whole lines and the byte machine must give the same).
std::string shape(const RequestHead& h) {
  auto span = [](Span s) { return std::to_string(s.offset) + "+" + std::to_string(s.length); };
  std::string out = span(h.method) + " " + span(h.target) + " " + span(h.version) + " 1." +
                    std::to_string(h.minor_version) + " f" + std::to_string(static_cast<int>(h.framing)) + " cl" +
                    std::to_string(h.content_length) + (h.expect_continue ? " expect" : "") +
                    (h.upgrade ? " upgrade" : "");
  for (const HeaderField& f : h.fields) out += " [" + span(f.line) + " " + span(f.name) + " " + span(f.value) + "]";
  return out;
}

// Records events as strings; consecutive body pieces are joined (their split depends on the feed).
struct Recorder : RequestSink {
  std::vector<std::string> events;
  std::vector<std::string> shapes;  // shape() of each head
  std::vector<RequestHead> heads;
  std::string bytes;  // every byte handed to the sink, in call order
  bool move_heads = false;

  void on_head(RequestHead& head) override {
    events.push_back("head:" + head.raw);
    shapes.push_back(shape(head));
    bytes += head.raw;
    heads.push_back(move_heads ? std::move(head) : head);
  }
  void on_body(std::string_view data) override {
    EXPECT_FALSE(data.empty());
    if (!events.empty() && events.back().rfind("body:", 0) == 0) {
      events.back() += data;
    } else {
      events.push_back("body:" + std::string(data));
    }
    bytes += data;
  }
  void on_framing(FramingKind kind, std::string_view raw) override {
    events.push_back("framing:" + kind_name(kind) + ":" + std::string(raw));
    bytes += raw;
  }
  void on_message_end() override { events.push_back("end"); }
};

std::string H(std::string raw) { return "head:" + raw; }
std::string B(std::string data) { return "body:" + data; }
std::string F(std::string kind, std::string raw) { return "framing:" + kind + ":" + raw; }
const std::string E = "end";

struct Case {
  std::string name;
  std::string ok;    // the bytes consumed
  std::string rest;  // not consumed: the error byte onward, or the opaque stream after an upgrade
  std::vector<std::string> events;
  ParseError error = ParseError::kNone;
  bool upgraded = false;
  bool complete = true;  // ends at a message boundary (when error is none)
  Limits limits = {};
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

struct Outcome {
  std::vector<std::string> events;
  std::vector<std::string> shapes;
  std::string bytes;
  ParseError error = ParseError::kNone;
  std::size_t consumed = 0;
  bool upgraded = false;
  bool boundary = false;
};

// Feeds `input` in pieces of the given sizes (the last piece takes the rest), stopping when the
// parser consumes less than it was given.
Outcome feed(const Case& c, const std::vector<std::size_t>& sizes) {
  const std::string input = c.ok + c.rest;
  RequestParser parser(c.limits);
  Recorder rec;
  Outcome out;
  std::size_t off = 0;
  for (std::size_t k = 0; off < input.size(); ++k) {
    const std::size_t len = k < sizes.size() ? std::min(sizes[k], input.size() - off) : input.size() - off;
    const std::size_t n = parser.parse(std::string_view(input).substr(off, len), rec);
    EXPECT_LE(n, len);
    out.consumed += n;
    off += len;
    if (n < len) {
      // Nothing more is consumed once the parser stopped.
      EXPECT_EQ(parser.parse(std::string_view(input).substr(out.consumed), rec), 0u);
      break;
    }
  }
  out.events = std::move(rec.events);
  out.shapes = std::move(rec.shapes);
  out.bytes = std::move(rec.bytes);
  out.error = parser.error();
  out.upgraded = parser.awaiting_upgrade();  // an upgrade request ended: the rest waits for its answer
  EXPECT_FALSE(parser.upgraded());           // only resolve_upgrade(true) makes the stream opaque
  out.boundary = parser.at_message_boundary();
  return out;
}

std::vector<std::vector<std::size_t>> splits_for(std::size_t size, std::size_t seed) {
  std::vector<std::vector<std::size_t>> splits;
  splits.push_back({size});                               // whole
  splits.push_back(std::vector<std::size_t>(size, 1));    // byte at a time
  if (size <= 2048) {
    for (std::size_t cut = 1; cut < size; ++cut) splits.push_back({cut, size - cut});
  }
  std::mt19937_64 rng(seed);
  for (int r = 0; r < 4; ++r) {
    std::vector<std::size_t> pieces;
    std::size_t left = size;
    while (left > 0) {
      const std::size_t n = std::min<std::size_t>(left, 1 + rng() % std::max<std::size_t>(1, size / 3));
      pieces.push_back(n);
      left -= n;
    }
    splits.push_back(pieces);
  }
  return splits;
}

class ParserCase : public ::testing::TestWithParam<Case> {};

TEST_P(ParserCase, SameEventsAtEverySplit) {
  const Case& c = GetParam();
  const std::string input = c.ok + c.rest;
  const auto splits = splits_for(input.size(), std::hash<std::string>{}(c.name));
  const Outcome byte_at_a_time = feed(c, splits[1]);  // never a whole line: the byte machine alone
  for (std::size_t s = 0; s < splits.size(); ++s) {
    SCOPED_TRACE("split #" + std::to_string(s));
    const Outcome out = feed(c, splits[s]);
    EXPECT_EQ(out.events, c.events);
    EXPECT_EQ(out.shapes, byte_at_a_time.shapes);
    EXPECT_EQ(to_string(out.error), to_string(c.error));
    EXPECT_EQ(out.consumed, c.ok.size());
    EXPECT_EQ(out.upgraded, c.upgraded);
    if (c.error == ParseError::kNone && c.complete) {
      EXPECT_TRUE(out.boundary);
      EXPECT_EQ(out.bytes, c.ok);  // byte-exact: the sink saw exactly the bytes consumed
    } else {
      EXPECT_EQ(c.ok.rfind(out.bytes, 0), 0u) << "sink bytes are not a prefix of the input";
    }
    if (c.error != ParseError::kNone) {
      EXPECT_FALSE(out.boundary);
    }
    if (::testing::Test::HasFailure()) return;  // one failing split is enough output
  }
}

const std::string kGet = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
const std::string kHead = "POST /p HTTP/1.1\r\nHost: a.example\r\n";  // without the empty line

Case ok(std::string name, std::string input, std::vector<std::string> events) {
  return Case{.name = std::move(name), .ok = std::move(input), .rest = "", .events = std::move(events)};
}
Case bad(std::string name, std::string ok, std::string rest, ParseError error,
         std::vector<std::string> events = {}) {
  return Case{.name = std::move(name), .ok = std::move(ok), .rest = std::move(rest), .events = std::move(events),
              .error = error};
}
// A request head ending with fields `fields` (each with CRLF) and then `rest` starting with the bad byte.
Case bad_field(std::string name, std::string fields_ok, std::string rest, ParseError error) {
  return bad(std::move(name), "GET / HTTP/1.1\r\n" + fields_ok, std::move(rest), error);
}

std::vector<Case> cases() {
  std::vector<Case> v;
  const std::string chunked = kHead + "Transfer-Encoding: chunked\r\n\r\n";

  // ---- Well-formed requests ----
  v.push_back(ok("simple_get", kGet, {H(kGet), E}));
  {
    const std::string r = "GET /x?q=1 HTTP/1.0\r\nUser-Agent: t\r\n\r\n";
    v.push_back(ok("http10_without_host", r, {H(r), E}));
  }
  {
    const std::string r = "GET / HTTP/1.1\r\n\r\n";
    v.push_back(ok("http11_without_host_accepted", r, {H(r), E}));
  }
  {
    const std::string h = kHead + "Content-Length: 5\r\n\r\n";
    v.push_back(ok("content_length_body", h + "hello", {H(h), B("hello"), E}));
  }
  {
    const std::string h = kHead + "Content-Length: 0\r\n\r\n";
    v.push_back(ok("content_length_zero", h, {H(h), E}));
  }
  {
    const std::string h = kHead + "Content-Length: 5\r\ncontent-length: 5\r\n\r\n";
    v.push_back(ok("identical_duplicate_content_length", h + "hello", {H(h), B("hello"), E}));
  }
  {
    const std::string h = kHead + "Content-Length: 5, 5\r\n\r\n";
    v.push_back(ok("content_length_identical_list", h + "hello", {H(h), B("hello"), E}));
  }
  {
    const std::string h = kHead + "Content-Length:\t 3 \t\r\n\r\n";
    v.push_back(ok("content_length_with_ows", h + "abc", {H(h), B("abc"), E}));
  }
  v.push_back(ok("chunked_simple", chunked + "5\r\nhello\r\n0\r\n\r\n",
                 {H(chunked), F("chunk_header", "5\r\n"), B("hello"), F("chunk_end", "\r\n"),
                  F("last_chunk", "0\r\n\r\n"), E}));
  {
    const std::string h = kHead + "transfer-encoding: CHUNKED\r\n\r\n";
    v.push_back(ok("chunked_case_insensitive_and_hex", h + "A\r\n0123456789\r\n1a\r\n" + std::string(26, 'z') +
                                                           "\r\n000\r\n\r\n",
                   {H(h), F("chunk_header", "A\r\n"), B("0123456789"), F("chunk_end", "\r\n"),
                    F("chunk_header", "1a\r\n"), B(std::string(26, 'z')), F("chunk_end", "\r\n"),
                    F("last_chunk", "000\r\n\r\n"), E}));
  }
  v.push_back(ok("chunked_extensions", chunked + "5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n",
                 {H(chunked), F("chunk_header", "5;name=value;q=\"a b\"\r\n"), B("hello"), F("chunk_end", "\r\n"),
                  F("last_chunk", "0;last\r\n\r\n"), E}));
  v.push_back(ok("chunked_trailers", chunked + "3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nY:\r\n\r\n",
                 {H(chunked), F("chunk_header", "3\r\n"), B("abc"), F("chunk_end", "\r\n"),
                  F("last_chunk", "0\r\nX-Checksum: 1234\r\nY:\r\n\r\n"), E}));
  v.push_back(ok("chunk_size_leading_zeros", chunked + "0005\r\nhello\r\n0\r\n\r\n",
                 {H(chunked), F("chunk_header", "0005\r\n"), B("hello"), F("chunk_end", "\r\n"),
                  F("last_chunk", "0\r\n\r\n"), E}));
  v.push_back(ok("chunked_empty_body", chunked + "0\r\n\r\n", {H(chunked), F("last_chunk", "0\r\n\r\n"), E}));
  {
    const std::string h2 = kHead + "Content-Length: 2\r\n\r\n";
    v.push_back(ok("keep_alive_two_requests", kGet + h2 + "ok", {H(kGet), E, H(h2), B("ok"), E}));
  }
  {
    const std::string h2 = kHead + "Content-Length: 3\r\n\r\n";
    v.push_back(ok("pipelined_three_requests", kGet + h2 + "abc" + chunked + "1\r\nx\r\n0\r\n\r\n",
                   {H(kGet), E, H(h2), B("abc"), E, H(chunked), F("chunk_header", "1\r\n"), B("x"),
                    F("chunk_end", "\r\n"), F("last_chunk", "0\r\n\r\n"), E}));
  }
  v.push_back(ok("stray_crlf_before_first_request", "\r\n" + kGet, {F("empty_line", "\r\n"), H(kGet), E}));
  v.push_back(ok("stray_crlf_between_requests", kGet + "\r\n" + kGet,
                 {H(kGet), E, F("empty_line", "\r\n"), H(kGet), E}));
  v.push_back(ok("one_stray_crlf_after_each_request", kGet + "\r\n" + kGet + "\r\n" + kGet,
                 {H(kGet), E, F("empty_line", "\r\n"), H(kGet), E, F("empty_line", "\r\n"), H(kGet), E}));
  {
    const std::string h = kHead + "Expect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    v.push_back(ok("expect_100_continue", h + "data", {H(h), B("data"), E}));
  }
  {
    const std::string h =
        "GET /chat HTTP/1.1\r\nHost: a.example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    Case c = ok("websocket_upgrade_rest_unconsumed", h, {H(h), E});
    c.rest = "\x81\x85GET / HTTP/1.1\r\n\r\n";
    c.upgraded = true;
    v.push_back(c);
  }
  {
    const std::string h = "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
    Case c = ok("connect_rest_unconsumed", h, {H(h), E});
    c.rest = "\x16\x03\x01\x02\x00 tls bytes";
    c.upgraded = true;
    v.push_back(c);
  }
  {
    const std::string h = kHead + "Upgrade: h2c\r\nConnection: upgrade\r\nContent-Length: 3\r\n\r\n";
    Case c = ok("upgrade_after_body", h + "abc", {H(h), B("abc"), E});
    c.rest = "PRI * HTTP/2.0\r\n";
    c.upgraded = true;
    v.push_back(c);
  }
  {
    const std::string h = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n";
    v.push_back(ok("upgrade_field_without_connection_token", h + kGet, {H(h), E, H(kGet), E}));
  }
  {
    const std::string h = "GET / HTTP/1.1\r\nConnection: Upgrade\r\n\r\n";
    v.push_back(ok("connection_upgrade_without_upgrade_field", h + kGet, {H(h), E, H(kGet), E}));
  }
  {
    const std::string h = "GET / HTTP/1.1\r\nX-Empty:\r\nX-Spaces:   \r\n\r\n";
    v.push_back(ok("empty_field_values", h, {H(h), E}));
  }
  {
    const std::string h = "GET / HTTP/1.1\r\nX-Bin: caf\xc3\xa9\tv\r\n\r\n";
    v.push_back(ok("value_with_obs_text_and_htab", h, {H(h), E}));
  }
  {
    const std::string h = "GET / HTTP/1.1\r\nhOsT:    a.example   \r\nx-ODD-case:v\r\n\r\n";
    v.push_back(ok("case_and_spacing_preserved", h, {H(h), E}));
  }
  {
    const std::string h = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::string h2 = "GET http://a.example/p?x=%20 HTTP/1.1\r\nHost: a.example\r\n\r\n";
    v.push_back(ok("asterisk_and_absolute_form", h + h2, {H(h), E, H(h2), E}));
  }
  v.push_back(ok("get_without_length_has_no_body", kGet + kGet, {H(kGet), E, H(kGet), E}));
  {
    const std::string h = "POST / HTTP/1.1\r\nHost: a\r\n\r\n";
    v.push_back(ok("post_without_length_has_no_body", h + kGet, {H(h), E, H(kGet), E}));
  }
  {
    const std::string h = kHead + "Content-Length: 9223372036854775807\r\n\r\n";
    Case c = ok("content_length_max_accepted", h + "partial", {H(h), B("partial")});
    c.complete = false;
    v.push_back(c);
  }
  {
    Case c = ok("chunk_size_max_accepted", chunked + "7fffffffffffffff\r\nab",
                {H(chunked), F("chunk_header", "7fffffffffffffff\r\n"), B("ab")});
    c.complete = false;
    v.push_back(c);
  }

  // ---- Limits: exactly at, and one past ----
  {
    const std::string r = "GET /abcd HTTP/1.1\r\n\r\n";  // request line: 20 bytes with CRLF
    Case c = ok("request_line_at_limit", r, {H(r), E});
    c.limits.max_request_line = 20;
    v.push_back(c);
    Case d = bad("request_line_one_past_limit", "GET /abcde HTTP/1.1\r", "\n\r\n", ParseError::kRequestLineTooLong);
    d.limits.max_request_line = 20;
    v.push_back(d);
    Case e = bad("request_line_too_long_fails_early", "GET /" + std::string(15, 'a'),
                 std::string(1000, 'a') + " HTTP/1.1\r\n\r\n", ParseError::kRequestLineTooLong);
    e.limits.max_request_line = 20;
    v.push_back(e);
  }
  {
    const std::string line = "GET /" + std::string(16 * 1024 - 16, 'a') + " HTTP/1.1\r\n";  // 16 KiB
    v.push_back(ok("default_request_line_at_16k", line + "\r\n", {H(line + "\r\n"), E}));
    const std::string longer = "GET /" + std::string(16 * 1024 - 15, 'a') + " HTTP/1.1\r";
    v.push_back(bad("default_request_line_one_past_16k", longer, "\n\r\n", ParseError::kRequestLineTooLong));
  }
  {
    const std::string r = "GET / HTTP/1.1\r\nA: 1234\r\n\r\n";  // 16 + 9 + 2 = 27
    Case c = ok("header_section_at_limit", r, {H(r), E});
    c.limits.max_header_section = 27;
    v.push_back(c);
    Case d = bad("header_section_one_past_limit", "GET / HTTP/1.1\r\nA: 12345\r\n\r", "\n",
                 ParseError::kHeaderSectionTooLarge);
    d.limits.max_header_section = 27;
    v.push_back(d);
  }
  {
    std::string fields;
    while (fields.size() < 64 * 1024 - 16 - 2 - 1000) fields += "X-Filler: " + std::string(988, 'f') + "\r\n";
    const std::size_t used = 16 + fields.size() + 2;
    fields += "X-Last: " + std::string(64 * 1024 - used - 10, 'g') + "\r\n";
    const std::string r = "GET / HTTP/1.1\r\n" + fields + "\r\n";
    v.push_back(ok("default_header_section_at_64k", r, {H(r), E}));
    std::string longer = r;
    longer.insert(16 + 3, "x");  // one more byte in the first field name: 64 KiB + 1
    v.push_back(bad("default_header_section_one_past_64k", longer.substr(0, 64 * 1024), longer.substr(64 * 1024),
                    ParseError::kHeaderSectionTooLarge));
    v.push_back(bad("header_section_fails_at_limit_not_later", "GET / HTTP/1.1\r\nX: " + std::string(64 * 1024 - 19, 'v'),
                    std::string(70000, 'v'), ParseError::kHeaderSectionTooLarge));
  }
  {
    const std::string r = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    Case c = ok("max_headers_at_limit", r, {H(r), E});
    c.limits.max_headers = 2;
    v.push_back(c);
    Case d = bad_field("too_many_headers", "A: 1\r\nB: 2\r\n", "C: 3\r\n\r\n", ParseError::kTooManyHeaders);
    d.limits.max_headers = 2;
    v.push_back(d);
  }
  {
    Case c = ok("trailer_section_at_limit", chunked + "0\r\nT: 12345\r\n\r\n",  // trailers: 10 + 2 bytes
                {H(chunked), F("last_chunk", "0\r\nT: 12345\r\n\r\n"), E});
    c.limits.max_trailer_section = 12;
    v.push_back(c);
    Case d = bad("trailer_section_one_past_limit", chunked + "0\r\nT: 123456\r\n\r", "\n",
                 ParseError::kTrailerSectionTooLarge, {H(chunked)});
    d.limits.max_trailer_section = 12;
    v.push_back(d);
  }
  {
    Case c = ok("chunk_line_at_limit", chunked + "5;abcde\r\nhello\r\n0\r\n\r\n",
                {H(chunked), F("chunk_header", "5;abcde\r\n"), B("hello"), F("chunk_end", "\r\n"),
                 F("last_chunk", "0\r\n\r\n"), E});
    c.limits.max_chunk_line = 9;
    v.push_back(c);
    Case d = bad("chunk_line_one_past_limit", chunked + "5;abcdef\r", "\nhello\r\n0\r\n\r\n",
                 ParseError::kBadChunkSize, {H(chunked)});
    d.limits.max_chunk_line = 9;
    v.push_back(d);
  }

  // ---- Request line ----
  v.push_back(bad("double_space_after_method", "GET ", " / HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("double_space_before_version", "GET / ", " HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("tab_separator", "GET", "\t/ HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("method_not_a_token", "GE", "(T / HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("leading_space", "", " GET / HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("target_with_del", "GET /a", "\x7f HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("target_with_control", "GET /a", "\x01 HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("target_with_obs_text", "GET /a", "\xc3\xa9 HTTP/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("lowercase_version", "GET / ", "http/1.1\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("trailing_space_after_version", "GET / HTTP/1.1", " \r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("version_three_digits", "GET / HTTP/1.1", "0\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("missing_version", "GET /", "\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("method_only", "GET", "\r\n\r\n", ParseError::kBadRequestLine));
  v.push_back(bad("two_stray_crlf", "\r\n", "\r\n" + kGet, ParseError::kBadRequestLine, {F("empty_line", "\r\n")}));
  v.push_back(bad("two_stray_crlf_between_requests", kGet + "\r\n", "\r\n" + kGet, ParseError::kBadRequestLine,
                  {H(kGet), E, F("empty_line", "\r\n")}));
  v.push_back(bad("http2_version", "GET / HTTP/", "2.0\r\n\r\n", ParseError::kUnsupportedVersion));
  v.push_back(bad("http12_version", "GET / HTTP/1.", "2\r\n\r\n", ParseError::kUnsupportedVersion));
  v.push_back(bad("http09_version", "GET / HTTP/", "0.9\r\n\r\n", ParseError::kUnsupportedVersion));
  v.push_back(bad("prism_preface", "PRI * HTTP/", "2.0\r\n\r\nSM\r\n\r\n", ParseError::kUnsupportedVersion));

  // ---- Field names and values ----
  v.push_back(bad_field("space_before_colon", "Host", " : a\r\n\r\n", ParseError::kBadHeaderName));
  v.push_back(bad_field("empty_field_name", "", ": a\r\n\r\n", ParseError::kBadHeaderName));
  v.push_back(bad_field("field_name_not_token", "X", "(y: z\r\n\r\n", ParseError::kBadHeaderName));
  v.push_back(bad_field("field_line_without_colon", "Xyz", "\r\n\r\n", ParseError::kBadHeaderName));
  v.push_back(bad_field("value_with_control_char", "X: a", "\x01" "b\r\n\r\n", ParseError::kBadHeaderValue));
  v.push_back(bad_field("value_with_del", "X: a", "\x7f\r\n\r\n", ParseError::kBadHeaderValue));
  v.push_back(bad_field("value_starting_with_escape", "X: ", "\x1b[0m\r\n\r\n", ParseError::kBadHeaderValue));
  v.push_back(bad_field("obsolete_line_folding", "X: a\r\n", " b\r\n\r\n", ParseError::kObsoleteLineFolding));
  v.push_back(bad_field("obsolete_folding_with_tab", "X: a\r\n", "\tb\r\n\r\n", ParseError::kObsoleteLineFolding));
  v.push_back(bad_field("whitespace_before_first_field", "", " Host: a\r\n\r\n", ParseError::kObsoleteLineFolding));

  // ---- CR, LF, NUL ----
  v.push_back(bad_field("bare_cr_in_value", "X: a\r", "b\r\n\r\n", ParseError::kBareCr));
  v.push_back(bad("bare_cr_after_request_line", "GET / HTTP/1.1\r", "X: a\r\n\r\n", ParseError::kBareCr));
  v.push_back(bad_field("bare_cr_at_head_end", "X: a\r\n\r", "\r\n", ParseError::kBareCr));
  v.push_back(bad("bare_cr_between_messages", "\r", "GET / HTTP/1.1\r\n\r\n", ParseError::kBareCr));
  v.push_back(bad("bare_lf_request_line", "GET / HTTP/1.1", "\nHost: a\r\n\r\n", ParseError::kBareLf));
  v.push_back(bad_field("bare_lf_field_line", "X: a", "\n\r\n", ParseError::kBareLf));
  v.push_back(bad_field("bare_lf_head_end", "X: a\r\n", "\n", ParseError::kBareLf));
  v.push_back(bad("bare_lf_between_messages", kGet, "\n" + kGet, ParseError::kBareLf, {H(kGet), E}));
  v.push_back(bad("bare_lf_in_method", "GE", "\nT / HTTP/1.1\r\n\r\n", ParseError::kBareLf));
  v.push_back(bad_field("nul_in_value", "X: a", "\0b\r\n\r\n"s, ParseError::kNulInHead));
  v.push_back(bad("nul_in_target", "GET /a", "\0 HTTP/1.1\r\n\r\n"s, ParseError::kNulInHead));
  v.push_back(bad("nul_at_message_start", "", "\0GET / HTTP/1.1\r\n\r\n"s, ParseError::kNulInHead));
  v.push_back(bad_field("nul_in_name", "X", "\0: a\r\n\r\n"s, ParseError::kNulInHead));

  // ---- Framing: the smuggling cases ----
  v.push_back(bad(
      "content_length_then_transfer_encoding", kHead + "Content-Length: 5\r\nTransfer-Encoding: chunked\r",
      "\n\r\n5\r\nhello\r\n0\r\n\r\n", ParseError::kContentLengthWithTransferEncoding));
  v.push_back(bad(
      "transfer_encoding_then_content_length", kHead + "Transfer-Encoding: chunked\r\nContent-Length: 5\r",
      "\n\r\nhello", ParseError::kContentLengthWithTransferEncoding));
  v.push_back(bad("differing_content_length_fields", kHead + "Content-Length: 5\r\nContent-Length: 6\r",
                  "\n\r\nhello!", ParseError::kConflictingContentLength));
  v.push_back(bad("differing_content_length_list", kHead + "Content-Length: 5, 6\r", "\n\r\nhello!",
                  ParseError::kConflictingContentLength));
  v.push_back(bad("negative_content_length", kHead + "Content-Length: -5\r", "\n\r\n", ParseError::kBadContentLength));
  v.push_back(bad("plus_content_length", kHead + "Content-Length: +5\r", "\n\r\n", ParseError::kBadContentLength));
  v.push_back(bad("content_length_with_suffix", kHead + "Content-Length: 5a\r", "\n\r\n",
                  ParseError::kBadContentLength));
  v.push_back(bad("empty_content_length", kHead + "Content-Length: \r", "\n\r\n", ParseError::kBadContentLength));
  v.push_back(bad("hex_content_length", kHead + "Content-Length: 0x5\r", "\n\r\n", ParseError::kBadContentLength));
  v.push_back(bad("content_length_overflow", kHead + "Content-Length: 9223372036854775808\r", "\n\r\n",
                  ParseError::kBadContentLength));
  v.push_back(bad("content_length_uint64_overflow", kHead + "Content-Length: 99999999999999999999999\r", "\n\r\n",
                  ParseError::kBadContentLength));
  v.push_back(bad("content_length_empty_list_element", kHead + "Content-Length: 5,,5\r", "\n\r\n",
                  ParseError::kBadContentLength));
  v.push_back(bad("chunked_twice_in_list", kHead + "Transfer-Encoding: chunked, chunked\r", "\n\r\n",
                  ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("gzip_then_chunked", kHead + "Transfer-Encoding: gzip, chunked\r", "\n\r\n",
                  ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("identity_coding", kHead + "Transfer-Encoding: identity\r", "\n\r\n",
                  ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("chunked_not_final", kHead + "Transfer-Encoding: chunked, gzip\r", "\n\r\n",
                  ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("two_transfer_encoding_fields", kHead + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r",
                  "\n\r\n", ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("chunked_with_parameter", kHead + "Transfer-Encoding: chunked;q=1\r", "\n\r\n",
                  ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("chunked_misspelled", kHead + "Transfer-Encoding: chunkedx\r", "\n\r\n",
                  ParseError::kUnsupportedTransferCoding));
  v.push_back(bad("two_host_fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r", "\n\r\n", ParseError::kMultipleHost));
  v.push_back(bad("two_identical_host_fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r", "\n\r\n",
                  ParseError::kMultipleHost));

  // ---- Chunk sizes and terminators ----
  v.push_back(bad("chunk_size_negative", chunked, "-5\r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkSize, {H(chunked)}));
  v.push_back(bad("chunk_size_plus", chunked, "+5\r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkSize, {H(chunked)}));
  v.push_back(bad("chunk_size_leading_space", chunked, " 5\r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkSize,
                  {H(chunked)}));
  v.push_back(bad("chunk_size_trailing_space", chunked + "5", " \r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkSize,
                  {H(chunked)}));
  v.push_back(bad("chunk_size_space_before_ext", chunked + "5", " ;a\r\nhello\r\n0\r\n\r\n",
                  ParseError::kBadChunkSize, {H(chunked)}));
  v.push_back(bad("chunk_size_not_hex", chunked, "g\r\n", ParseError::kBadChunkSize, {H(chunked)}));
  v.push_back(bad("chunk_size_0x_prefix", chunked + "0", "x5\r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkSize,
                  {H(chunked)}));
  v.push_back(bad("chunk_size_empty", chunked, "\r\n", ParseError::kBadChunkSize, {H(chunked)}));
  v.push_back(bad("chunk_size_overflow", chunked + "800000000000000", "0\r\n", ParseError::kBadChunkSize,
                  {H(chunked)}));
  v.push_back(bad("chunk_size_bare_lf", chunked + "5", "\nhello\r\n0\r\n\r\n", ParseError::kBadChunkSize,
                  {H(chunked)}));
  v.push_back(bad("chunk_size_bare_cr", chunked + "5\r", "hello\r\n0\r\n\r\n", ParseError::kBadChunkSize,
                  {H(chunked)}));
  v.push_back(bad("chunk_ext_control_char", chunked + "5;a", "\x01\r\nhello\r\n0\r\n\r\n",
                  ParseError::kBadChunkSize, {H(chunked)}));
  v.push_back(bad("chunk_data_too_long", chunked + "5\r\nhello", "!\r\n0\r\n\r\n", ParseError::kBadChunkTerminator,
                  {H(chunked), F("chunk_header", "5\r\n"), B("hello")}));
  v.push_back(bad("chunk_data_cr_without_lf", chunked + "5\r\nhello\r", "x0\r\n\r\n",
                  ParseError::kBadChunkTerminator, {H(chunked), F("chunk_header", "5\r\n"), B("hello")}));
  v.push_back(bad("chunk_data_bare_lf", chunked + "5\r\nhello", "\n0\r\n\r\n", ParseError::kBadChunkTerminator,
                  {H(chunked), F("chunk_header", "5\r\n"), B("hello")}));

  // ---- Trailers ----
  v.push_back(bad("trailer_obs_fold", chunked + "0\r\nT: a\r\n", " b\r\n\r\n", ParseError::kBadTrailer, {H(chunked)}));
  v.push_back(bad("trailer_bare_lf", chunked + "0\r\nT: a", "\n\r\n", ParseError::kBadTrailer, {H(chunked)}));
  v.push_back(bad("trailer_without_colon", chunked + "0\r\nT", "\r\n\r\n", ParseError::kBadTrailer, {H(chunked)}));
  v.push_back(bad("trailer_space_before_colon", chunked + "0\r\nT", " : a\r\n\r\n", ParseError::kBadTrailer,
                  {H(chunked)}));
  v.push_back(bad("trailer_control_char", chunked + "0\r\nT: a", "\x7f\r\n\r\n", ParseError::kBadTrailer,
                  {H(chunked)}));
  v.push_back(bad("trailer_end_bare_cr", chunked + "0\r\n\r", "x", ParseError::kBadTrailer, {H(chunked)}));

  // ---- RFC 9112 review (issue 12 item 5), one case per "MUST treat as error / reject" ----
  // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing, Content-Length or not.
  v.push_back(bad("http10_transfer_encoding", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r",
                  "\n\r\n0\r\n\r\n", ParseError::kTransferEncodingInHttp10));
  v.push_back(bad("http10_transfer_encoding_with_content_length",
                  "POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r", "\n\r\nhello",
                  ParseError::kTransferEncodingInHttp10));
  v.push_back(bad("http10_transfer_encoding_gzip", "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r", "\n\r\n",
                  ParseError::kTransferEncodingInHttp10));
  {
    const std::string h = "POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\n";
    v.push_back(ok("http10_content_length_ok", h + "ok", {H(h), B("ok"), E}));
  }
  // §3.2 / RFC 9110 §7.2: Host = uri-host [":" port].
  v.push_back(bad("host_with_space", "GET / HTTP/1.1\r\nHost: a b\r", "\n\r\n", ParseError::kBadHost));
  v.push_back(bad("host_with_userinfo", "GET / HTTP/1.1\r\nHost: u@a.example\r", "\n\r\n", ParseError::kBadHost));
  v.push_back(bad("host_with_path", "GET / HTTP/1.1\r\nHost: a.example/x\r", "\n\r\n", ParseError::kBadHost));
  v.push_back(bad("host_port_not_digits", "GET / HTTP/1.1\r\nHost: a.example:44x\r", "\n\r\n", ParseError::kBadHost));
  v.push_back(bad("host_two_authorities", "GET / HTTP/1.1\r\nHost: a.example, b.example\r", "\n\r\n",
                  ParseError::kBadHost));
  v.push_back(bad("host_unclosed_ip_literal", "GET / HTTP/1.1\r\nHost: [2001:db8::1\r", "\n\r\n", ParseError::kBadHost));
  v.push_back(bad("host_ip_literal_junk_after", "GET / HTTP/1.1\r\nHost: [2001:db8::1]x\r", "\n\r\n",
                  ParseError::kBadHost));
  v.push_back(bad("host_bad_percent", "GET / HTTP/1.1\r\nHost: a%zz\r", "\n\r\n", ParseError::kBadHost));
  v.push_back(bad("host_duplicate_in_http10", "GET / HTTP/1.0\r\nHost: a\r\nHost: a\r", "\n\r\n",
                  ParseError::kMultipleHost));
  {
    const std::string h =
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\nGET / HTTP/1.1\r\nHost: a.example:\r\n\r\n"
        "GET / HTTP/1.1\r\nHost:\r\n\r\nGET / HTTP/1.1\r\nHost: xn--bcher-kva.example%2e\r\n\r\n";
    v.push_back(ok("host_forms_accepted", h,
                   {H("GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n"), E,
                    H("GET / HTTP/1.1\r\nHost: a.example:\r\n\r\n"), E, H("GET / HTTP/1.1\r\nHost:\r\n\r\n"), E,
                    H("GET / HTTP/1.1\r\nHost: xn--bcher-kva.example%2e\r\n\r\n"), E}));
  }
  // §3.2: the target form must fit the method.
  v.push_back(bad("asterisk_form_not_options", "GET * HTTP/1.1\r\nHost: a\r\n\r", "\n", ParseError::kBadRequestTarget));
  // ("GET a.example:443" parses as an absolute-URI with scheme "a.example": RFC 3986 allows it.)
  v.push_back(bad("bare_host_target_not_connect", "GET a.example HTTP/1.1\r\nHost: a\r\n\r", "\n",
                  ParseError::kBadRequestTarget));
  v.push_back(bad("connect_origin_form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r", "\n", ParseError::kBadRequestTarget));
  v.push_back(bad("connect_absolute_form", "CONNECT http://a.example/ HTTP/1.1\r\nHost: a\r\n\r", "\n",
                  ParseError::kBadRequestTarget));
  v.push_back(bad("target_relative_path", "GET a/b HTTP/1.1\r\nHost: a\r\n\r", "\n", ParseError::kBadRequestTarget));
  v.push_back(bad("target_scheme_starts_with_digit", "GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r", "\n",
                  ParseError::kBadRequestTarget));
  {
    const std::string h = "GET urn:example:x HTTP/1.1\r\nHost: a\r\n\r\n";
    v.push_back(ok("absolute_form_any_scheme", h, {H(h), E}));
  }
  // §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ).
  v.push_back(bad("chunk_ext_empty_name", chunked + "5;", "\r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkExtension,
                  {H(chunked)}));
  v.push_back(bad("chunk_ext_name_not_token", chunked + "5;a(b", "\r\nhello\r\n0\r\n\r\n",
                  ParseError::kBadChunkExtension, {H(chunked)}));
  v.push_back(bad("chunk_ext_empty_value", chunked + "5;a=", "\r\nhello\r\n0\r\n\r\n", ParseError::kBadChunkExtension,
                  {H(chunked)}));
  v.push_back(bad("chunk_ext_unterminated_quote", chunked + "5;a=\"x", "\r\nhello\r\n0\r\n\r\n",
                  ParseError::kBadChunkExtension, {H(chunked)}));
  v.push_back(bad("chunk_ext_junk_after_quote", chunked + "5;a=\"x\"y", "\r\nhello\r\n0\r\n\r\n",
                  ParseError::kBadChunkExtension, {H(chunked)}));
  v.push_back(bad("chunk_ext_on_last_chunk", chunked + "0;=", "\r\n\r\n", ParseError::kBadChunkExtension, {H(chunked)}));
  v.push_back(ok("chunk_ext_bws_and_quoted_pair", chunked + "5; a = b ;c=\"q\\\"x\"\r\nhello\r\n0\r\n\r\n",
                 {H(chunked), F("chunk_header", "5; a = b ;c=\"q\\\"x\"\r\n"), B("hello"), F("chunk_end", "\r\n"),
                  F("last_chunk", "0\r\n\r\n"), E}));
  // RFC 9110 §6.5.1: framing, routing and control fields are not allowed as trailers (a
  // recipient that merges trailers into the head would see a second framing or Host).
  for (const char* name : {"Content-Length", "transfer-encoding", "Host", "Trailer", "TE", "Connection", "Upgrade",
                           "Content-Encoding", "Authorization", "Proxy-Authorization"}) {
    v.push_back(bad(std::string("trailer_forbidden_") + name, chunked + "0\r\n" + name, ": x\r\n\r\n",
                    ParseError::kForbiddenTrailer, {H(chunked)}));
    for (char& ch : v.back().name) ch = ch == '-' ? '_' : ch;
  }

  // ---- Errors after good requests ----
  v.push_back(bad("pipelined_error_after_good_request", kGet + "GET / HTTP/1.1\r\nX", " : y\r\n\r\n",
                  ParseError::kBadHeaderName, {H(kGet), E}));
  {
    const std::string h = kHead + "Content-Length: 3\r\n\r\n";
    v.push_back(bad("smuggled_request_in_body_is_body", h + "abc" + kGet + "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r",
                    "\n\r\nx", ParseError::kContentLengthWithTransferEncoding, {H(h), B("abc"), E, H(kGet), E}));
  }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Table, ParserCase, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(ParserTable, CoversEveryParseError) {
  std::set<ParseError> seen;
  for (const Case& c : cases()) seen.insert(c.error);
  for (int e = 0; e <= static_cast<int>(kLastParseError); ++e) {
    EXPECT_TRUE(seen.count(static_cast<ParseError>(e))) << to_string(static_cast<ParseError>(e));
  }
  EXPECT_GE(cases().size(), 60u);
}

TEST(ParseErrorNames, StableSnakeCaseAndDistinct) {
  std::set<std::string_view> names;
  for (int e = 0; e <= static_cast<int>(kLastParseError); ++e) {
    const std::string_view name = to_string(static_cast<ParseError>(e));
    EXPECT_TRUE(names.insert(name).second) << name;
    for (char ch : name) EXPECT_TRUE((ch >= 'a' && ch <= 'z') || ch == '_' || (ch >= '0' && ch <= '9')) << name;
  }
  EXPECT_EQ(to_string(ParseError::kNone), "none");
  EXPECT_EQ(to_string(ParseError::kContentLengthWithTransferEncoding), "content_length_with_transfer_encoding");
  EXPECT_EQ(to_string(ParseError::kBareCr), "bare_cr");
  EXPECT_EQ(to_string(ParseError::kMultipleHost), "multiple_host");
}

RequestHead parse_one(const std::string& input) {
  RequestParser parser;
  Recorder rec;
  EXPECT_EQ(parser.parse(input, rec), input.size());
  EXPECT_EQ(parser.error(), ParseError::kNone);
  EXPECT_EQ(rec.heads.size(), 1u);
  return rec.heads.empty() ? RequestHead{} : rec.heads.front();
}

TEST(RequestHeadTest, SpansAndValues) {
  const RequestHead h = parse_one(
      "PUT /a/b?c HTTP/1.0\r\nHost: a.example\r\nAccept:  text/html \r\nX-Empty:\r\naccept:\t*/*\r\n\r\n");
  EXPECT_EQ(h.view(h.method), "PUT");
  EXPECT_EQ(h.view(h.target), "/a/b?c");
  EXPECT_EQ(h.view(h.version), "HTTP/1.0");
  ASSERT_EQ(h.fields.size(), 4u);
  EXPECT_EQ(h.view(h.fields[1].line), "Accept:  text/html \r\n");
  EXPECT_EQ(h.view(h.fields[1].name), "Accept");
  EXPECT_EQ(h.view(h.fields[1].value), "text/html");
  EXPECT_EQ(h.view(h.fields[2].value), "");
  EXPECT_EQ(h.view(h.fields[3].line), "accept:\t*/*\r\n");
  EXPECT_EQ(h.values("ACCEPT"), (std::vector<std::string_view>{"text/html", "*/*"}));
  EXPECT_EQ(h.values("host"), (std::vector<std::string_view>{"a.example"}));
  EXPECT_TRUE(h.values("cookie").empty());
  EXPECT_EQ(h.framing, BodyFraming::kNone);
  EXPECT_FALSE(h.expect_continue);
  EXPECT_FALSE(h.upgrade);
}

TEST(RequestHeadTest, ValueSpansWhenFedByteAtATime) {
  const std::string input = "GET / HTTP/1.1\r\nX-A: \t one two \t\r\nX-B:z\r\n\r\n";
  RequestParser parser;
  Recorder rec;
  for (char ch : input) ASSERT_EQ(parser.parse(std::string_view(&ch, 1), rec), 1u);
  ASSERT_EQ(rec.heads.size(), 1u);
  const RequestHead& h = rec.heads[0];
  ASSERT_EQ(h.fields.size(), 2u);
  EXPECT_EQ(h.view(h.fields[0].value), "one two");
  EXPECT_EQ(h.view(h.fields[1].value), "z");
  EXPECT_EQ(h.raw, input);
}

TEST(RequestHeadTest, FramingFlags) {
  RequestHead h = parse_one("POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\nabc");
  EXPECT_EQ(h.framing, BodyFraming::kContentLength);
  EXPECT_EQ(h.content_length, 3u);
  EXPECT_TRUE(h.expect_continue);
  h = parse_one("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 200-ok\r\n\r\n0\r\n\r\n");
  EXPECT_EQ(h.framing, BodyFraming::kChunked);
  EXPECT_FALSE(h.expect_continue);
  h = parse_one("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: UPGRADE\r\n\r\n");
  EXPECT_TRUE(h.upgrade);
  h = parse_one("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade-insecure\r\n\r\n");
  EXPECT_FALSE(h.upgrade);
  h = parse_one("CONNECT a.example:443 HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(h.upgrade);
  h = parse_one("connect a.example:443 HTTP/1.1\r\n\r\n");  // methods are case-sensitive
  EXPECT_FALSE(h.upgrade);
  EXPECT_FALSE(h.close);
  h = parse_one("GET / HTTP/1.1\r\nConnection: keep-alive, CLOSE\r\n\r\n");
  EXPECT_TRUE(h.close);
  h = parse_one("GET / HTTP/1.1\r\nConnection: closed\r\n\r\n");
  EXPECT_FALSE(h.close);
}

// Issue 12 item 4: an upgrade request makes nothing opaque by itself; the answer decides.
TEST(RequestParserTest, UpgradeWaitsForTheAnswerThenTurnsOpaque) {
  const std::string head = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  RequestParser parser;
  Recorder rec;
  EXPECT_FALSE(parser.upgraded());
  EXPECT_EQ(parser.parse(head + "opaque", rec), head.size());
  EXPECT_TRUE(parser.awaiting_upgrade());
  EXPECT_FALSE(parser.upgraded());
  EXPECT_TRUE(parser.at_message_boundary());
  EXPECT_EQ(parser.parse("more", rec), 0u);
  parser.resolve_upgrade(true);  // 101 Switching Protocols
  EXPECT_TRUE(parser.upgraded());
  EXPECT_FALSE(parser.awaiting_upgrade());
  EXPECT_EQ(parser.parse("more", rec), 0u);
  EXPECT_EQ(parser.error(), ParseError::kNone);
  EXPECT_EQ(rec.events, (std::vector<std::string>{H(head), E}));
}

TEST(RequestParserTest, RefusedUpgradeGoesOnParsingRequests) {
  const std::string head = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
  RequestParser parser;
  Recorder rec;
  EXPECT_EQ(parser.parse(head + kGet, rec), head.size());
  EXPECT_TRUE(parser.awaiting_upgrade());
  parser.resolve_upgrade(false);  // any other final response
  EXPECT_FALSE(parser.upgraded());
  EXPECT_FALSE(parser.awaiting_upgrade());
  EXPECT_EQ(parser.parse(kGet + kGet, rec), 2 * kGet.size());
  EXPECT_EQ(rec.events, (std::vector<std::string>{H(head), E, H(kGet), E, H(kGet), E}));
  parser.resolve_upgrade(true);  // no upgrade pending: ignored
  EXPECT_FALSE(parser.upgraded());
}

TEST(RequestParserTest, ErrorIsSticky) {
  RequestParser parser;
  Recorder rec;
  EXPECT_EQ(parser.parse("GET / HTTP/1.1\r\nX : y\r\n", rec), 17u);
  EXPECT_EQ(parser.error(), ParseError::kBadHeaderName);
  EXPECT_EQ(parser.parse(kGet, rec), 0u);
  EXPECT_EQ(parser.error(), ParseError::kBadHeaderName);
  EXPECT_FALSE(parser.at_message_boundary());
  EXPECT_TRUE(rec.events.empty());
}

TEST(RequestParserTest, MessageBoundaryTracksPartialMessages) {
  RequestParser parser;
  Recorder rec;
  EXPECT_TRUE(parser.at_message_boundary());
  parser.parse("GET / HT", rec);
  EXPECT_FALSE(parser.at_message_boundary());
  parser.parse("TP/1.1\r\nContent-Length: 2\r\n\r\na", rec);
  EXPECT_FALSE(parser.at_message_boundary());
  parser.parse("b", rec);
  EXPECT_TRUE(parser.at_message_boundary());
  parser.parse("\r", rec);
  EXPECT_FALSE(parser.at_message_boundary());
  parser.parse("\n", rec);
  EXPECT_TRUE(parser.at_message_boundary());
}

TEST(RequestParserTest, SinkMayMoveTheHead) {
  RequestParser parser;
  Recorder rec;
  rec.move_heads = true;
  const std::string second = "POST /2 HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\n\r\n";
  const std::string input = kGet + second + "x" + kGet;
  EXPECT_EQ(parser.parse(input, rec), input.size());
  ASSERT_EQ(rec.heads.size(), 3u);
  EXPECT_EQ(rec.heads[1].raw, second);
  EXPECT_EQ(rec.heads[1].view(rec.heads[1].target), "/2");
  EXPECT_EQ(rec.heads[1].values("host"), (std::vector<std::string_view>{"b"}));
  EXPECT_EQ(rec.heads[2].raw, kGet);
  EXPECT_EQ(rec.heads[2].fields.size(), 1u);
}

TEST(RequestParserTest, HugeHeaderStreamStopsAtTheLimit) {
  // Megabytes of field value, fed in 4 KiB pieces: the parser fails at the limit byte and stops.
  RequestParser parser;
  Recorder rec;
  std::string input = "GET / HTTP/1.1\r\nX: ";
  input += std::string(1 << 20, 'v');
  std::size_t consumed = 0;
  for (std::size_t off = 0; off < input.size(); off += 4096) {
    const std::string_view piece = std::string_view(input).substr(off, 4096);
    const std::size_t n = parser.parse(piece, rec);
    consumed += n;
    if (n < piece.size()) break;
  }
  EXPECT_EQ(parser.error(), ParseError::kHeaderSectionTooLarge);
  EXPECT_EQ(consumed, 64u * 1024);
  EXPECT_TRUE(rec.events.empty());
}

TEST(RequestParserTest, LargeBodyStreamsWithoutBuffering) {
  RequestParser parser;
  Recorder rec;
  const std::string head = "POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
  EXPECT_EQ(parser.parse(head, rec), head.size());
  const std::string piece(1000, 'b');
  for (int k = 0; k < 100; ++k) ASSERT_EQ(parser.parse(piece, rec), piece.size());
  ASSERT_EQ(rec.events.size(), 3u);
  EXPECT_EQ(rec.events[1].size(), 5u + 100000);
  EXPECT_EQ(rec.events[2], E);
}

// The fast paths for whole lines (taken when a line's LF is in the same input) against the byte
// machine alone (one byte at a time, so no line is ever whole): every byte value at every offset
// of a keep-alive request head like the bench's, and every cut of the head's request-line and
// header-section limits, must give the same events, spans, error and consumed count.
Outcome feed_with(const std::string& input, const Limits& limits, bool byte_at_a_time) {
  Case c{.name = "", .ok = input, .rest = "", .events = {}, .limits = limits};
  return feed(c, byte_at_a_time ? std::vector<std::size_t>(input.size(), 1) : std::vector<std::size_t>{input.size()});
}

void expect_same_as_byte_machine(const std::string& input, const Limits& limits) {
  const Outcome whole = feed_with(input, limits, false);
  const Outcome bytes = feed_with(input, limits, true);
  EXPECT_EQ(whole.events, bytes.events);
  EXPECT_EQ(whole.shapes, bytes.shapes);
  EXPECT_EQ(to_string(whole.error), to_string(bytes.error));
  EXPECT_EQ(whole.consumed, bytes.consumed);
  EXPECT_EQ(whole.upgraded, bytes.upgraded);
  EXPECT_EQ(whole.boundary, bytes.boundary);
}

const std::string kKeepAliveHead =
    "GET /small?q=1 HTTP/1.1\r\nHost: a.example:8443\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n"
    "Authorization: Bearer $MSB_KEY\r\nX-Empty:\r\nX-Ows: \t v \t\r\nContent-Length: 3\r\n"
    "Connection: keep-alive\r\n\r\nabc";

TEST(RequestParserFastPath, EveryByteAtEveryOffsetAsTheByteMachine) {
  for (std::size_t at = 0; at < kKeepAliveHead.size(); ++at) {
    for (int b = 0; b < 256; ++b) {
      std::string input = kKeepAliveHead;
      input[at] = static_cast<char>(b);
      SCOPED_TRACE("byte " + std::to_string(b) + " at " + std::to_string(at));
      expect_same_as_byte_machine(input, {});
      // The same byte inserted rather than replacing one.
      expect_same_as_byte_machine(kKeepAliveHead.substr(0, at) + static_cast<char>(b) + kKeepAliveHead.substr(at), {});
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(RequestParserFastPath, EveryLimitCutAsTheByteMachine) {
  const std::string twice = kKeepAliveHead + kKeepAliveHead;
  for (std::size_t limit = 0; limit <= kKeepAliveHead.size(); ++limit) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    Limits line;
    line.max_request_line = limit;
    expect_same_as_byte_machine(twice, line);
    Limits section;
    section.max_header_section = limit;
    expect_same_as_byte_machine(twice, section);
    Limits fields;
    fields.max_headers = limit % 12;
    expect_same_as_byte_machine(twice, fields);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(RequestParserFastPath, LongValuesAcrossTheSixteenByteBlocks) {
  // A bad byte at every offset of values of 1-70 bytes, so the 16-byte value search meets it in
  // every lane of every block and in the tail.
  for (std::size_t len = 1; len <= 70; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      for (const char bad : {'\0', '\r', '\n', '\x01', '\x1f', '\x7f', '\t', ' ', '\x80', '\xff'}) {
        std::string value(len, 'v');
        value[at] = bad;
        expect_same_as_byte_machine("GET / HTTP/1.1\r\nX: " + value + "\r\nHost: a\r\n\r\n", {});
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

}  // namespace
}  // namespace airlock::http
