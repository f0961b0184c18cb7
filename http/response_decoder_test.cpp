// Values and bodies are made up by the tests; failures report sizes and error names only.
#include <http/response_decoder.hpp>

#include "common/concat.hpp"
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace airlock::http {
namespace {

std::string make_value() {
  static std::mt19937 rng(99);
  const std::string alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string v = "sk-";
  while (v.size() < 32) v += alnum[rng() % alnum.size()];
  return v;
}

ScrubForms forms_of(const std::string& value) {
  std::vector<SecretBinding> s;
  s.push_back(SecretBuilder().env("KEY").value(value).allow_host("api.example.com").build());
  return ScrubForms(s);
}

// Chunked framing with the given chunk sizes (the last chunk takes the rest).
std::string chunked(std::string_view body, const std::vector<std::size_t>& sizes, std::string_view trailers = {}) {
  std::string out;
  std::size_t at = 0;
  for (std::size_t n : sizes) {
    append_chunk(body.substr(at, n), out);
    at += std::min(n, body.size() - at);
  }
  append_chunk(body.substr(at), out);
  append_last_chunk(trailers, out);
  return out;
}

// De-chunks `framed`, failing the test on bad framing.
std::string dechunk(std::string_view framed, std::string* trailers = nullptr) {
  ChunkedDecoder d;
  std::string data;
  std::size_t used = 0;
  EXPECT_EQ(d.feed(framed, data, used), ChunkError::kNone);
  EXPECT_TRUE(d.done());
  EXPECT_EQ(used, framed.size());
  if (trailers != nullptr) *trailers = d.trailers();
  return data;
}

struct Decoded {
  DecodeError error = DecodeError::kNone;
  std::string out;
  std::size_t used = 0;
};

// Runs a head + body through plan_body and ResponseBodyDecoder, body fed in `step`-byte reads
// (no pauses), then finish() (the upstream closed).
Decoded run(std::string_view head, std::string_view body, const ScrubForms* forms, std::size_t step,
            const CodingLimits& limits = {}) {
  Decoded r;
  BodyPlan plan;
  r.error = plan_body(head, "GET", plan);
  if (r.error != DecodeError::kNone) return r;
  ResponseBodyDecoder d(plan, limits, forms);
  for (std::size_t at = 0; at < body.size() && !d.done(); at += step) {
    std::size_t used = 0;
    r.error = d.feed(body.substr(at, step), r.out, used);
    r.used += used;
    if (r.error != DecodeError::kNone) return r;
  }
  r.error = d.finish(r.out);
  return r;
}

TEST(ChunkedDecoder, DataExtensionsTrailersAndWhatFollows) {
  const std::string framed = "5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n";
  for (std::size_t step : {std::size_t{1}, std::size_t{3}, framed.size()}) {
    ChunkedDecoder d;
    std::string data;
    std::size_t total = 0;
    const std::string input = framed + "HTTP/1.1 200 OK\r\n";
    for (std::size_t at = 0; at < input.size() && !d.done(); at += step) {
      std::size_t used = 0;
      ASSERT_EQ(d.feed(std::string_view(input).substr(at, step), data, used), ChunkError::kNone);
      total += used;
    }
    EXPECT_TRUE(d.done());
    EXPECT_EQ(total, framed.size()) << "the next response is not consumed";
    EXPECT_EQ(data, "helloabcdefghijklmnopqrstuvwxyz");
    EXPECT_EQ(d.trailers(), "X-T: 1\r\nY: 2\r\n");
  }
}

TEST(ChunkedDecoder, MalformedFramingIsAnError) {
  const std::vector<std::pair<std::string, ChunkError>> cases = {
      {"x\r\n", ChunkError::kBadSize},
      {"\r\n", ChunkError::kBadSize},
      {"-5\r\n", ChunkError::kBadSize},
      {"10000000000000000\r\n", ChunkError::kBadSize},  // 17 digits
      {"5\nhello\r\n", ChunkError::kBadLineEnd},         // bare LF
      {"5\r\nhelloX\r\n", ChunkError::kBadLineEnd},      // data longer than its size
      {"5\r\nhello\n0\r\n\r\n", ChunkError::kBadLineEnd},
      {"5;" + std::string(5000, 'e') + "\r\n", ChunkError::kLineTooLong},
      {"0\r\nX: " + std::string(20000, 'v') + "\r\n\r\n", ChunkError::kTrailersTooLong},
      {"0\r\nX: 1\n\r\n", ChunkError::kBadLineEnd},
  };
  for (const auto& [input, want] : cases) {
    ChunkedDecoder d;
    std::string data;
    std::size_t used = 0;
    EXPECT_EQ(d.feed(input, data, used), want) << input.substr(0, 24);
    EXPECT_EQ(d.feed("0\r\n\r\n", data, used), want) << "errors are sticky";
  }
}

TEST(ChunkedDecoder, FramingRoundTrips) {
  const std::string body(100000, 'b');
  std::string trailers;
  EXPECT_EQ(dechunk(chunked(body, {1, 4095, 4096, 65536}, "T: v\r\n"), &trailers), body);
  EXPECT_EQ(trailers, "T: v\r\n");
  std::string out;
  append_chunk("", out);
  EXPECT_TRUE(out.empty()) << "an empty chunk would end the body";
}

TEST(BodyPlan, FramingFromTheHead) {
  BodyPlan p;
  ASSERT_EQ(plan_body("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", "GET", p), DecodeError::kNone);
  EXPECT_EQ(p.framing, BodyPlan::Framing::kLength);
  EXPECT_EQ(p.length, 12u);
  EXPECT_FALSE(p.decode());
  ASSERT_EQ(plan_body("HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\nContent-Length: 5\r\n\r\n", "GET", p), DecodeError::kNone);
  EXPECT_EQ(p.framing, BodyPlan::Framing::kChunked);
  EXPECT_TRUE(p.reframe());
  ASSERT_EQ(plan_body("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: br, chunked\r\n\r\n", "GET", p),
            DecodeError::kNone);
  EXPECT_EQ(p.codings, (std::vector<Coding>{Coding::kGzip, Coding::kBrotli}));
  ASSERT_EQ(plan_body("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n", "GET", p), DecodeError::kNone);
  EXPECT_EQ(p.framing, BodyPlan::Framing::kClose);
  EXPECT_FALSE(p.reframe());
  ASSERT_EQ(plan_body("HTTP/1.0 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n", "GET", p), DecodeError::kNone);
  EXPECT_TRUE(p.close_after());
  for (std::string_view head : {"HTTP/1.1 204 No Content\r\nContent-Encoding: gzip\r\n\r\n",
                                "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "HTTP/1.1 101 Switching\r\n\r\n"}) {
    ASSERT_EQ(plan_body(head, "GET", p), DecodeError::kNone) << head;
    EXPECT_EQ(p.framing, BodyPlan::Framing::kNone) << head;
  }
  ASSERT_EQ(plan_body("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Encoding: br\r\n\r\n", "HEAD", p), DecodeError::kNone);
  EXPECT_EQ(p.framing, BodyPlan::Framing::kNone);
  EXPECT_FALSE(p.decode());
  ASSERT_EQ(plan_body("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", "GET", p), DecodeError::kNone);
  EXPECT_EQ(p.length, 7u);
}

TEST(BodyPlan, RefusedFramingAndCodings) {
  BodyPlan p;
  const std::vector<std::pair<std::string_view, DecodeError>> cases = {
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", DecodeError::kBadFraming},  // chunked not last
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: compress, chunked\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", DecodeError::kBadFraming},
      {"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\n\r\n", DecodeError::kUnknownCoding},
      {"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Encoding: exi\r\n\r\n", DecodeError::kUnknownCoding},
      {"HTTP/2 200\r\n\r\n", DecodeError::kBadHead},
      {"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", DecodeError::kBadHead},
      {"HTTP/1.1 200 OK\r\nA: b\n\r\n", DecodeError::kBadHead},
  };
  for (const auto& [head, want] : cases) EXPECT_EQ(plan_body(head, "GET", p), want) << head;
}

TEST(BodyPlan, AdjustedHeadDropsCodingAndLength) {
  BodyPlan p;
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-encoding: gzip\r\nContent-Length: 99\r\nX-A: b\r\n\r\n";
  ASSERT_EQ(plan_body(head, "GET", p), DecodeError::kNone);
  std::string out;
  adjust_head(head, p, out);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: b\r\nTransfer-Encoding: chunked\r\n\r\n");
  const std::string h10 = "HTTP/1.0 200 OK\r\nContent-Encoding: br\r\nContent-Length: 9\r\nConnection: keep-alive\r\n\r\n";
  ASSERT_EQ(plan_body(h10, "GET", p), DecodeError::kNone);
  out.clear();
  adjust_head(h10, p, out);
  EXPECT_EQ(out, "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n");
}

// The attack of issue 14: an allowed server echoes the value with a chunk boundary inside it.
// The old path scrubbed the framed bytes as they came; the guest's HTTP client joins the chunks
// and reads the value. (This part of the test shows the old path letting it through.)
TEST(ResponseBodyDecoder, ChunkSplitEchoIsMasked) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const std::string body = "{\"echo\":\"" + v + "\"}";
  for (std::size_t cut = 10; cut < 9 + v.size(); ++cut) {
    const std::string framed = chunked(body, {cut});
    // Old path: the stream scrubber over the framed bytes.
    ResponseScrubber old(forms);
    std::string old_out;
    old.feed(framed, old_out);
    old.flush(old_out);
    ASSERT_NE(dechunk(old_out).find(v), std::string::npos) << "the attack no longer works at " << cut;

    for (std::size_t step : {std::size_t{1}, std::size_t{7}, framed.size()}) {
      const Decoded r = run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", framed, &forms, step);
      ASSERT_EQ(r.error, DecodeError::kNone);
      const std::string guest = dechunk(r.out);
      ASSERT_EQ(guest.size(), body.size());
      ASSERT_EQ(guest.find(v), std::string::npos) << "cut " << cut << " step " << step;
      ASSERT_EQ(guest, "{\"echo\":\"" + std::string(v.size(), '*') + "\"}");
    }
  }
}

TEST(ResponseBodyDecoder, CompressedEchoesAreDecodedMaskedAndReframed) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const std::string body = std::string(5000, 'a') + v + std::string(3000, 'z') + v;
  for (Coding c : {Coding::kGzip, Coding::kDeflate, Coding::kBrotli, Coding::kZstd}) {
    std::string enc;
    ASSERT_EQ(encode_all({c}, body, enc), CodingError::kNone);
    const std::string ce = "Content-Encoding: " + std::string(coding_name(c)) + "\r\n";
    for (const auto& [head, wire] : std::vector<std::pair<std::string, std::string>>{
             {"HTTP/1.1 200 OK\r\n" + ce + "Content-Length: " + std::to_string(enc.size()) + "\r\n\r\n", enc},
             {"HTTP/1.1 200 OK\r\n" + ce + "Transfer-Encoding: chunked\r\n\r\n", chunked(enc, {3, 100})}}) {
      for (std::size_t step : {std::size_t{1}, std::size_t{64}, wire.size()}) {
        const Decoded r = run(head, wire + "NEXT", &forms, step);
        ASSERT_EQ(r.error, DecodeError::kNone) << coding_name(c);
        EXPECT_EQ(r.used, wire.size()) << coding_name(c);
        const std::string guest = dechunk(r.out);
        EXPECT_EQ(guest.find(v), std::string::npos) << coding_name(c);
        EXPECT_EQ(guest.size(), body.size());
        EXPECT_EQ(guest.substr(5000, v.size()), std::string(v.size(), '*'));
      }
    }
  }
}

TEST(ResponseBodyDecoder, TrailersAreScrubbed) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const Decoded r = run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked("body", {}, "X-Echo: " + v + "\r\n"), &forms, 5);
  ASSERT_EQ(r.error, DecodeError::kNone);
  std::string trailers;
  EXPECT_EQ(dechunk(r.out, &trailers), "body");
  EXPECT_EQ(trailers, "X-Echo: " + std::string(v.size(), '*') + "\r\n");
}

