#include "support/jwt_issuer.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <stdexcept>

namespace gateway::test {

namespace json = boost::json;

namespace {

void check(bool ok, const char* what) {
    if (!ok) throw std::runtime_error(std::string("jwt issuer: ") + what);
}

std::string big_endian(const BIGNUM* bn, int width = 0) {
    const int size = width ? width : BN_num_bytes(bn);
    std::string out(static_cast<std::size_t>(size), '\0');
    check(BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), size) == size, "bn2bin");
    return out;
}

std::string bn_param(EVP_PKEY* key, const char* name, int width = 0) {
    BIGNUM* bn = nullptr;
    check(EVP_PKEY_get_bn_param(key, name, &bn) == 1, name);
    std::string out = big_endian(bn, width);
    BN_free(bn);
    return out;
}

std::string json_text(const std::string& claims_json) {
    // Parsed and written again, so a test's formatting does not matter and bad JSON fails early.
    return json::serialize(json::parse(claims_json));
}

// Keys made once with `openssl genpkey`, for tests only: generating RSA-2048 keys in every test
// process (each test runs in one of its own) took seconds under the sanitizers. A process's first
// keys of a type are these, in turn; more are generated.
// RSA keys, PEM (PKCS#8).
constexpr const char* kRsaKeys[] = {
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDU7kTMViqqsatE\n"
    "vxr4bF/GhoKnR7db0hSBQi03dBPqsGXsa+H7yW150Jr+IaUYzAdi1kUHZkBGpK95\n"
    "2pcOxTO4VLshKYZNNGbGzjAw9VENmhbhdKmvjNwwUQKlMfsnTr00iukIPkD/fuol\n"
    "h9H8FANubBnfJ7N+ljGio77Zh9WFVnqzryyswNFFTnSlgZvJdHo0yODMKMR/0an4\n"
    "vh6PKhmp+0O5XpXumh0DW4cHcxT6WwkeTmrsoU3G2vchjKrVzq9AF0JXhMTH29bb\n"
    "q6O0IkkToxOZ1YSEougjaAuit+NqAX5H8R7+KcJar0s7eTaG9oyuvBRurZtZWIOr\n"
    "YpZDpmvnAgMBAAECggEAEvGBuGYgFKCK2qpf1WMa4DgeTpCQTQBzJ47CJBFVJkd8\n"
    "QdzVNYfVkAVRjLNkk0CvlYj3ijF8HWzQWbhrQPqlX8xV+5zMoHi9fglg+zIP/HRN\n"
    "fdBZuk7/VeMXJ6g7LmOQbKjBE6UqNjDN1vnu4gzLw1qlsJdBHk1xbAVCWOr/QYXn\n"
    "Bi2D/7knQAnmcQc+6S/q4wpSzex1HnSBGb+MTpGM5G6z7bQgpUY7KV0Wo7C7UVoH\n"
    "fgpv/cblCIczZ/V/Z7LO2SKoW3gectNzREt2RPUZ1riVi0QYRIr71RkHx5NZEa50\n"
    "E7fzCtwmld++7uo5oB24g70mt2Ms8ChqF+h2WUI/uQKBgQDuqIbxxP92kimSGNqz\n"
    "T7U93Uo9OF+o6Gk8Klv4YfnF6vAsQszlnnTvaRmkFCPp4QrX20OlkfmsdfHpNgxF\n"
    "z7X3SzFlzJDdCnNUby09Vb+Q/W1LXfNjGuVuFuXrCXlyGJVDn1VCQhU8sYWA0SwZ\n"
    "ZMr8n8eux9D7D8EhOx2waReaDwKBgQDkZymgmv/E8kabP14MCxCdOXmYsw7O7v8/\n"
    "Rozpg4nKGTPHEs9RocB66zBjshGtGp1/ZDHpokWujrMB+F7bCY5MsbhJS4IUcI2s\n"
    "NmmE7njmrhDjfBz8hmwfWvRKgNN08Gi/xvgqU6kmXAamzLCgmR7/5DQyK0pKp3L5\n"
    "fI+HT+rIqQKBgQC7CuOv6igZIpZoBQiqTccK9Drx3hPCyltnpv8rnIXoIqgW2EfD\n"
    "kjutQt6wpIQ9EX2xDQxoYA6gplNw5kYaFJ9Vb94IHZpPUphuzS9Uiba4iJY24iwV\n"
    "OQglDtclLOi8jh21wNNOOYJxbePmwIjiYgdglE0oYzwa+A7x32X2U3cG6wKBgQDP\n"
    "KGZQHeVXiurRSlMRl0OVZpjMD7OhqpFloaaS8VQbMmqM55mUD6JVmlVERzDTEW3C\n"
    "Km0+24hZ/2GKquvVvMAM/bAJAmxT/5XvmVZxVB3iFASLX3mm7IDKm6Mwo9GmoZpQ\n"
    "PrW9Ji4n9ZWu2b5lmxvLuf5BdpQmS+PzNq+zaZ+oKQKBgEsq6H13XcJSyHESwUnN\n"
    "duomCVk6bKyAf/VuD/vgrOPsmG+ldM2XFKdBNdmVqull1M1E4Em0kUipKiuN78TG\n"
    "ZuOmvOABN6U4O5/FjxpYKERJzAUQdZ5mdjb4++O5vdJ4hS7RY6mBbiYvKMj8m/sc\n"
    "1IBmMgbJosQic2EDPl83jwJH\n"
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC+enE5/mGxKfg0\n"
    "9QEquVjhvib2OpTP+o65vDuVYmWXM13kyj2Q/kTf2I8FJTZyKtYGkkndqYjpQlL1\n"
    "mljed2zecxSRUOd2TeOAzh56BCTOrpx4BcQ5ONCS+MxLXAEPnmmNqocFWAD2dr1m\n"
    "9/zBPEHBhilnMwz1UaWnqRSUWLMWakXvwLmIColZiu2h8l9CNcRyBBljdGZx61Af\n"
    "hLPpd90aWu2ToMSk38b2BqzFwANpGv+6CO+PQd222wuHKeTenoSgXH+DiPOmaoeL\n"
    "6f7RECaFOuS9Lu4w/0ZxEOkjsk0ER8KSANkZtNDxhQXyL/EU3J6op/6G/SFDgmNP\n"
    "UykMvx5HAgMBAAECggEADC5KVVoWJz022TQdyfymWXFOjop6f75XKDuIV+o98uhf\n"
    "BcWFIGOSRfpUUxDpJW3l1++894bi8X/DTF99dWSPur4DP7O7yY37kX4c5tKjA/CY\n"
    "ovhDbyFZ/TwZ3GvayYPo3h1cmxPgo+I+BHqxWC4hSl3pAed62alJ/anLXh05/qHa\n"
    "5C0yeJkA2ZU6MjeNSfQCN0TXTip/0lQDtLB4iSg2broWCphuZlBzPoDAEsbQ2bx0\n"
    "s8vdyyNJxbXZYShXJIl76vKKANSEvSxVZHFfa+98dzvnDuWejoP57iJIuZrFAiBC\n"
    "cz7OreVKsEFg2Nofkc+k28nvzQyEfpwuhKqMP3hAKQKBgQDpK2jgZuuzhW2hgF3J\n"
    "m2t1sOTA69B7O07l25zixSYgzfGfe0x9Ep2rPyPSkgNstPfTs5Y6B32jG2NDLpTh\n"
    "AJgdnf0g+4TOjy+N95Egcm4oZf75xqu0q+PEfO26L0/C8Bv8G7WtKAFsFyToUvHZ\n"
    "Klc3OlKQ4uzE/GcBid5sG8IvAwKBgQDRIPCjkmakULg30wru3QOX6koB+RZzYOQA\n"
    "q504dNent5SwNteMPpVUpZmUC9snMWaFIVnfjizevPbz1j9bpsR3Oybua8OLi9V7\n"
    "JphIBl+Ccgpch2v8PsSet5dAEJM/Ey1jqNrYGE6hx9z2sqs5NeKD3o5iCTLHOg4O\n"
    "1Fs14ppebQKBgGhsHm3Q6eHd8XkQafAuAHQWonuboCRwLSdXsO0F6ctrL7iCmYCx\n"
    "45abkkltRsdaTFqs5KxcSnHPhCbEJ7yUbYtmA8TPn2x6R4vGwWHMnXTOKOBnjuI8\n"
    "0KZgZH6rTYc5zO6c4kIH1os32jmJW/Iruh9rqSpl1i9p8h+IROoZjF9NAoGACkgK\n"
    "TKBn93AYfnYbtX6cLJ3SIaKzXdzHmNjXE+16pL47yyYHFtgE03KIyGSE07p0BduL\n"
    "5ZfB0PmNUpOX7dOXGR2JXnNh27x2NGXDWtclXu5oYAAwaOhVFlCEWRv3gURaGOo2\n"
    "SCV5yC5hSKekD1380urgKSW2n2DVTBlYmp+XY0kCgYEAiuUOr6UqUW204X9+qBMJ\n"
    "oZnmknpLKTzf2iN722P+cmOfgS1QU8rQ8XoS2Dshor7BHFJNvlSgWzsnMjL8rB3c\n"
    "pET119tn2rjaKaS3Kv/yc+hjLJCk5grXnZphfuYdVaYtOQP2pzcMu12q1OSoWpbt\n"
    "nYSHQ07HkceJMgy/Kb0D6YQ=\n"
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC/LQAobN5v4sPv\n"
    "X2I8oT/qav+DQVv03MrFHTL01s/Noa9vpW92rfWiPcMzVE2upBuzQx/n8/uXcUev\n"
    "QwN5OEKQx1ATuJX5fjBAuuUm/NQDPRZ9UxLMhSlNU26yBKDmVLOggR7RimOBTbUZ\n"
    "9z9Tx7e2c6U/b/CIebetGB+P28Nr2lBMctZr53dTsfLCEF6Rvh+7xOq323JfRgtJ\n"
    "Dbkq5DRFXVFDtxfTSjwKac9PA8HPV35KqF5GMY743CdmNGWRJmTGRrTbAp1CpDHS\n"
    "Q81cW8hjyKk9aAVXbNuIESHdpLq0FIzqjyQXMZRNIoXRmrGotMktzZTjNWA3X5tq\n"
    "t6HNm4ChAgMBAAECggEAIwzNlBvNtma1dJwgxyvrK3/dg8OGaADY/kWps4D0zWcg\n"
    "4o/KvVAMkmfPc4g3y9aTq4yZe23ciToAIg5fwyhA8AlS0aLMgFcV4rBBViIRftyC\n"
    "1IxYDH43gdFToLi/hSsvWbSCoXlFYA4Or4mIp0QdFwrh150e1O638bjUBIyOqiWl\n"
    "sJIWaf7OS2J/XNMnnlblO03shCmRJx63dVeNaymI565+l0OX9umG0WhgaxTilj1P\n"
    "uRRAlrYDtj46AWxQC9MKGFilWVwXZRbqi8QlmnfTeYp+lNkeMFZiZoJAUYduDtPf\n"
    "0kudsBEhJYXfDMYmlMEUnSVlZLkXiCLb3kKwMuQGdwKBgQDt6Ifd/x3PKWpyg1ct\n"
    "nmx2KqyPqoQJ3hSEEo6Pb1WY3r6BWHV0FkC56WqkeUq0TbuD23LED+ayvzoeobQb\n"
    "Qjfpnc2j77F6Qd2fP6m/HHfd2lvaZjIkVjbqLtbIiKXrrT0ydU/n0/pxZnUrhCz9\n"
    "wNifM5HF4fBfa4MujbCg30w52wKBgQDNtrTSb1b44M+FzIjWwJ8bhEQGmBKNQNIb\n"
    "wXltG5KccLM9GFiiZWKdbwZvsjXToFsSJm3jhrLH777l+NUDc/LW/84+GRq6Ft+z\n"
    "Kqr8ZJHbqFRrvXKOnbi+p1TxOdCCYlyeN69pLpWnr7J27zME2/JV4kkiclb9jZCu\n"
    "2E6SG2YOMwKBgQDNKS2hn5NRRuHpBqJzUJ8v9/T/n4hmCgGfM3GE9/nU7qFSYbpH\n"
    "9bizmjrAw2hMvIvsVZ5OvXewxX+VUtVCfIRDDjZ8HQPr7kj0P65ehGpKAzgayu6K\n"
    "r16D7QiDvnN3HdocXVYfEYpzqGt6r20tFtS31XzsLL9hShHCX6Xl1Sqi6QKBgBIC\n"
    "AXg+aOWmgGQdEImEGSmGfZH6M/2LhBkL6b5EYKQzNW2OuQuWRnizpGOYvR+GdRJ0\n"
    "rL/zJalc8mAdVUBVIRfzErHa7r0FjZWYkZlAkIgjByjbT7DuW6LM8SGgxwDy7Vqo\n"
    "U0Go407nkX7Z16SAQImGIpLSYY0WnGjB5LbjkR6DAoGARNESaIk+R6aULmcJwly8\n"
    "5t6ptXIRM9n/sOqwitjjxJiPJgPYk7kAXSki1Ba/9L9uCVc5CoCOpURDctPVHjrZ\n"
    "o+qNbinEHqV3kpyS4gd5yKXUWaP6X5GXecWNWqQ9JtH/yLxse3bnAr+H6Hog9+qR\n"
    "KGgJJvOknQvJyXSPt/MIE98=\n"
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC3cjCzd+JHBJNK\n"
    "yotyZuM/Iy5CH1MMTyoHM6kfwad6bVZqCg2c+xpIVND/LVMTsDb4tYnJes/IpHoW\n"
    "stc+zUPJaXKNORNd29ddaBrwWfuJ04xDm2jTFLAsNl9ahnfVtgb/sMaY+PFyelGy\n"
    "sQFv0yZrcJgNrUgpb0Kw2wEvzjHumWuBCIaVO/gLkZz3xnRGFFzHccqd3Z6FOVO3\n"
    "bjxoGEoxLe0+O5Dpywz6p0BTxCcVzhkiNuj/j53q4y4OM5Q8Ozj7nwVYl/7l0QbL\n"
    "dFSzCI2qLlrlkqhenD9iwcVNbJJI/jEh8T8Syw3m1quj0oU6BxtWk42VmNJj2fEh\n"
    "jv2qWvJTAgMBAAECggEACfQkOFi06m2RIGnFDzwN8IsUI3pXoz9YZHOlJZf4Ymg0\n"
    "XCSXgIEPeAVCIdZvv428LdqL02bah2SFS14A1+ODXhZepNMH/fvDv8m6THhVcbEM\n"
    "105DbdCdjoiUu/C359ysnIsW+43ma/O/Ixb/oPWwC/xcA8H3PGhREg+QDOv/QZbx\n"
    "3QcSLkQ9IXz7+PF5vz0zDdHCtGUxFwVp5WKhoGNwsO3PgCvzsN6/qZVeIoSn99ww\n"
    "qDsgTCUb/BRtmen1LSIhMLzhnwAbUGSfpBT9Gn28ZHIhzm4Q1sPOH5xjSvCYlXLr\n"
    "TQQMY2094SGaSt9w3Ii3zU/N6T4oDmtWRbmRQKn6QQKBgQDwlcEUvg/lsASXgFvE\n"
    "j9UiPMfDnYmcCWJC8yW5n2a7a2FL9xicY9tli0v/WY9CpKZq+0BhfHdicbPd4AfR\n"
    "QgNvA3BnygOqCAQxvkCtupAxK4e+dee7sF98l1Z/ZDFYS4o7jLlJGPpPYLjyjJdc\n"
    "bkELHqnn183nSBB/GThqmpFNqQKBgQDDMzPrjZEwwenttvPZ/bznZASywrYZN7NK\n"
    "u+TyS+2qGkfZAAyA/Y21O7ybHkoFzwUWXWdfiZ3WmbHthy7+psIh4UimfgqEoeh5\n"
    "bZ/XYs/7lO4m6Au7qrxD2DJVzCet5G+V+8fXfUwvz5WOuc5T/g2+AKblTliAzvG1\n"
    "6mbGKJulmwKBgQDHPR3TkbsUmnqTBOf6lqsJWZCN/W8y28qWa0q4uLuZRsoi4RVu\n"
    "nnvZUkyzwXWU2UpAmqaslSlBS6yLeLbAo4y4aP6z1WbHbzAaCdcCiNhVABnAr2Aj\n"
    "3WKWibZGdbEv0A9AVcA0Ow1Ao3dG1wuarmwLS2+l4uBQQyv2Neq0ziC7UQKBgEo/\n"
    "T6BpWLCTEce5r0dbnF7nTGIybdFpvmjOz2baOqxZErsXqanmx+AHuNXHz6Al/mlj\n"
    "Xc6ZKdBW5bbTlKyIAY+hgWDS0G1iqGqHqCTlEPdAztU9rjjT2Ih106+O2AjsuwTx\n"
    "oDH3FuOYsep4AmMwX0nGNbVC96cHECmB31XAXHPBAoGAcZaXTbPq4SkT5MEemIEF\n"
    "Tlb89yyszJyitLsJWSFb4aLvPWiAgwE0e/04m9ziDe5Vza4IlfuN+e2rVzA76d2x\n"
    "DuGZIoYyBbq7halzIGY0FolEMn+vaXGu/LJue7TPxgilCirjn7T5zMHHTIVV/cRo\n"
    "zm9Q8/fWnYRunI/M66wkpcY=\n"
    "-----END PRIVATE KEY-----\n",
};
// EC keys, PEM (PKCS#8).
constexpr const char* kEcKeys[] = {
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg2XImvqr0/pRYv2oI\n"
    "5i3T+Adzui5IQx62OZ9bW7aRkH+hRANCAASY86cSApcw56Uh2axyrlDs5T5cDnzi\n"
    "+WqrgbzMRCb8FRvIgQwC1Dcl1omI4qSJXz1qy2asgec2kM32s+vQWCw5\n"
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgah5jqnmhEhDIT26Q\n"
    "4QJEfs6RZ0VGduHAJ1KVVlEDr2qhRANCAARY1Mjro9VYN47P3jCWV7gtsBeF4U9+\n"
    "3GGDuhqKh1N472ruqjshmqsalWqdmbDOc/bNs47XDTU6qBr9zlLb0mmU\n"
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnPZGzzshCEHzkwfY\n"
    "F1EaQFqbYO+00JDiQAtAzNfXtROhRANCAARbq6987imp1k1okPv4UDfqfwI1j+UR\n"
    "Fk5j8nBuuuHnb/HrLfXDTE3OJfdqEwSpELxxy2KMAs7rhgegqyOEwZGh\n"
    "-----END PRIVATE KEY-----\n",
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgG27dAAfcojfA86Fp\n"
    "DtJKuHRiizOP+bUg+UjOlziakMyhRANCAARiDvtEIQc7OO/ek51F2OecwhHFGTXZ\n"
    "hvPXlbp8luus5TNwIGlGOiU7uOUvlgxrKYmGtvbl21loawgL7Qzinacd\n"
    "-----END PRIVATE KEY-----\n",
};

