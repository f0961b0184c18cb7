#pragma once
// DNS wire format (RFC 1035, 3596, 6891): parse and build messages. Pure; errors are values.
//
// Reading follows compression pointers with strict rules: a pointer must point backwards (to an
// offset before the pointer itself, and past the header), a name is at most 255 bytes and a
// label at most 63, and every read is bounds-checked. Writing never compresses. Record data is
// kept as uncompressed wire bytes: names inside the RFC 1035 types that may be compressed (NS,
// CNAME, SOA, PTR, MX, ...) are expanded when read, so any parsed record can be written back
// into any message. Other types are kept opaque.
#include <common/ip_address.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace airlock::dns {

inline constexpr std::size_t kMaxNameBytes = 255;   // wire form, including length bytes
inline constexpr std::size_t kMaxLabelBytes = 63;
inline constexpr std::size_t kMaxMessageBytes = 65535;
inline constexpr std::size_t kHeaderBytes = 12;
inline constexpr std::uint16_t kClassIn = 1;
inline constexpr std::uint16_t kMinUdpPayload = 512;  // the UDP size without EDNS

namespace type {
inline constexpr std::uint16_t kA = 1, kNs = 2, kMd = 3, kMf = 4, kCname = 5, kSoa = 6, kMb = 7, kMg = 8,
                               kMr = 9, kPtr = 12, kMinfo = 14, kMx = 15, kTxt = 16, kAaaa = 28, kOpt = 41,
                               kSvcb = 64, kHttps = 65, kAny = 255;
}
namespace rcode {
inline constexpr std::uint8_t kNoError = 0, kFormErr = 1, kServFail = 2, kNxDomain = 3, kNotImp = 4,
                              kRefused = 5;
}

enum class Errc {
  kTruncated = 1,     // a read ran past the end of the message or of a record's data
  kTooLarge,          // longer than 65535 bytes
  kBadLabelType,      // a label length byte with the reserved 0x40/0x80 bits
  kLabelTooLong,      // more than 63 bytes (only on build: wire lengths cannot say more)
  kNameTooLong,       // more than 255 bytes, expanded
  kBadPointer,        // a compression pointer that does not point backwards into the body
  kBadRdata,          // record data of the wrong size or shape for its type
  kTrailingData,      // bytes after the last record, or after the names in a record's data
  kBadName,           // a text name that cannot be encoded (empty label, bad escape, ...)
  kTooManyRecords,    // more than 65535 in a section
};
const std::error_category& category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), category()}; }

// A domain name in uncompressed wire form ("\3api\7example\3com\0"). Case is kept as read;
// equality and matching are case-insensitive.
class Name {
 public:
  Name() : wire_(1, '\0') {}  // the root
  // From text ("api.example.com", trailing dot optional; "." is the root; "\DDD" and "\X"
  // escapes as in zone files). nullopt when empty labels, labels over 63 or names over 255.
  static std::optional<Name> from_text(std::string_view text);
  static Name from_wire_unchecked(std::string wire) { Name n; n.wire_ = std::move(wire); return n; }

  const std::string& wire() const noexcept { return wire_; }
  // Lower-case dotted text without the trailing dot ("." for the root). Bytes other than
  // letters, digits, '-' and '_' (a dot inside a label, spaces, binary) are written as \DDD,
  // so a label "a.b" never reads as two labels and never matches a host pattern.
  std::string text() const;
  bool is_root() const noexcept { return wire_.size() == 1; }

  friend bool operator==(const Name& a, const Name& b) noexcept;  // case-insensitive

 private:
  std::string wire_;
};

struct Header {
  std::uint16_t id = 0;
  std::uint16_t flags = 0;

  bool qr() const noexcept { return flags & 0x8000; }
  std::uint8_t opcode() const noexcept { return (flags >> 11) & 0xf; }
  bool aa() const noexcept { return flags & 0x0400; }
  bool tc() const noexcept { return flags & 0x0200; }
  bool rd() const noexcept { return flags & 0x0100; }
  bool ra() const noexcept { return flags & 0x0080; }
  std::uint8_t rcode() const noexcept { return flags & 0xf; }
  void set_qr(bool v) noexcept { set(0x8000, v); }
  void set_aa(bool v) noexcept { set(0x0400, v); }
  void set_tc(bool v) noexcept { set(0x0200, v); }
  void set_rd(bool v) noexcept { set(0x0100, v); }
  void set_ra(bool v) noexcept { set(0x0080, v); }
  void set_rcode(std::uint8_t r) noexcept { flags = static_cast<std::uint16_t>((flags & ~0xf) | (r & 0xf)); }
  friend bool operator==(const Header&, const Header&) = default;

 private:
  void set(std::uint16_t bit, bool v) noexcept {
    flags = static_cast<std::uint16_t>(v ? (flags | bit) : (flags & ~bit));
  }
};

struct Question {
  Name name;
  std::uint16_t type = type::kA;
  std::uint16_t klass = kClassIn;
  friend bool operator==(const Question&, const Question&) = default;
};

struct Record {
  Name name;
  std::uint16_t type = 0;
  std::uint16_t klass = kClassIn;
  std::uint32_t ttl = 0;
  std::string rdata;  // uncompressed wire bytes (see the file comment)

  // A (4 bytes) or AAAA (16 bytes) data as an address; nullopt for other types.
  std::optional<IpAddress> address() const;
  // CNAME data as a name; nullopt for other types.
  std::optional<Name> cname_target() const;

  static Record a_or_aaaa(Name name, const IpAddress& ip, std::uint32_t ttl);
  static Record cname(Name name, const Name& target, std::uint32_t ttl);
  friend bool operator==(const Record&, const Record&) = default;
};

struct Message {
  Header header;
  std::vector<Question> questions;
  std::vector<Record> answers;
  std::vector<Record> authority;
  std::vector<Record> additional;

  // The OPT pseudo-record in the additional section, if any.
  const Record* opt() const noexcept;
  // The UDP payload size the sender accepts: 512 without EDNS, else the OPT's class (a value
  // under 512 counts as 512, RFC 6891 §6.2.5).
  std::uint16_t udp_payload_limit() const noexcept;
  friend bool operator==(const Message&, const Message&) = default;
};

// Parses a whole message. Nothing after the last record is accepted.
std::error_code parse(std::string_view wire, Message& out);
// Parses only the header and the question section (enough to answer a query that carries
// records this codec rejects).
std::error_code parse_question(std::string_view wire, Header& header, std::optional<Question>& question);
// Writes `message` without compression. kTooLarge when over 65535 bytes, kTooManyRecords.
std::error_code build(const Message& message, std::string& out);

// A response to `query` with no records: same id, opcode, RD and CD, the query's questions,
// QR and RA set, `rcode`; with an OPT advertising `udp_size` when the query had one.
Message make_response(const Message& query, std::uint8_t rcode, std::uint16_t udp_size = 1232);

// `response` cut down for a UDP reply that does not fit (RFC 1035 §4.2.1, RFC 2181 §9): the header
// with TC set, the questions and the OPT record, no answers.
Message truncated(const Message& response);

}  // namespace airlock::dns

template <>
struct std::is_error_code_enum<airlock::dns::Errc> : std::true_type {};