TEST(ResponseBodyDecoder, CloseDelimitedCompressedBodyStaysCloseDelimited) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  std::string enc;
  ASSERT_EQ(encode_all({Coding::kGzip}, concat("x", v, "y"), enc), CodingError::kNone);
  const Decoded r = run("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n", enc, &forms, 10);
  ASSERT_EQ(r.error, DecodeError::kNone);
  EXPECT_EQ(r.out, concat("x", std::string(v.size(), '*'), "y"));
}

TEST(ResponseBodyDecoder, BombTruncationCorruptionAndBadChunksAreErrors) {
  std::string bomb;
  ASSERT_EQ(encode_all({Coding::kGzip}, std::string(std::size_t{32} << 20, 'A'), bomb), CodingError::kNone);
  const std::string gz = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ";
  CodingLimits limits;
  limits.max_ratio = 50;
  Decoded r = run(gz + std::to_string(bomb.size()) + "\r\n\r\n", bomb, nullptr, 4096, limits);
  EXPECT_EQ(r.error, DecodeError::kRatioCap);
  EXPECT_LE(r.out.size(), 50 * r.used + kRatioSlack + (64u << 10));
  limits = {};
  limits.max_output = 1 << 20;
  r = run(gz + std::to_string(bomb.size()) + "\r\n\r\n", bomb, nullptr, 1 << 20, limits);
  EXPECT_EQ(r.error, DecodeError::kOutputCap);

  std::string enc;
  ASSERT_EQ(encode_all({Coding::kBrotli}, std::string(10000, 'q'), enc), CodingError::kNone);
  const std::string br = "HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: ";
  r = run(br + std::to_string(enc.size()) + "\r\n\r\n", std::string_view(enc).substr(0, enc.size() - 2), nullptr, 3);
  EXPECT_EQ(r.error, DecodeError::kTruncated) << "upstream closed early";
  // The length is right, but the stream inside ends early.
  r = run(br + std::to_string(enc.size() - 2) + "\r\n\r\n", std::string_view(enc).substr(0, enc.size() - 2), nullptr, 3);
  EXPECT_EQ(r.error, DecodeError::kCoding);
  r = run(br + "8\r\n\r\n", "notbrotl", nullptr, 3);
  EXPECT_EQ(r.error, DecodeError::kCoding);
  r = run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "4\r\nabcdefg\r\n0\r\n\r\n", nullptr, 3);
  EXPECT_EQ(r.error, DecodeError::kChunking);
  r = run("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "4\r\nab", nullptr, 3);
  EXPECT_EQ(r.error, DecodeError::kTruncated);
}

}  // namespace
}  // namespace airlock::http