// The next fixed key of a type, while there is one; null after.
EVP_PKEY* fixed_key(JwtKey::Type type) {
    static std::atomic<std::size_t> next_rsa{0}, next_ec{0};
    const bool rsa = type == JwtKey::Type::rsa;
    const std::size_t i = (rsa ? next_rsa : next_ec)++;
    if (i >= std::size(kRsaKeys)) return nullptr;
    const char* pem = rsa ? kRsaKeys[i] : kEcKeys[i];
    BIO* bio = BIO_new_mem_buf(pem, -1);
    check(bio != nullptr, "BIO");
    EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    check(key != nullptr, "a fixed test key");
    return key;
}

}  // namespace

std::string base64url(std::string_view bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    while (!out.empty() && out.back() == '=') out.pop_back();
    for (char& c : out) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    return out;
}

std::string base64url_decode(std::string_view text) {
    std::string s(text);
    for (char& c : s) {
        if (c == '-') c = '+';
        if (c == '_') c = '/';
    }
    while (s.size() % 4) s += '=';
    std::string out(s.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(s.data()),
                                  static_cast<int>(s.size()));
    check(n >= 0, "base64 decode");
    // EVP_DecodeBlock counts the bytes padding stands for.
    out.resize(static_cast<std::size_t>(n) -
               static_cast<std::size_t>(
                   std::count(s.end() - std::min<std::size_t>(s.size(), 2), s.end(), '=')));
    return out;
}

