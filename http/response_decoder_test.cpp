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

// What the guest's HTTP client reads of `wire`: each response's head fields, body and trailers.
struct GuestResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> fields;
  ResponseHead::Body framing = ResponseHead::Body::kNone;
  std::string body, trailers;
  bool complete = false;
  std::string field(std::string_view name) const {
    for (const auto& [n, v] : fields)
      if (n == name) return v;
    return "<none>";
  }
};
std::vector<GuestResponse> guest_read(std::string_view wire, std::vector<ResponseExpectation> expect) {
  ResponseReader reader;
  for (const auto& e : expect) reader.expect(e);
  std::vector<GuestResponse> out;
  while (!wire.empty()) {
    std::size_t used = 0;
    const auto ev = reader.feed(wire, used);
    wire.remove_prefix(used);
    EXPECT_NE(ev, ResponseReader::Event::kError) << to_string(reader.error());
    if (ev == ResponseReader::Event::kError || ev == ResponseReader::Event::kOpaque) break;
    if (ev == ResponseReader::Event::kHead) {
      // The fields are views valid until the next head: the guest's copy owns its strings.
      std::vector<std::pair<std::string, std::string>> fields(reader.head().fields.begin(), reader.head().fields.end());
      out.push_back({reader.head().status, std::move(fields), reader.head().body, {}, {}, reader.head().body == ResponseHead::Body::kNone});
    } else if (ev == ResponseReader::Event::kBody || ev == ResponseReader::Event::kEnd) {
      out.back().body.append(reader.body());
      if (ev == ResponseReader::Event::kEnd) {
        out.back().trailers = reader.trailers();
        out.back().complete = true;
      }
    }
  }
  if (!out.empty() && out.back().framing == ResponseHead::Body::kClose) out.back().complete = true;
  return out;
}

struct Streamed {
  std::string out;
  std::string error;   // the block's reason
  bool closed = false;  // kClose
  bool opaque = false;
};

// Runs the upstream's bytes through a ResponseStream in `step`-byte reads (a flush after each
// read when `pauses`), then finish() (the upstream closed).
Streamed stream(std::string_view wire, const ScrubForms* forms, std::size_t step, bool undo,
                std::vector<ResponseExpectation> expect = {{}}, bool pauses = false, ResponseDecodeLimits limits = {}) {
  ResponseStream s(forms, limits);
  for (const auto& e : expect) s.expect(e);
  if (undo) s.undo_codings();
  Streamed r;
  for (std::size_t at = 0; at < wire.size(); at += step) {
    std::string_view piece = wire.substr(at, step);
    while (!piece.empty()) {
      std::size_t used = 0;
      const auto ev = s.feed(piece, used, r.out);
      EXPECT_LE(used, piece.size());
      piece.remove_prefix(used);
      if (ev == ResponseStream::Event::kError) {
        r.error = s.error();
        return r;
      }
      if (ev == ResponseStream::Event::kOpaque) r.opaque = true;
      if (ev == ResponseStream::Event::kClose) {
        r.closed = true;
        return r;
      }
    }
    if (pauses) s.flush(r.out);
  }
  if (s.finish(r.out) != DecodeError::kNone) r.error = s.error();
  return r;
}

const std::string kChunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

// The gateway's fast path: a read whose bytes a plain body takes goes straight into the output
// (after room for the scrubber's held bytes) and is scrubbed there; what follows the body, and
// every other read, goes through feed(). Same reads and pauses as stream().
Streamed stream_in_place(std::string_view wire, const ScrubForms* forms, std::size_t step,
                         std::vector<ResponseExpectation> expect = {{}}, bool pauses = false) {
  ResponseStream s(forms);
  for (const auto& e : expect) s.expect(e);
  Streamed r;
  for (std::size_t at = 0; at < wire.size(); at += step) {
    std::string_view piece = wire.substr(at, step);
    std::string rest;
    if (ResponseScrubber* direct = s.in_place_scrubber()) {
      const std::size_t into = r.out.size() + direct->pending();
      r.out.resize(into);
      r.out.append(piece);
      s.feed_in_place(r.out, into, rest);
      piece = rest;
    }
    while (!piece.empty()) {
      std::size_t used = 0;
      const auto ev = s.feed(piece, used, r.out);
      piece.remove_prefix(used);
      if (ev == ResponseStream::Event::kError) {
        r.error = s.error();
        return r;
      }
      if (ev == ResponseStream::Event::kOpaque) r.opaque = true;
    }
    if (pauses) s.flush(r.out);
  }
  if (s.finish(r.out) != DecodeError::kNone) r.error = s.error();
  return r;
}

