#include "tls/contexts.hpp"

#include "tls/certificate_authority.hpp"
#include "tls/test_support.hpp"

#include <airlock/errors.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <openssl/err.h>

namespace airlock::tls {
namespace {

namespace fs = std::filesystem;

struct Fixture : ::testing::Test {
  fs::path dir;
  Fixture() {
    char tmpl[] = "/tmp/airlock-ctx-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Fixture() override { fs::remove_all(dir); }
  std::string write_ca(const char* name, const LeafMinter& minter) {
    fs::path p = dir / name;
    std::ofstream(p) << minter.ca().certificate_pem();
    return p;
  }
};

// A TLS server for `name` whose certificate comes from `minter`, answering ALPN like the guest side.
SslPtr server_for(LeafMinter& minter, SSL_CTX* ctx, const std::string& name) {
  auto leaf = minter.leaf_for(name);
  return new_guest_session(ctx, leaf.get(), minter.leaf_key());
}

bool connects(const UpstreamVerifier& verifier, LeafMinter& server_ca, const std::string& server_name,
              const std::string& sni, const IpAddress& ip = IpAddress::v4(203, 0, 113, 7)) {
  SslCtxPtr server_ctx = make_guest_context();
  SslPtr server = server_for(server_ca, server_ctx.get(), server_name);
  SslPtr client = verifier.new_session(sni, ip);
  if (!client || !server) return false;
  bool ok = testing::handshake(client.get(), server.get());
  return ok && SSL_get_verify_result(client.get()) == X509_V_OK;
}

TEST_F(Fixture, VerifiesAgainstAConfiguredGlobalCa) {
  LeafMinter trusted(CertificateAuthority::generate());
  LeafMinter unknown(CertificateAuthority::generate());
  UpstreamVerifier verifier({UpstreamCa{std::nullopt, write_ca("ca.pem", trusted)}});
  EXPECT_TRUE(connects(verifier, trusted, "api.example.com", "api.example.com"));
  EXPECT_FALSE(connects(verifier, trusted, "other.example.com", "api.example.com"));  // wrong name
  EXPECT_FALSE(connects(verifier, unknown, "api.example.com", "api.example.com"));    // untrusted issuer
}

TEST_F(Fixture, SendsTheSni) {
  LeafMinter trusted(CertificateAuthority::generate());
  UpstreamVerifier verifier({UpstreamCa{std::nullopt, write_ca("ca.pem", trusted)}});
  SslCtxPtr server_ctx = make_guest_context();
  SslPtr server = server_for(trusted, server_ctx.get(), "api.example.com");
  SslPtr client = verifier.new_session("api.example.com", IpAddress::v4(203, 0, 113, 7));
  ASSERT_TRUE(testing::handshake(client.get(), server.get()));
  const char* sent = SSL_get_servername(server.get(), TLSEXT_NAMETYPE_host_name);
  ASSERT_NE(sent, nullptr);
  EXPECT_STREQ(sent, "api.example.com");
  // The upstream offered http/1.1 only, and the server side picked it.
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(client.get(), &proto, &len);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(proto), len), "http/1.1");
}

TEST_F(Fixture, PerPatternCaOnlyForMatchingHosts) {
  LeafMinter internal(CertificateAuthority::generate());
  UpstreamVerifier verifier({UpstreamCa{HostPattern::parse("*.internal.test"), write_ca("int.pem", internal)}});
  EXPECT_TRUE(connects(verifier, internal, "api.internal.test", "api.internal.test"));
  EXPECT_FALSE(connects(verifier, internal, "api.example.com", "api.example.com"));
  EXPECT_NE(verifier.context_for("api.internal.test"), verifier.context_for("api.example.com"));
  EXPECT_EQ(verifier.context_for(""), verifier.context_for("api.example.com"));
}

TEST_F(Fixture, NoSniVerifiesTheDestinationIp) {
  LeafMinter trusted(CertificateAuthority::generate());
  UpstreamVerifier verifier({UpstreamCa{std::nullopt, write_ca("ca.pem", trusted)}});
  EXPECT_TRUE(connects(verifier, trusted, "203.0.113.7", "", IpAddress::v4(203, 0, 113, 7)));
  EXPECT_FALSE(connects(verifier, trusted, "203.0.113.7", "", IpAddress::v4(203, 0, 113, 8)));
  EXPECT_FALSE(connects(verifier, trusted, "api.example.com", "", IpAddress::v4(203, 0, 113, 7)));
}

TEST_F(Fixture, ResumesOnlyVerifiedSessionsForTheSameNameAndAddress) {
  LeafMinter trusted(CertificateAuthority::generate());
  UpstreamVerifier verifier({UpstreamCa{std::nullopt, write_ca("ca.pem", trusted)}});
  // A server that issues tickets (the guest context does not).
  SslCtxPtr server_ctx(SSL_CTX_new(TLS_server_method()));
  auto leaf = trusted.leaf_for("api.example.com");
  SSL_CTX_use_certificate(server_ctx.get(), leaf.get());
  SSL_CTX_use_PrivateKey(server_ctx.get(), trusted.leaf_key());
  auto connect = [&](const char* sni, const IpAddress& ip, std::uint16_t port) {
    SslPtr server(SSL_new(server_ctx.get()));
    SSL_set_accept_state(server.get());
    SslPtr client = verifier.new_session(sni, ip, port);
    bool ok = testing::handshake(client.get(), server.get());
    char byte;
    SSL_read(client.get(), &byte, 1);  // takes in the TLS 1.3 tickets sent after the handshake
    ERR_clear_error();
    return std::make_pair(ok && SSL_get_verify_result(client.get()) == X509_V_OK, SSL_session_reused(client.get()) == 1);
  };
  auto ip = IpAddress::v4(203, 0, 113, 7);
  EXPECT_EQ(connect("api.example.com", ip, 443), std::make_pair(true, false));
  EXPECT_EQ(verifier.cached_sessions(), 1u);
  EXPECT_EQ(connect("api.example.com", ip, 443), std::make_pair(true, true));
  EXPECT_EQ(connect("api.example.com", IpAddress::v4(203, 0, 113, 8), 443), std::make_pair(true, false));
  EXPECT_EQ(connect("api.example.com", ip, 8443), std::make_pair(true, false));
  // Another name never resumes a session verified for the first one (and fails verification).
  EXPECT_EQ(connect("www.example.com", ip, 443).first, false);
}

TEST_F(Fixture, NoSystemRootsMeansNothingVerifies) {
  LeafMinter some(CertificateAuthority::generate());
  UpstreamVerifier verifier({}, "");
  EXPECT_FALSE(connects(verifier, some, "api.example.com", "api.example.com"));
}

TEST_F(Fixture, SystemRootsAreReadAtFirstUse) {
  LeafMinter system(CertificateAuthority::generate());
  LeafMinter other(CertificateAuthority::generate());
  UpstreamVerifier verifier({}, dir.string());
  // The bundle appears after construction: only a verifier that reads it lazily trusts it.
  std::ofstream(dir / "ca-certificates.crt") << system.ca().certificate_pem();
  EXPECT_TRUE(connects(verifier, system, "api.example.com", "api.example.com"));
  EXPECT_FALSE(connects(verifier, other, "api.example.com", "api.example.com"));
}

TEST_F(Fixture, BadCaFilesAreConfigErrors) {
  EXPECT_THROW(UpstreamVerifier({UpstreamCa{std::nullopt, (dir / "missing.pem").string()}}), ConfigError);
  std::ofstream(dir / "junk.pem") << "not a certificate\n";
  EXPECT_THROW(UpstreamVerifier({UpstreamCa{std::nullopt, (dir / "junk.pem").string()}}), ConfigError);
}

TEST(GuestContext, AnswersAlpnWithTheUpstreamsProtocol) {
  LeafMinter minter(CertificateAuthority::generate());
  // The protocol chosen, or "FAILED" when the handshake fails.
  auto alpn_after = [&](std::string offer, const char* upstream) {
    SslCtxPtr server_ctx = make_guest_context();
    SslPtr server = server_for(minter, server_ctx.get(), "a.example");
    if (upstream != nullptr) answer_guest_alpn(server.get(), upstream);
    SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
    SslPtr client(SSL_new(client_ctx.get()));
    SSL_set_connect_state(client.get());
    if (!offer.empty())
      SSL_set_alpn_protos(client.get(), reinterpret_cast<const unsigned char*>(offer.data()), static_cast<unsigned>(offer.size()));
    if (!testing::handshake(client.get(), server.get())) return std::string("FAILED");
    return negotiated_alpn(client.get());
  };
  const std::string both("\x02h2\x08http/1.1", 12), both_rev("\x08http/1.1\x02h2", 12), h2("\x02h2", 3);
  // Nothing set: HTTP/1.1 as before.
  EXPECT_EQ(alpn_after(both, nullptr), "http/1.1");
  EXPECT_EQ(alpn_after(both_rev, nullptr), "http/1.1");
  EXPECT_EQ(alpn_after("", nullptr), "");
  // The upstream speaks h2: so does the guest.
  EXPECT_EQ(alpn_after(both, "h2"), "h2");
  EXPECT_EQ(alpn_after(both_rev, "h2"), "h2");
  EXPECT_EQ(alpn_after(h2, "h2"), "h2");
  // The upstream speaks HTTP/1.1: an h2-only guest fails its handshake (an alert, never a hang).
  EXPECT_EQ(alpn_after(both, "http/1.1"), "http/1.1");
  EXPECT_EQ(alpn_after(h2, "http/1.1"), "FAILED");
  EXPECT_EQ(alpn_after(h2, nullptr), "FAILED");
  // Neither protocol offered: no ALPN answer, as before.
  EXPECT_EQ(alpn_after(std::string("\x06spdy/3", 7), "h2"), "");
}

TEST(UpstreamAlpn, OffersWhatTheGuestOfferedAndHttp11) {
  using V = std::vector<std::string>;
  EXPECT_EQ(upstream_alpn_offer({}), V{"http/1.1"});
  EXPECT_EQ(upstream_alpn_offer({"h2", "http/1.1"}), (V{"h2", "http/1.1"}));
  EXPECT_EQ(upstream_alpn_offer({"http/1.1", "h2"}), (V{"http/1.1", "h2"}));
  EXPECT_EQ(upstream_alpn_offer({"h2"}), (V{"h2", "http/1.1"}));
  EXPECT_EQ(upstream_alpn_offer({"h3", "spdy/3", "h2", "h2"}), (V{"h2", "http/1.1"}));
}

TEST(GuestContext, RefusesTls11) {
  LeafMinter minter(CertificateAuthority::generate());
  SslCtxPtr server_ctx = make_guest_context();
  SslPtr server = server_for(minter, server_ctx.get(), "a.example");
  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(client_ctx.get(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(client_ctx.get(), TLS1_1_VERSION);
  SSL_CTX_set_security_level(client_ctx.get(), 0);
  SslPtr client(SSL_new(client_ctx.get()));
  SSL_set_connect_state(client.get());
  EXPECT_FALSE(testing::handshake(client.get(), server.get()));
}

}  // namespace
}  // namespace airlock::tls