struct JwtKey::Impl {
    EVP_PKEY* key = nullptr;
    ~Impl() { EVP_PKEY_free(key); }
};

JwtKey::JwtKey(Type type, std::string kid, unsigned rsa_bits)
    : impl_(std::make_unique<Impl>()), kid_(std::move(kid)), type_(type) {
    if (type == Type::ec || rsa_bits == 2048) impl_->key = fixed_key(type);
    if (!impl_->key)
        impl_->key = type == Type::rsa
                         ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{rsa_bits})
                         : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    check(impl_->key != nullptr, "keygen");
}

JwtKey::~JwtKey() = default;

std::string JwtKey::alg() const {
    return type_ == Type::rsa ? "RS256" : "ES256";
}

std::string JwtKey::jwk() const {
    json::object o{{"kid", kid_}, {"use", "sig"}, {"alg", alg()}};
    if (type_ == Type::rsa) {
        o["kty"] = "RSA";
        o["n"] = base64url(bn_param(impl_->key, OSSL_PKEY_PARAM_RSA_N));
        o["e"] = base64url(bn_param(impl_->key, OSSL_PKEY_PARAM_RSA_E));
    } else {
        o["kty"] = "EC";
        o["crv"] = "P-256";
        // The public point, uncompressed: 0x04 || x || y.
        unsigned char point[65];
        std::size_t length = 0;
        check(EVP_PKEY_get_octet_string_param(impl_->key, OSSL_PKEY_PARAM_PUB_KEY, point,
                                              sizeof point, &length) == 1 &&
                  length == 65 && point[0] == 0x04,
              "EC point");
        o["x"] = base64url(std::string_view(reinterpret_cast<const char*>(point) + 1, 32));
        o["y"] = base64url(std::string_view(reinterpret_cast<const char*>(point) + 33, 32));
    }
    return json::serialize(o);
}

