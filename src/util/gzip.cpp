#include "gateway/util/gzip.hpp"

#include "gateway/util/text.hpp"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

namespace gateway::util {

std::string gzip(std::string_view in, int level) {
    z_stream z{};
    // 15 + 16: a gzip wrapper (header and CRC-32) around the deflate stream; memLevel 8 as zlib's
    // default.
    if (deflateInit2(&z, std::clamp(level, 1, 9), Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK)
        throw std::runtime_error("zlib: deflateInit2 failed");
    std::string out;
    out.resize(deflateBound(&z, static_cast<uLong>(in.size())));
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    // deflateBound is enough for one call with Z_FINISH.
    const int rc = deflate(&z, Z_FINISH);
    const std::size_t written = out.size() - z.avail_out;
    deflateEnd(&z);
    if (rc != Z_STREAM_END) throw std::runtime_error("zlib: deflate did not finish");
    out.resize(written);
    return out;
}

std::optional<std::string> gunzip(std::string_view in, std::size_t limit, GunzipError* error) {
    auto fail = [&](GunzipError why) -> std::optional<std::string> {
        if (error) *error = why;
        return std::nullopt;
    };
    z_stream z{};
    if (inflateInit2(&z, 15 + 16) != Z_OK) return fail(GunzipError::corrupt);
    struct End {
        z_stream& z;
        ~End() { inflateEnd(&z); }
    } end{z};
    std::string out;
    // Grown as it decodes, never past the limit (one byte over tells the limit was passed).
    out.resize(std::min<std::size_t>(std::max<std::size_t>(in.size() * 4, 4096), limit + 1));
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    std::size_t have = 0;
    for (;;) {
        if (have == out.size()) {
            if (out.size() > limit) return fail(GunzipError::too_large);
            out.resize(std::min(out.size() * 2, limit + 1));
        }
        z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
        z.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - have, 1u << 30));
        const uInt before = z.avail_out;
        const int rc = inflate(&z, Z_NO_FLUSH);
        have += before - z.avail_out;
        if (have > limit) return fail(GunzipError::too_large);
        if (rc == Z_STREAM_END) {
            if (z.avail_in == 0) break;
            // Another member follows.
            if (inflateReset(&z) != Z_OK) return fail(GunzipError::corrupt);
            continue;
        }
        if (rc == Z_BUF_ERROR && z.avail_in == 0) return fail(GunzipError::corrupt);  // cut short
        if (rc != Z_OK && rc != Z_BUF_ERROR) return fail(GunzipError::corrupt);
    }
    out.resize(have);
    return out;
}

bool accepts_gzip(std::string_view header) {
    bool star = false;
    bool named = false;
    bool refused = false;  // gzip;q=0 itself
    while (!header.empty()) {
        const std::size_t comma = header.find(',');
        std::string_view item = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
        const std::size_t semi = item.find(';');
        auto trim = [](std::string_view s) {
            while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
            while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
            return s;
        };
        const std::string name = lower(trim(item.substr(0, semi)));
        bool zero = false;
        if (semi != std::string_view::npos) {
            // Parameters: only q matters; q=0 (0, 0.0, 0.000) refuses.
            std::string_view params = item.substr(semi + 1);
            while (!params.empty()) {
                const std::size_t next = params.find(';');
                const std::string_view p = trim(params.substr(0, next));
                params =
                    next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
                if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                    const std::string_view v = trim(p.substr(2));
                    zero = !v.empty() && v.find_first_not_of("0.") == std::string_view::npos;
                }
            }
        }
        if (name == "gzip" || name == "x-gzip") {
            if (zero)
                refused = true;
            else
                named = true;
        } else if (name == "*") {
            star = !zero;
        }
    }
    return named || (star && !refused);
}

}  // namespace gateway::util
