#include "support/tls_server.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <stdexcept>
#include <thread>

namespace gateway::test {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

struct KeyDeleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct CertDeleter {
    void operator()(X509* c) const { X509_free(c); }
};
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;
using Cert = std::unique_ptr<X509, CertDeleter>;

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("test PKI: ") + what);
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    check(ext != nullptr, "extension");
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

Cert make_cert(EVP_PKEY* key, const std::string& common_name, X509* issuer, long serial) {
    Cert cert(X509_new());
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24 * 3600);
    X509_set_pubkey(cert.get(), key);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
                               0);
    X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
    return cert;
}

std::string pem(X509* cert) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
}

std::string pem(EVP_PKEY* key) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
}

}  // namespace

TestPki make_test_pki(const std::vector<std::string>& dns_names,
                      const std::vector<std::string>& ips) {
    Key ca_key(EVP_EC_gen("P-256"));
    Key server_key(EVP_EC_gen("P-256"));
    check(ca_key && server_key, "key generation");

    Cert ca = make_cert(ca_key.get(), "chain-gateway test CA", nullptr, 1);
    add_extension(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE");
    add_extension(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
    check(X509_sign(ca.get(), ca_key.get(), EVP_sha256()) > 0, "signing the CA");

    Cert server = make_cert(server_key.get(), "chain-gateway test server", ca.get(), 2);
    std::string san;
    for (const auto& d : dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
    for (const auto& ip : ips) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
    add_extension(server.get(), ca.get(), NID_subject_alt_name, san);
    add_extension(server.get(), ca.get(), NID_ext_key_usage, "serverAuth");
    check(X509_sign(server.get(), ca_key.get(), EVP_sha256()) > 0,
          "signing the server certificate");

    return TestPki{pem(ca.get()), pem(server.get()), pem(server_key.get())};
}

struct TlsServer::Impl {
    asio::io_context ioc;
    ssl::context ctx{ssl::context::tls_server};
    tcp::acceptor acceptor{ioc};
    std::thread thread;
    std::atomic<bool> stopping{false};
    std::atomic<std::size_t> answered{0};
    mutable std::mutex mu;
    std::string sni;

    static int on_servername(SSL* ssl, int*, void* arg) {
        auto* self = static_cast<Impl*>(arg);
        const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        std::lock_guard lock(self->mu);
        self->sni = name ? name : "";
        return SSL_TLSEXT_ERR_OK;
    }

    void serve() {
        for (;;) {
            tcp::socket socket(ioc);
            boost::system::error_code ec;
            acceptor.accept(socket, ec);
            if (ec || stopping) return;
            {
                std::lock_guard lock(mu);
                sni.clear();
            }
            ssl::stream<tcp::socket> stream(std::move(socket), ctx);
            stream.handshake(ssl::stream_base::server, ec);
            if (ec) continue;  // the client refused our certificate
            boost::beast::flat_buffer buffer;
            for (;;) {
                bhttp::request<bhttp::string_body> req;
                bhttp::read(stream, buffer, req, ec);
                if (ec) break;
                bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
                res.set(bhttp::field::content_type, "application/json");
                res.body() = R"({"jsonrpc":"2.0","id":1,"result":"0x1"})";
                res.keep_alive(req.keep_alive());
                res.prepare_payload();
                ++answered;  // before the write: the client may check as soon as it reads
                bhttp::write(stream, res, ec);
                if (ec || !req.keep_alive()) break;
            }
            stream.shutdown(ec);
        }
    }
};

TlsServer::TlsServer(const TestPki& pki) : impl_(std::make_unique<Impl>()) {
    impl_->ctx.use_certificate_chain(asio::buffer(pki.server_cert_pem));
    impl_->ctx.use_private_key(asio::buffer(pki.server_key_pem), ssl::context::pem);
    SSL_CTX_set_tlsext_servername_callback(impl_->ctx.native_handle(), &Impl::on_servername);
    SSL_CTX_set_tlsext_servername_arg(impl_->ctx.native_handle(), impl_.get());
    impl_->acceptor.open(tcp::v4());
    impl_->acceptor.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    impl_->acceptor.listen();
    impl_->thread = std::thread([impl = impl_.get()] { impl->serve(); });
}

TlsServer::~TlsServer() {
    impl_->stopping = true;
    ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
    impl_->thread.join();
}

std::uint16_t TlsServer::port() const {
    return impl_->acceptor.local_endpoint().port();
}

std::string TlsServer::last_sni() const {
    std::lock_guard lock(impl_->mu);
    return impl_->sni;
}

std::size_t TlsServer::answered() const {
    return impl_->answered;
}

}  // namespace gateway::test