std::string JwtKey::sign(const std::string& claims_json, const json::object& header) const {
    json::object h{{"alg", alg()}, {"typ", "JWT"}, {"kid", kid_}};
    for (const auto& [name, value] : header) {
        if (value.is_null())
            h.erase(name);
        else
            h[name] = value;
    }
    const std::string signed_part =
        base64url(json::serialize(h)) + "." + base64url(json_text(claims_json));

    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    check(ctx && EVP_DigestSignInit_ex(ctx, nullptr, "SHA256", nullptr, nullptr, impl_->key,
                                       nullptr) == 1,
          "sign init");
    std::size_t length = 0;
    check(EVP_DigestSign(ctx, nullptr, &length,
                         reinterpret_cast<const unsigned char*>(signed_part.data()),
                         signed_part.size()) == 1,
          "sign size");
    std::string signature(length, '\0');
    check(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &length,
                         reinterpret_cast<const unsigned char*>(signed_part.data()),
                         signed_part.size()) == 1,
          "sign");
    EVP_MD_CTX_free(ctx);
    signature.resize(length);

    if (type_ == Type::ec) {
        // OpenSSL writes a DER ECDSA-Sig-Value; JOSE wants r || s, 32 bytes each.
        const auto* p = reinterpret_cast<const unsigned char*>(signature.data());
        ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(signature.size()));
        check(sig != nullptr, "der");
        signature = big_endian(ECDSA_SIG_get0_r(sig), 32) + big_endian(ECDSA_SIG_get0_s(sig), 32);
        ECDSA_SIG_free(sig);
    }
    return signed_part + "." + base64url(signature);
}

