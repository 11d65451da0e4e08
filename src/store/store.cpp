#include "gateway/store/store.hpp"

namespace gateway::store {

std::unique_ptr<Store> open_store(const config::StoreConfig& config) {
    return open_store_at_version(config, 0);
}

std::unique_ptr<Store> open_store_at_version(const config::StoreConfig& config, int version) {
    if (config.backend == "sqlite") return detail::open_sqlite(config.path, version);
    if (config.backend == "postgres")
        return detail::open_postgres(config.url, config.timeout, version);
    throw StoreError("store: unknown backend '" + config.backend + "'");
}

}  // namespace gateway::store