// In place, plain bodies come out as feed() gives them, whatever the reads: values across read
// boundaries (held bytes put back before the next read), a body's end and the next response in
// one read (the rest goes through feed()), a close-delimited body, pauses between reads.
TEST(ResponseStream, InPlacePlainBodiesAreFeedAtEveryReadSize) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const std::string body1 = "a" + v + "bc" + v.substr(0, 9) + "." + v;
  const std::string body2 = v + "-" + v.substr(0, 20);
  const std::string two = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body1.size()) + "\r\n\r\n" + body1 +
                          "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body2.size()) + "\r\n\r\n" + body2;
  const std::string until_close = "HTTP/1.1 200 OK\r\n\r\n" + body1 + body2;
  struct Case {
    const std::string* wire;
    std::vector<ResponseExpectation> expect;
  };
  for (const Case& c : {Case{&two, {{}, {}}}, Case{&until_close, {{}}}}) {
    for (const bool pauses : {false, true}) {
      for (std::size_t step = 1; step <= c.wire->size(); ++step) {
        const Streamed want = stream(*c.wire, &forms, step, false, c.expect, pauses);
        const Streamed got = stream_in_place(*c.wire, &forms, step, c.expect, pauses);
        ASSERT_TRUE(want.error.empty() && got.error.empty()) << step;
        ASSERT_EQ(got.out, want.out) << "reads of " << step << (pauses ? ", paused" : "");
        ASSERT_EQ(got.out.find(v), std::string::npos) << step;
      }
    }
  }
}

// No fast path where the bytes are not a plain body's: heads, chunked and decoded bodies.
TEST(ResponseStream, InPlaceOnlyInsidePlainBodies) {
  const ScrubForms forms = forms_of(make_value());
  ResponseStream s(&forms);
  s.expect({});
  s.expect({});
  EXPECT_EQ(s.in_place_scrubber(), nullptr);  // a head comes first
  std::string out;
  std::size_t used = 0;
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n";
  ASSERT_EQ(s.feed(head, used, out), ResponseStream::Event::kHead);
  EXPECT_NE(s.in_place_scrubber(), nullptr);
  ASSERT_EQ(s.feed("abcd", used, out), ResponseStream::Event::kNeedMore);
  EXPECT_EQ(s.in_place_scrubber(), nullptr);  // between responses
  ASSERT_EQ(s.feed(kChunkedHead, used, out), ResponseStream::Event::kHead);
  EXPECT_EQ(s.in_place_scrubber(), nullptr);  // de-chunked and framed again
  ResponseStream none(static_cast<const ScrubForms*>(nullptr));
  none.expect({});
  ASSERT_EQ(none.feed(head, used, out), ResponseStream::Event::kHead);
  EXPECT_EQ(none.in_place_scrubber(), nullptr);  // nothing to scrub with
}

// The attack of issue 14: an allowed server echoes the value with a chunk boundary inside it.
// The old path scrubbed the framed bytes as they came; the guest's HTTP client joins the chunks
// and reads the value. (This part of the test shows the old path letting it through.)
// at_rest() says when the stream may be given back and made again (an idle connection's
// response side): only between responses with none expected and no byte of the next one held.
TEST(ResponseStream, AtRestOnlyBetweenResponsesWithNoneExpected) {
  const ScrubForms forms = forms_of(make_value());
  ResponseStream s(&forms);
  EXPECT_TRUE(s.at_rest());
  s.expect({});
  EXPECT_FALSE(s.at_rest()) << "a response is due";
  std::string out;
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody";
  std::size_t used = 0;
  std::string_view in(wire.data(), wire.size() - 2);  // the body's last two bytes not yet there
  while (!in.empty()) {
    ASSERT_NE(s.feed(in, used, out), ResponseStream::Event::kError);
    in.remove_prefix(used);
  }
  EXPECT_FALSE(s.at_rest()) << "inside a body";
  in = std::string_view(wire).substr(wire.size() - 2);
  while (!in.empty()) {
    ASSERT_NE(s.feed(in, used, out), ResponseStream::Event::kError);
    in.remove_prefix(used);
  }
  EXPECT_TRUE(s.at_rest());
  s.expect({});
  in = "HTTP/1.1 2";  // part of the next status line
  ASSERT_NE(s.feed(in, used, out), ResponseStream::Event::kError);
  EXPECT_FALSE(s.at_rest()) << "a status line is held";
  EXPECT_FALSE(s.undoes_codings());
  s.undo_codings();
  EXPECT_TRUE(s.undoes_codings());
}

