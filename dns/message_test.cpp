#include "dns/message.hpp"

#include <gtest/gtest.h>

namespace airlock::dns {
namespace {

using namespace std::string_literals;

Name name(std::string_view text) { return *Name::from_text(text); }
IpAddress ip(std::string_view text) { return *IpAddress::parse(text); }

std::string header(std::uint16_t id, std::uint16_t flags, int qd, int an, int ns, int ar) {
  std::string h;
  for (int v : {int(id), int(flags), qd, an, ns, ar}) {
    h += static_cast<char>(v >> 8);
    h += static_cast<char>(v & 0xff);
  }
  return h;
}

std::error_code parse_err(const std::string& wire) {
  Message m;
  return parse(wire, m);
}

TEST(Name, TextAndWire) {
  EXPECT_EQ(name("api.Example.COM.").wire(), "\3api\7Example\3COM\0"s);
  EXPECT_EQ(name("api.Example.COM").text(), "api.example.com");
  EXPECT_EQ(name(".").text(), ".");
  EXPECT_TRUE(name(".").is_root());
  EXPECT_EQ(name("a\\.b.example").wire(), "\3a.b\7example\0"s);
  EXPECT_EQ(name("a\\.b.example").text(), "a\\046b.example");
  EXPECT_EQ(name("\\000x.example").text(), "\\000x.example");
  EXPECT_EQ(name("a b.example").text(), "a\\032b.example");
  EXPECT_EQ(name("API.example"), name("api.EXAMPLE."));
  EXPECT_FALSE(name("api.example") == name("api.example.com"));
  EXPECT_FALSE(Name::from_text(""));
  EXPECT_FALSE(Name::from_text("a..b"));
  EXPECT_FALSE(Name::from_text(".a"));
  EXPECT_FALSE(Name::from_text("a\\"));
  EXPECT_FALSE(Name::from_text("a\\25"));
  EXPECT_FALSE(Name::from_text("a\\256"));
  EXPECT_TRUE(Name::from_text(std::string(63, 'a')));
  EXPECT_FALSE(Name::from_text(std::string(64, 'a')));
  // 255 bytes on the wire: four labels of 63 (256 with length bytes and root) is too long.
  const std::string l63(63, 'a');
  EXPECT_FALSE(Name::from_text(l63 + "." + l63 + "." + l63 + "." + l63));
  EXPECT_TRUE(Name::from_text(l63 + "." + l63 + "." + l63 + "." + std::string(61, 'a')));
}

TEST(Message, ParsesQueryAndBuildsItBack) {
  const std::string wire = header(0x1234, 0x0100, 1, 0, 0, 0) + "\3api\4test\7example\0"s + "\0\1\0\1"s;
  Message m;
  ASSERT_FALSE(parse(wire, m));
  EXPECT_EQ(m.header.id, 0x1234);
  EXPECT_TRUE(m.header.rd());
  EXPECT_FALSE(m.header.qr());
  ASSERT_EQ(m.questions.size(), 1u);
  EXPECT_EQ(m.questions[0].name.text(), "api.test.example");
  EXPECT_EQ(m.questions[0].type, type::kA);
  EXPECT_EQ(m.udp_payload_limit(), 512);
  std::string out;
  ASSERT_FALSE(build(m, out));
  EXPECT_EQ(out, wire);
}

TEST(Message, FollowsCompressionPointersAndExpandsRdataNames) {
  // Question "www.example.com" at 12; answer owner is a pointer to 12; CNAME data "cdn" + pointer
  // to "example.com" (offset 16); then an A record for the CNAME target via a pointer to it.
  std::string w = header(7, 0x8180, 1, 3, 0, 0);
  w += "\3www\7example\3com\0"s + "\0\1\0\1"s;  // 12..32
  const std::size_t cname_rr = w.size();
  w += "\xc0\x0c"s + "\0\5\0\1"s + "\0\0\1\x2c"s + "\0\6"s + "\3cdn\xc0\x10"s;
  const std::size_t cdn_name = cname_rr + 12;  // where "\3cdn" starts
  w += "\xc0"s + static_cast<char>(cdn_name) + "\0\1\0\1"s + "\0\0\0\x3c"s + "\0\4"s + "\xc6\x33\x64\x07"s;
  // An MX record whose exchange is compressed.
  w += "\xc0\x10"s + "\0\x0f\0\1"s + "\0\0\0\x3c"s + "\0\4"s + "\0\x0a\xc0\x0c"s;
  Message m;
  ASSERT_FALSE(parse(w, m)) << parse(w, m).message();
  ASSERT_EQ(m.answers.size(), 3u);
  EXPECT_EQ(m.answers[0].name.text(), "www.example.com");
  EXPECT_EQ(m.answers[0].ttl, 300u);
  EXPECT_EQ(m.answers[0].cname_target()->text(), "cdn.example.com");
  EXPECT_EQ(m.answers[0].rdata, "\3cdn\7example\3com\0"s);
  EXPECT_EQ(m.answers[1].name.text(), "cdn.example.com");
  EXPECT_EQ(m.answers[1].address(), ip("198.51.100.7"));
  EXPECT_EQ(m.answers[2].rdata, "\0\x0a\3www\7example\3com\0"s);
  // Re-encoding without compression re-parses to the same message.
  std::string out;
  ASSERT_FALSE(build(m, out));
  Message again;
  ASSERT_FALSE(parse(out, again));
  EXPECT_EQ(again, m);
}

TEST(Message, RejectsBadPointers) {
  const std::string q = "\0\1\0\1"s;
  // Pointer to itself.
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\xc0\x0c"s + q), Errc::kBadPointer);
  // Pointer forwards.
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\xc0\x10"s + q + "\1a\0"s), Errc::kBadPointer);
  // Pointer into the header.
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\xc0\x02"s + q), Errc::kBadPointer);
  // Two names pointing at each other: the second points back to the first, whose label run
  // reaches a pointer to the second (forward from the segment start): a loop, rejected.
  std::string loop = header(1, 0, 2, 0, 0, 0);
  loop += "\1a\xc0\x14"s + q;      // 12: "a" then pointer to 20
  loop += "\xc0\x0c"s + q;         // 20: pointer to 12
  EXPECT_EQ(parse_err(loop), Errc::kBadPointer);
  // Pointer back into the middle of the same name's labels read so far.
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\1a\1b\xc0\x0e"s + q), Errc::kBadPointer);
  // Truncated pointer.
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\xc0"s), Errc::kTruncated);
}

TEST(Message, RejectsOverlongNamesAndBadLabels) {
  // 5 labels of 63 bytes: 320 wire bytes.
  std::string long_name;
  for (int i = 0; i < 5; ++i) long_name += static_cast<char>(63) + std::string(63, 'a');
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + long_name + "\0"s + "\0\1\0\1"s), Errc::kNameTooLong);
  // Exactly 255 bytes is fine: 3 * 64 + 62 + root.
  std::string max_name;
  for (int i = 0; i < 3; ++i) max_name += static_cast<char>(63) + std::string(63, 'a');
  max_name += static_cast<char>(61) + std::string(61, 'b') + "\0"s;
  ASSERT_EQ(max_name.size(), 255u);
  EXPECT_FALSE(parse_err(header(1, 0, 1, 0, 0, 0) + max_name + "\0\1\0\1"s));
  // Names built from pointers are limited the same way: each question adds one label before a
  // pointer to the previous one.
  std::string chain = header(1, 0, 0, 0, 0, 0);
  std::size_t prev = 12;
  chain += static_cast<char>(63) + std::string(63, 'x') + "\0"s + "\0\1\0\1"s;
  int qd = 1;
  for (int i = 0; i < 4; ++i) {
    const std::size_t here = chain.size();
    chain += static_cast<char>(63) + std::string(63, 'y') + "\xc0"s + static_cast<char>(prev) + "\0\1\0\1"s;
    prev = here;
    ++qd;
  }
  chain[5] = static_cast<char>(qd);
  EXPECT_EQ(parse_err(chain), Errc::kNameTooLong);
  // 0x40 and 0x80 label types.
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\x41\0"s + "\0\1\0\1"s), Errc::kBadLabelType);
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\x81\0"s + "\0\1\0\1"s), Errc::kBadLabelType);
}