std::string jwks(const std::vector<const JwtKey*>& keys) {
    json::array list;
    for (const JwtKey* k : keys) list.push_back(json::parse(k->jwk()));
    return json::serialize(json::object{{"keys", std::move(list)}});
}

std::string unsigned_token(const std::string& claims_json, const std::string& kid) {
    const json::object h{{"alg", "none"}, {"typ", "JWT"}, {"kid", kid}};
    return base64url(json::serialize(h)) + "." + base64url(json_text(claims_json)) + ".";
}

std::string hs256_token(const std::string& claims_json, const std::string& secret,
                        const std::string& kid) {
    const json::object h{{"alg", "HS256"}, {"typ", "JWT"}, {"kid", kid}};
    const std::string signed_part =
        base64url(json::serialize(h)) + "." + base64url(json_text(claims_json));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    check(HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
               reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
               &length) != nullptr,
          "hmac");
    return signed_part + "." +
           base64url(std::string_view(reinterpret_cast<const char*>(mac), length));
}

std::string with_broken_signature(const std::string& token) {
    std::string out = token;
    // A character in the middle of the signature: every bit of it is significant.
    const std::size_t dot = out.rfind('.');
    const std::size_t i = dot + (out.size() - dot) / 2;
    out[i] = out[i] == 'A' ? 'B' : 'A';
    return out;
}

std::string with_payload(const std::string& token, const std::string& claims_json) {
    const std::size_t dot1 = token.find('.');
    const std::size_t dot2 = token.rfind('.');
    return token.substr(0, dot1) + "." + base64url(json_text(claims_json)) + token.substr(dot2);
}

}  // namespace gateway::test