TEST(ResponseStream, ChunkSplitEchoIsMasked) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const std::string body = "{\"echo\":\"" + v + "\"}";
  std::vector<std::vector<std::size_t>> cuts;
  for (std::size_t cut = 10; cut < 9 + v.size(); ++cut) cuts.push_back({cut});
  cuts.push_back(std::vector<std::size_t>(body.size(), 1));  // one byte per chunk
  for (const auto& sizes : cuts) {
    const std::string wire = kChunkedHead + chunked(body, sizes);
    // Old path: the stream scrubber over the framed bytes.
    ResponseScrubber old(forms);
    std::string old_out;
    old.feed(wire, old_out);
    old.flush(old_out);
    ASSERT_NE(guest_read(old_out, {{}}).at(0).body.find(v), std::string::npos) << "the attack no longer works";

    for (std::size_t step : {std::size_t{1}, std::size_t{7}, wire.size()}) {
      for (bool pauses : {false, true}) {
        const Streamed r = stream(wire, &forms, step, false, {{}}, pauses);
        ASSERT_EQ(r.error, "");
        const auto guest = guest_read(r.out, {{}});
        ASSERT_EQ(guest.size(), 1u);
        ASSERT_TRUE(guest[0].complete);
        ASSERT_EQ(guest[0].field("Transfer-Encoding"), "chunked");
        ASSERT_EQ(guest[0].body.find(v), std::string::npos) << "step " << step;
        // A pause may let a held start of the value go unmasked (at most 3 bytes); without, all is masked.
        if (!pauses) {
          ASSERT_EQ(guest[0].body, "{\"echo\":\"" + std::string(v.size(), '*') + "\"}");
        }
      }
    }
  }
}

TEST(ResponseStream, CompressedEchoesAreDecodedMaskedAndReframed) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const std::string body = std::string(5000, 'a') + v + std::string(3000, 'z') + v;
  const std::string next = "HTTP/1.1 204 No Content\r\nX-Echo: " + v + "\r\n\r\n";
  for (Coding c : {Coding::kGzip, Coding::kDeflate, Coding::kBrotli, Coding::kZstd}) {
    std::string enc;
    ASSERT_EQ(encode_all({c}, body, enc), CodingError::kNone);
    const std::string ce = "Content-Encoding: " + std::string(coding_name(c)) + "\r\n";
    for (const std::string& first :
         {"HTTP/1.1 200 OK\r\n" + ce + "Content-Length: " + std::to_string(enc.size()) + "\r\n\r\n" + enc,
          "HTTP/1.1 200 OK\r\n" + ce + "Transfer-Encoding: chunked\r\n\r\n" + chunked(enc, {3, 100})}) {
      const std::string wire = first + next;
      for (std::size_t step : {std::size_t{1}, std::size_t{64}, wire.size()}) {
        const Streamed r = stream(wire, &forms, step, true, {{}, {}});
        ASSERT_EQ(r.error, "") << coding_name(c);
        ASSERT_EQ(r.out.find(v), std::string::npos) << coding_name(c);
        const auto guest = guest_read(r.out, {{}, {}});
        ASSERT_EQ(guest.size(), 2u) << coding_name(c);
        EXPECT_EQ(guest[0].field("Content-Encoding"), "<none>");
        EXPECT_EQ(guest[0].field("Content-Length"), "<none>");
        EXPECT_EQ(guest[0].field("Transfer-Encoding"), "chunked");
        EXPECT_TRUE(guest[0].complete);
        EXPECT_EQ(guest[0].body.size(), body.size());
        EXPECT_EQ(guest[0].body.substr(5000, v.size()), std::string(v.size(), '*'));
        EXPECT_EQ(guest[1].status, 204);
        EXPECT_EQ(guest[1].field("X-Echo"), std::string(v.size(), '*'));
      }
    }
  }
}