TEST(Message, StrictBounds) {
  EXPECT_EQ(parse_err(""), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 0, 0, 0, 0).substr(0, 11)), Errc::kTruncated);
  EXPECT_FALSE(parse_err(header(1, 0, 0, 0, 0, 0)));
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0)), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\3ab"s), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 1, 0, 0, 0) + "\0\0\1\0"s), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 0xffff, 0, 0, 0) + "\0\0\1\0\1"s), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 0, 0xffff, 0, 0)), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 0, 0, 0, 0) + "x"), Errc::kTrailingData);
  const std::string rr_head = "\0\0\1\0\1\0\0\0\0"s;  // root, A, IN, ttl 0
  // rdlength past the end.
  EXPECT_EQ(parse_err(header(1, 0, 0, 1, 0, 0) + rr_head + "\0\5\1\2\3\4"s), Errc::kTruncated);
  // A with 5 bytes, AAAA with 4.
  EXPECT_EQ(parse_err(header(1, 0, 0, 1, 0, 0) + rr_head + "\0\5\1\2\3\4\5"s), Errc::kBadRdata);
  EXPECT_EQ(parse_err(header(1, 0, 0, 1, 0, 0) + "\0\0\x1c\0\1\0\0\0\0"s + "\0\4\1\2\3\4"s), Errc::kBadRdata);
  // A CNAME whose name runs past its rdlength, and one with bytes after the name.
  EXPECT_EQ(parse_err(header(1, 0, 0, 1, 0, 0) + "\0\0\5\0\1\0\0\0\0"s + "\0\2\1a\0"s), Errc::kTruncated);
  EXPECT_EQ(parse_err(header(1, 0, 0, 1, 0, 0) + "\0\0\5\0\1\0\0\0\0"s + "\0\4\1a\0x"s), Errc::kTrailingData);
  // SOA with a short fixed part.
  EXPECT_EQ(parse_err(header(1, 0, 0, 1, 0, 0) + "\0\0\6\0\1\0\0\0\0"s + "\0\4\0\0\1\2"s), Errc::kBadRdata);
  EXPECT_EQ(parse_err(std::string(65536, '\0')), Errc::kTooLarge);
}

