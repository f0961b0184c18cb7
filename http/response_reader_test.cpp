// Response framing (issue 12 items 3-5): where each response ends, what switches protocols,
// and the RFC 9112 errors on the response side. Each case is fed whole, a byte at a time and
// at every two-piece split, and must give the same heads and the same verdict.
#include "http/response_reader.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace airlock::http {
namespace {

struct Outcome {
  std::vector<std::string> heads;  // "status[i|s]" per head: interim, switched
  ResponseError error = ResponseError::kNone;
  bool opaque = false;
  ResponseError at_end = ResponseError::kNone;
};

Outcome read(const std::string& in, const std::vector<ResponseExpectation>& requests, const std::vector<std::size_t>& cuts) {
  ResponseReader r;
  for (const auto& e : requests) r.expect(e);
  Outcome out;
  std::size_t pos = 0;
  std::vector<std::size_t> all = cuts;
  all.push_back(in.size());
  for (std::size_t cut : all) {
    std::string_view piece = std::string_view(in).substr(pos, cut - pos);
    pos = cut;
    while (!piece.empty() && !out.opaque && out.error == ResponseError::kNone) {
      std::size_t used = 0;
      const auto ev = r.feed(piece, used);
      piece.remove_prefix(used);
      if (ev == ResponseReader::Event::kHead) {
        out.heads.push_back(std::to_string(r.head().status) + (r.head().interim ? "i" : "") +
                            (r.head().switched ? "s" : ""));
      } else if (ev == ResponseReader::Event::kError) {
        out.error = r.error();
      } else if (ev == ResponseReader::Event::kOpaque) {
        out.opaque = true;
      }
    }
  }
  out.at_end = r.finish();
  return out;
}

struct Case {
  std::string name;
  std::string input;
  std::vector<ResponseExpectation> requests;
  std::vector<std::string> heads;
  ResponseError error = ResponseError::kNone;
  ResponseError at_end = ResponseError::kNone;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const ResponseExpectation kGet{};
const ResponseExpectation kHeadReq{.head = true};
const ResponseExpectation kConnect{.connect = true};
const ResponseExpectation kUpgrade{.upgrade = true};

std::vector<Case> cases() {
  const std::string ok5 = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
  return {
      {"content_length", ok5 + ok5, {kGet, kGet}, {"200", "200"}},
      {"chunked_with_trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n0\r\nT: 1\r\n\r\n" + ok5,
       {kGet, kGet}, {"200", "200"}},
      {"head_has_no_body", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n" + ok5, {kHeadReq, kGet}, {"200", "200"}},
      {"no_content_and_not_modified", "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n" + ok5,
       {kGet, kGet, kGet}, {"204", "304", "200"}},
      {"interim_then_final", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok5, {kGet},
       {"100i", "103i", "200"}},
      {"switch_after_upgrade_offer", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", {kUpgrade},
       {"101s"}},
      {"refused_upgrade_stays_http", "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n" + ok5, {kUpgrade, kGet},
       {"426", "200"}},
      {"connect_2xx_is_a_tunnel", "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01", {kConnect}, {"200s"}},
      {"connect_refused_stays_http", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" + ok5, {kConnect, kGet},
       {"403", "200"}},
      {"until_close", "HTTP/1.0 200 OK\r\n\r\nanything HTTP/1.1 200 OK\r\n\r\n", {kGet, kGet}, {"200"}},
      {"te_not_chunked_until_close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzzz", {kGet}, {"200"}},
      {"bare_lf_line_ends_accepted", "HTTP/1.1 200 OK\nContent-Length: 2\n\nokHTTP/1.1 204 x\n\n", {kGet, kGet}, {"200", "204"}},
      {"stray_crlf_between_responses", ok5 + "\r\n" + ok5, {kGet, kGet}, {"200", "200"}},
      {"identical_content_length_list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", {kGet}, {"200"}},
      // Errors: the response side's "MUST treat as error" cases (RFC 9112 §6.3, §7.1, §2.2).
      {"cl_and_te", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", {kGet}, {},
       ResponseError::kAmbiguousFraming, ResponseError::kAmbiguousFraming},
      {"conflicting_cl", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", {kGet}, {},
       ResponseError::kBadContentLength, ResponseError::kBadContentLength},
      {"bad_cl", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", {kGet}, {}, ResponseError::kBadContentLength,
       ResponseError::kBadContentLength},
      {"bad_chunk_size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", {kGet}, {"200"},
       ResponseError::kBadChunk, ResponseError::kBadChunk},
      {"chunk_data_overrun", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", {kGet}, {"200"},
       ResponseError::kBadChunk, ResponseError::kBadChunk},
      {"bare_cr_in_field", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", {kGet}, {}, ResponseError::kBareCr, ResponseError::kBareCr},
      {"space_before_colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", {kGet}, {}, ResponseError::kBadHeaderField,
       ResponseError::kBadHeaderField},
      {"obs_fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", {kGet}, {}, ResponseError::kBadHeaderField,
       ResponseError::kBadHeaderField},
      {"bad_status_line", "HTTP/2 200\r\n\r\n", {kGet}, {}, ResponseError::kBadStatusLine, ResponseError::kBadStatusLine},
      {"switch_without_offer", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", {kGet}, {},
       ResponseError::kUnrequestedSwitch, ResponseError::kUnrequestedSwitch},
      {"response_without_request", ok5 + ok5, {kGet}, {"200"}, ResponseError::kUnrequestedResponse,
       ResponseError::kUnrequestedResponse},
      // Cut short at the end of the stream.
      {"body_cut_short", "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhello", {kGet}, {"200"}, ResponseError::kNone,
       ResponseError::kBadChunk},
      {"head_cut_short", "HTTP/1.1 200 OK\r\nX: a", {kGet}, {}, ResponseError::kNone, ResponseError::kBadChunk},
  };
}

class ResponseCase : public ::testing::TestWithParam<Case> {};

TEST_P(ResponseCase, SameAtEverySplit) {
  const Case& c = GetParam();
  std::vector<std::vector<std::size_t>> splits = {{}};
  std::vector<std::size_t> bytes;
  for (std::size_t i = 1; i < c.input.size(); ++i) bytes.push_back(i);
  splits.push_back(bytes);
  for (std::size_t i = 1; i < c.input.size(); ++i) splits.push_back({i});
  for (const auto& cuts : splits) {
    const Outcome o = read(c.input, c.requests, cuts);
    ASSERT_EQ(o.heads, c.heads) << cuts.size();
    ASSERT_EQ(to_string(o.error), to_string(c.error)) << cuts.size();
    ASSERT_EQ(to_string(o.at_end), to_string(c.at_end)) << cuts.size();
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ResponseCase, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// Field values and reason phrases are checked 16 bytes at a time: every byte value at every
// offset of values of several lengths is accepted or refused exactly as by the byte table
// (HTAB, 0x20-0x7E and 0x80-0xFF accepted; a CR is kBareCr in a field, anything else refused),
// as the byte-by-byte check did.
TEST(ResponseReaderBytes, EachByteAtEveryOffsetOfAValueOrReason) {
  std::size_t refused = 0;
  for (std::size_t length : {1u, 15u, 16u, 17u, 33u}) {
    for (std::size_t at = 0; at < length; ++at) {
      for (int b = 0; b < 256; ++b) {
        if (b == '\n') continue;  // ends the line
        std::string value(length, 'v');
        value[at] = static_cast<char>(b);
        const bool ok = b == '\t' || (b >= 0x20 && b != 0x7f);
        const Outcome field = read("HTTP/1.1 200 OK\r\nX-Long: " + value + "\r\nContent-Length: 0\r\n\r\n", {kGet}, {});
        const ResponseError field_error = ok ? ResponseError::kNone : b == '\r' ? ResponseError::kBareCr : ResponseError::kBadHeaderField;
        ASSERT_EQ(field.error, field_error) << "field, length " << length << ", offset " << at << ", byte " << b;
        const Outcome reason = read("HTTP/1.1 200 " + value + "\r\nContent-Length: 0\r\n\r\n", {kGet}, {});
        const ResponseError reason_error = ok ? ResponseError::kNone : ResponseError::kBadStatusLine;
        ASSERT_EQ(reason.error, reason_error) << "reason, length " << length << ", offset " << at << ", byte " << b;
        refused += !ok;
      }
    }
  }
  EXPECT_GT(refused, 1000u);
}

TEST(ResponseHead, CodingsAreListedLowerCaseWithoutParameters) {
  ResponseReader r;
  r.expect({});
  const std::string in = "HTTP/1.1 200 OK\r\nContent-Encoding: GZIP, identity\r\ncontent-encoding: br;q=1\r\nContent-Length: 0\r\n\r\n";
  std::size_t used = 0;
  ASSERT_EQ(r.feed(in, used), ResponseReader::Event::kHead);
  EXPECT_EQ(used, in.size());
  EXPECT_EQ(r.head().codings("content-encoding"), (std::vector<std::string>{"gzip", "identity", "br"}));
  EXPECT_TRUE(r.head().codings("transfer-encoding").empty());
}

TEST(ResponseReaderLimits, HeadIsBounded) {
  ResponseReader r(ResponseLimits{.max_head = 64});
  r.expect({});
  std::size_t used = 0;
  EXPECT_EQ(r.feed("HTTP/1.1 200 OK\r\nX: " + std::string(100, 'a'), used), ResponseReader::Event::kError);
  EXPECT_EQ(r.error(), ResponseError::kHeadTooLarge);
}

// The reader reuses the field strings of earlier heads (kept-alive connections read heads
// without allocating): every head still has exactly its own fields and framing, whatever the
// heads before it held (more, fewer, longer or shorter fields; interim heads).
TEST(ResponseReaderReuse, EachHeadHasExactlyItsOwnFields) {
  using Fields = std::vector<std::pair<std::string, std::string>>;
  struct Step {
    std::string wire;
    int status;
    Fields fields;
    ResponseHead::Body body;
    std::uint64_t length;
    bool interim;
  };
  Fields many;
  std::string many_wire = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 40; ++i) {
    many.emplace_back("X-Long-" + std::to_string(i), std::string(150 + i, static_cast<char>('a' + i % 26)));
    many_wire += many.back().first + ":  " + many.back().second + " \r\n";
  }
  many.emplace_back("Content-Length", "3");
  many_wire += "Content-Length: 3\r\n\r\nabc";
  const std::vector<Step> steps = {
      {many_wire, 200, many, ResponseHead::Body::kLength, 3, false},
      {"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n", 204, {{"A", "b"}}, ResponseHead::Body::kNone, 0, false},
      {"HTTP/1.1 100 Continue\r\n\r\n", 100, {}, ResponseHead::Body::kNone, 0, true},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked;x=1\r\nServer: s\r\n\r\n1\r\nz\r\n0\r\n\r\n", 200,
       {{"Transfer-Encoding", "gzip, Chunked;x=1"}, {"Server", "s"}}, ResponseHead::Body::kChunked, 0, false},
      {"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", 200, {{"Content-Length", "2, 2"}},
       ResponseHead::Body::kLength, 2, false},
      {many_wire, 200, many, ResponseHead::Body::kLength, 3, false},
  };
  ResponseReader r;
  for (int i = 0; i < 5; ++i) r.expect({});
  r.expect({});
  for (const Step& step : steps) {
    std::string_view in = step.wire;
    bool saw_head = false;
    while (!in.empty()) {
      std::size_t used = 0;
      const auto ev = r.feed(in, used);
      ASSERT_NE(ev, ResponseReader::Event::kError) << to_string(r.error());
      in.remove_prefix(used);
      if (ev != ResponseReader::Event::kHead) continue;
      saw_head = true;
      EXPECT_EQ(r.head().status, step.status);
      EXPECT_EQ(Fields(r.head().fields.begin(), r.head().fields.end()), step.fields);
      EXPECT_EQ(r.head().body, step.body);
      EXPECT_EQ(r.head().length, step.length);
      EXPECT_EQ(r.head().interim, step.interim);
      EXPECT_FALSE(r.head().switched);
    }
    EXPECT_TRUE(saw_head);
  }
}

// Framing is decided from the fields as listed: a transfer coding with a Content-Length is
// ambiguous however the list is spelled, and a last coding other than chunked reads to the close.
TEST(ResponseReaderFraming, TransferCodingListsAsCodingsListsThem) {
  struct Want {
    std::string fields;
    ResponseError error;
    ResponseHead::Body body;
  };
  const std::vector<Want> wants = {
      {"Transfer-Encoding: ,\r\nContent-Length: 1\r\n", ResponseError::kNone, ResponseHead::Body::kLength},
      {"Transfer-Encoding: ;q\r\nContent-Length: 1\r\n", ResponseError::kNone, ResponseHead::Body::kLength},
      {"Transfer-Encoding: x\r\nContent-Length: 1\r\n", ResponseError::kAmbiguousFraming, ResponseHead::Body::kNone},
      {"Content-Length: 1\r\nContent-Length: 2\r\n", ResponseError::kBadContentLength, ResponseHead::Body::kNone},
      {"Transfer-Encoding: chunked, gzip\r\n", ResponseError::kNone, ResponseHead::Body::kClose},
      {"Transfer-Encoding: gzip\r\ntransfer-encoding: CHUNKED\r\n", ResponseError::kNone, ResponseHead::Body::kChunked},
  };
  for (const Want& w : wants) {
    ResponseReader r;
    r.expect({});
    const std::string in = "HTTP/1.1 200 OK\r\n" + w.fields + "\r\n";
    std::size_t used = 0;
    const auto ev = r.feed(in, used);
    if (w.error != ResponseError::kNone) {
      EXPECT_EQ(ev, ResponseReader::Event::kError) << w.fields;
      EXPECT_EQ(r.error(), w.error) << w.fields;
    } else {
      ASSERT_EQ(ev, ResponseReader::Event::kHead) << w.fields;
      EXPECT_EQ(r.head().body, w.body) << w.fields;
    }
  }
}

}  // namespace
}  // namespace airlock::http