// Layered codings (Content-Encoding and a transfer coding before chunked) come off in order.
TEST(ResponseStream, LayeredAndTransferCodingsAreUndone) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  std::string a, b;
  ASSERT_EQ(encode_all({Coding::kBrotli, Coding::kGzip}, "x" + v + "y", a), CodingError::kNone);
  ASSERT_EQ(encode_all({Coding::kGzip}, "x" + v + "y", b), CodingError::kNone);
  for (const std::string& wire :
       {"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(a.size()) + "\r\n\r\n" + a,
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked(b, {5})}) {
    const Streamed r = stream(wire, &forms, 9, true);
    ASSERT_EQ(r.error, "");
    const auto guest = guest_read(r.out, {{}});
    ASSERT_EQ(guest.size(), 1u);
    EXPECT_EQ(guest[0].body, std::string("x").append(v.size(), '*').append("y"));
    EXPECT_EQ(guest[0].field("Transfer-Encoding"), "chunked");
  }
}

// Where no value may have flowed, the client's codings are left alone (only chunks re-framed),
// and a plain body leaves byte for byte.
TEST(ResponseStream, WithoutUndoCodingsAreKeptAndPlainBodiesPassAsTheyCame) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  std::string enc;
  ASSERT_EQ(encode_all({Coding::kGzip}, "hello", enc), CodingError::kNone);
  const std::string gz = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + std::to_string(enc.size()) + "\r\n\r\n" + enc;
  EXPECT_EQ(stream(gz, &forms, 3, false).out, gz);
  const std::string plain = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";
  EXPECT_EQ(stream(plain, &forms, 4, true).out, plain);
  EXPECT_EQ(stream(plain, nullptr, 4, true).out, plain);
  const std::string chunks = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(enc, {2});
  const auto guest = guest_read(stream(chunks, &forms, 5, false).out, {{}});
  ASSERT_EQ(guest.size(), 1u);
  EXPECT_EQ(guest[0].field("Content-Encoding"), "gzip");
  EXPECT_EQ(guest[0].body, enc);
  // No scrubber (no secrets): nothing to de-chunk, the bytes pass unchanged.
  EXPECT_EQ(stream(chunks, nullptr, 5, true).out, chunks);
}

// An HTTP/1.0 response, or one to an HTTP/1.0 request, cannot be re-framed as chunked: it leaves
// close-delimited, says Connection: close, and the connection ends after it.
TEST(ResponseStream, Http10LeavesCloseDelimited) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  std::string enc;
  ASSERT_EQ(encode_all({Coding::kDeflate}, "a" + v + "b", enc), CodingError::kNone);
  const std::string rest = "Content-Encoding: deflate\r\nConnection: keep-alive\r\nContent-Length: " + std::to_string(enc.size()) +
                           "\r\n\r\n" + enc + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  for (const auto& [wire, expect] : std::vector<std::pair<std::string, ResponseExpectation>>{
           {"HTTP/1.0 200 OK\r\n" + rest, {}}, {"HTTP/1.1 200 OK\r\n" + rest, {.http10 = true}}}) {
    const Streamed r = stream(wire, &forms, 6, true, {expect, expect});
    ASSERT_EQ(r.error, "");
    EXPECT_TRUE(r.closed);
    const auto guest = guest_read(r.out, {{}});
    ASSERT_EQ(guest.size(), 1u) << "nothing after the close-delimited body";
    EXPECT_EQ(guest[0].framing, ResponseHead::Body::kClose);
    EXPECT_EQ(guest[0].field("Connection"), "close");
    EXPECT_EQ(guest[0].body, std::string("a").append(v.size(), '*').append("b"));
  }
}