TEST(Message, UnknownTypesStayOpaque) {
  // TYPE65280 with data that looks like a pointer: kept byte for byte.
  const std::string rr = "\1x\0"s + "\xff\x00\0\1"s + "\0\0\0\x10"s + "\0\3"s + "\xc0\x0c\x07"s;
  Message m;
  ASSERT_FALSE(parse(header(1, 0x8000, 0, 1, 0, 0) + rr, m));
  EXPECT_EQ(m.answers[0].type, 0xff00);
  EXPECT_EQ(m.answers[0].rdata, "\xc0\x0c\x07"s);
  EXPECT_FALSE(m.answers[0].address());
  std::string out;
  ASSERT_FALSE(build(m, out));
  EXPECT_EQ(out, header(1, 0x8000, 0, 1, 0, 0) + rr);
}

TEST(Message, EdnsPayloadLimit) {
  Message q;
  q.questions.push_back({name("a.example"), type::kA, kClassIn});
  EXPECT_EQ(q.udp_payload_limit(), 512);
  Record opt;
  opt.type = type::kOpt;
  opt.klass = 4096;
  q.additional.push_back(opt);
  EXPECT_EQ(q.udp_payload_limit(), 4096);
  q.additional[0].klass = 100;
  EXPECT_EQ(q.udp_payload_limit(), 512);
}

TEST(Message, ResponsesBuiltFromAQuery) {
  Message q;
  q.header.id = 0xbeef;
  q.header.flags = 0x0110;  // RD, CD
  q.questions.push_back({name("blocked.example"), type::kAaaa, kClassIn});
  Record opt;
  opt.type = type::kOpt;
  opt.klass = 4096;
  q.additional.push_back(opt);
  const Message r = make_response(q, rcode::kNxDomain);
  EXPECT_EQ(r.header.id, 0xbeef);
  EXPECT_TRUE(r.header.qr());
  EXPECT_TRUE(r.header.rd());
  EXPECT_TRUE(r.header.ra());
  EXPECT_EQ(r.header.flags & 0x0010, 0x0010);
  EXPECT_EQ(r.header.rcode(), rcode::kNxDomain);
  EXPECT_EQ(r.questions, q.questions);
  EXPECT_TRUE(r.answers.empty());
  ASSERT_NE(r.opt(), nullptr);
  EXPECT_EQ(r.opt()->klass, 1232);
  std::string wire;
  ASSERT_FALSE(build(r, wire));
  EXPECT_EQ(wire, header(0xbeef, 0x8193, 1, 0, 0, 1) + "\7blocked\7example\0"s + "\0\x1c\0\1"s +
                      "\0\0\x29\x04\xd0\0\0\0\0\0\0"s);

  Message full = make_response(q, rcode::kNoError);
  full.answers.push_back(Record::a_or_aaaa(name("blocked.example"), ip("2001:db8::7"), 60));
  const Message t = truncated(full);
  EXPECT_TRUE(t.header.tc());
  EXPECT_TRUE(t.answers.empty());
  EXPECT_EQ(t.questions, q.questions);
  EXPECT_EQ(t.additional.size(), 1u);
}

}  // namespace
}  // namespace airlock::dns
