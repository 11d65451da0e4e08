#include "gateway/store/store.hpp"

#include "support/process.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <filesystem>

namespace gateway::store {
namespace {

using ::testing::HasSubstr;

TEST(SqliteStore, CreatesItsFolderAndMigrates) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/nested/data/gateway.db"};
    {
        auto store = open_store(c);
        EXPECT_EQ(store->schema_version(), 3);
        EXPECT_EQ(store->describe(), "sqlite:" + c.path);
    }
    EXPECT_TRUE(std::filesystem::exists(c.path));
    // Reopening an up-to-date database changes nothing.
    EXPECT_EQ(open_store(c)->schema_version(), 3);
}

TEST(SqliteStore, RefusesADatabaseFromANewerVersion) {
    const std::string dir = test::make_temp_dir("store-test");
    config::StoreConfig c{"sqlite", dir + "/gateway.db"};
    open_store(c);
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(c.path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "UPDATE schema_version SET version = 99;", nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
    try {
        open_store(c);
        FAIL() << "a newer schema was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("schema version 99"));
    }
}

TEST(SqliteStore, AnUnusablePathIsAClearError) {
    const std::string dir = test::make_temp_dir("store-test");
    test::write_file(dir + "/file", "x");
    try {
        open_store(config::StoreConfig{"sqlite", dir + "/file/gateway.db"});
        FAIL() << "no error";
    } catch (const std::runtime_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(dir + "/file/gateway.db"));
    }
}

}  // namespace
}  // namespace gateway::store