TEST(ResponseStream, TrailersAreScrubbed) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  const Streamed r = stream(kChunkedHead + chunked("body", {}, "X-Echo: " + v + "\r\n"), &forms, 5, false);
  ASSERT_EQ(r.error, "");
  const auto guest = guest_read(r.out, {{}});
  ASSERT_EQ(guest.size(), 1u);
  EXPECT_EQ(guest[0].body, "body");
  EXPECT_EQ(guest[0].trailers, "X-Echo: " + std::string(v.size(), '*') + "\r\n");
}

TEST(ResponseStream, CloseDelimitedCompressedBodyStaysCloseDelimited) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  std::string enc;
  ASSERT_EQ(encode_all({Coding::kGzip}, concat("x", v, "y"), enc), CodingError::kNone);
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n";
  Streamed r = stream(head + enc, &forms, 10, true);
  ASSERT_EQ(r.error, "");
  EXPECT_EQ(r.out, concat("HTTP/1.1 200 OK\r\n\r\n", "x", std::string(v.size(), '*'), "y"));
  // Cut short: the stream does not end as a whole, so the guest must not see a clean end.
  r = stream(head + enc.substr(0, enc.size() - 4), &forms, 10, true);
  EXPECT_NE(r.error, "");
}

TEST(ResponseStream, NoBodyInterimAndSwitchedResponsesKeepWorking) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  // HEAD, 204, 304 with a coding: no body, the head leaves as it came.
  const std::string heads = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 99\r\n\r\n"
                            "HTTP/1.1 304 Not Modified\r\nContent-Encoding: br\r\n\r\n"
                            "HTTP/1.1 204 No Content\r\nContent-Encoding: zstd\r\n\r\n";
  EXPECT_EQ(stream(heads, &forms, 7, true, {{.head = true}, {}, {}}).out, heads);
  // 100 and 103 before the final response; then 101 and opaque bytes, still scrubbed.
  const std::string wire = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                           "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                           "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nframe:" + v;
  const Streamed r = stream(wire, &forms, 11, true, {{}, {.upgrade = true}});
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(r.opaque);
  EXPECT_EQ(r.out, wire.substr(0, wire.size() - v.size()) + std::string(v.size(), '*'));
}

TEST(ResponseStream, UndecodableResponsesAreBlockedWithoutTheirText) {
  const std::string v = make_value();
  const ScrubForms forms = forms_of(v);
  std::string bomb;
  ASSERT_EQ(encode_all({Coding::kGzip}, std::string(std::size_t{32} << 20, 'A'), bomb), CodingError::kNone);
  const std::string gz = "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ";
  Streamed r = stream(gz + std::to_string(bomb.size()) + "\r\n\r\n" + bomb, &forms, 4096, true);
  EXPECT_NE(r.error.find("decompression-ratio"), std::string::npos) << r.error;
  EXPECT_LE(r.out.size(), 100 * bomb.size() + kRatioSlack);
  ResponseDecodeLimits small;
  small.coding.max_output = 1 << 20;
  r = stream(gz + std::to_string(bomb.size()) + "\r\n\r\n" + bomb, &forms, 1 << 20, true, {{}}, false, small);
  EXPECT_NE(r.error.find("size cap"), std::string::npos) << r.error;
  // The server's own coding name may be anything (even a value): it is not repeated.
  r = stream("HTTP/1.1 200 OK\r\nContent-Encoding: " + v + "\r\nContent-Length: 1\r\n\r\nx", &forms, 5, true);
  EXPECT_NE(r.error, "");
  EXPECT_EQ(r.error.find(v), std::string::npos);
  EXPECT_EQ(r.out, "") << "nothing of it was forwarded";
  r = stream("HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\nContent-Length: 1\r\n\r\nx", &forms, 5, true);
  EXPECT_NE(r.error, "");
  r = stream("HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 8\r\n\r\nnotbrotl", &forms, 3, true);
  EXPECT_NE(r.error.find("corrupt"), std::string::npos) << r.error;
  // The reader's strict framing: Content-Length with Transfer-Encoding, bad chunks.
  r = stream("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &forms, 3, true);
  EXPECT_NE(r.error.find("content_length_with_transfer_encoding"), std::string::npos) << r.error;
  r = stream(kChunkedHead + "4\r\nabcdefg\r\n0\r\n\r\n", &forms, 3, false);
  EXPECT_NE(r.error.find("bad_chunk"), std::string::npos) << r.error;
}

}  // namespace
}  // namespace airlock::http
