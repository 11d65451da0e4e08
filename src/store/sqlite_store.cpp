#include "gateway/store/store.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <filesystem>
#include <memory>
#include <stdexcept>

namespace gateway::store {
namespace {

// Each migration moves the schema one version up, in one transaction.
constexpr const char* kMigrations[] = {
    // 1: what this database is, so that a later version can tell.
    "CREATE TABLE gateway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT INTO gateway_meta (key, value) VALUES ('created_by', 'chain-gateway " GATEWAY_VERSION
    "'),"
    " ('created_at', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));",
};

class SqliteStore final : public Store {
public:
    explicit SqliteStore(std::string path) : path_(std::move(path)) {
        std::filesystem::path p(path_);
        std::error_code ec;
        if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path(), ec);
        if (ec)
            throw std::runtime_error(
                fmt::format("store: cannot create the folder of {}: {}", path_, ec.message()));
        sqlite3* db = nullptr;
        const int rc = sqlite3_open_v2(
            path_.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
            nullptr);
        db_.reset(db);  // closed on every path, this constructor throwing included
        if (rc != SQLITE_OK)
            throw std::runtime_error(fmt::format("store: cannot open {}: {}", path_,
                                                 db ? sqlite3_errmsg(db) : "out of memory"));
        sqlite3_busy_timeout(db_.get(), 5000);
        // WAL with a full fsync on every commit: a committed row survives a crash or power loss.
        exec("PRAGMA journal_mode=WAL;");
        exec("PRAGMA synchronous=FULL;");
        exec("PRAGMA foreign_keys=ON;");
        exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);");
        version_ = read_version();
        const int newest = static_cast<int>(std::size(kMigrations));
        if (version_ > newest)
            throw std::runtime_error(
                fmt::format("store: {} has schema version {}, newer than this build knows ({}): "
                            "run a newer chain-gateway",
                            path_, version_, newest));
        while (version_ < newest) {
            exec("BEGIN IMMEDIATE;");
            try {
                exec(kMigrations[version_]);
                exec(fmt::format(
                    "DELETE FROM schema_version; INSERT INTO schema_version VALUES ({});",
                    version_ + 1));
                exec("COMMIT;");
            } catch (...) {
                sqlite3_exec(db_.get(), "ROLLBACK;", nullptr, nullptr, nullptr);
                throw;
            }
            ++version_;
        }
    }

    int schema_version() const override { return version_; }
    std::string describe() const override { return "sqlite:" + path_; }

private:
    void exec(const std::string& sql) {
        char* error = nullptr;
        if (sqlite3_exec(db_.get(), sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
            std::string why = error ? error : sqlite3_errmsg(db_.get());
            sqlite3_free(error);
            throw std::runtime_error(fmt::format("store: {}: {}", path_, why));
        }
    }

    int read_version() {
        sqlite3_stmt* stmt = nullptr;
        int version = 0;
        if (sqlite3_prepare_v2(db_.get(), "SELECT version FROM schema_version LIMIT 1;", -1, &stmt,
                               nullptr) == SQLITE_OK &&
            sqlite3_step(stmt) == SQLITE_ROW)
            version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
        return version;
    }

    struct Close {
        void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
    };

    std::string path_;
    std::unique_ptr<sqlite3, Close> db_;
    int version_ = 0;
};

}  // namespace

std::unique_ptr<Store> open_store(const config::StoreConfig& config) {
    if (config.backend != "sqlite")
        throw std::runtime_error("store: unknown backend '" + config.backend + "'");
    return std::make_unique<SqliteStore>(config.path);
}

}  // namespace gateway::store
