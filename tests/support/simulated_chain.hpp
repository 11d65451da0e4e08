#pragma once
// A simulated chain for the tests of durable writes: a fake node (FakeUpstream) with a mempool
// and blocks, which accepts or refuses raw transactions, mines, reorgs (a block dropped or the
// blocks above one replaced), goes down and answers receipts, blocks, balances and nonces. Used by
// the in-process gateway tests (tests/gateway/writes_test.cpp) and the transaction manager's unit
// tests (tests/unit/tx_manager_test.cpp).

#include "gateway/eth/blob.hpp"
#include "support/fake_upstream.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace gateway::test {

/// The hash of a signed raw transaction given as 0x-hex.
std::string hash_of(const std::string& raw);

// A node with a mempool and blocks. Thread-safe.
class Chain {
public:
    Chain();
    // The node first: its server may still be answering the gateway's calls with the members
    // below, which would otherwise go before it (members end in reverse order).
    ~Chain() { node_.reset(); }
    Chain(const Chain&) = delete;
    Chain& operator=(const Chain&) = delete;
    std::string url() const { return node_->url(); }
    FakeUpstream& node() { return *node_; }

    /// What eth_sendRawTransaction answers instead of accepting (an error message), or "".
    void refuse_with(std::string message) {
        std::lock_guard lock(mu_);
        refusal_ = std::move(message);
    }
    /// Every call fails with HTTP 503 (the node is gone) or works again.
    void set_down(bool down) {
        std::lock_guard lock(mu_);
        down_ = down;
    }
    std::size_t mempool_size() const {
        std::lock_guard lock(mu_);
        return mempool_.size();
    }
    /// Mines the mempool into a new block; returns its number.
    std::uint64_t mine();
    /// A new block without the mempool's transactions (they stay pending); returns its number.
    std::uint64_t mine_empty() {
        std::lock_guard lock(mu_);
        return ++head_;
    }
    /// The last block goes away (a reorg); its transactions return to nobody's pool.
    void drop_last_block();
    /// The order in which transactions were accepted, as (sender, nonce).
    std::vector<std::pair<std::string, std::uint64_t>> accepted() const {
        std::lock_guard lock(mu_);
        return accepted_;
    }
    std::size_t broadcasts() const {
        std::lock_guard lock(mu_);
        return broadcasts_;
    }
    /// Blocks above `number` are replaced by others (a reorg that keeps block `number`).
    void replace_blocks_above(std::uint64_t number) {
        std::lock_guard lock(mu_);
        ++generation_;
        replaced_above_ = number;
    }
    /// Receipts are answered null, as by a node without a transaction index.
    void set_receipts_null(bool null) {
        std::lock_guard lock(mu_);
        receipts_null_ = null;
    }
    /// The forms blob transactions were sent in, in order.
    std::vector<eth::BlobSidecar> blob_forms() const {
        std::lock_guard lock(mu_);
        return blob_forms_;
    }
    /// What eth_getTransactionCount answers, at any block (0 until set).
    void set_nonce_count(std::uint64_t count) {
        std::lock_guard lock(mu_);
        nonce_count_ = count;
    }

private:
    std::optional<FakeReply> answer(const std::string& m, const boost::json::value& req);
    std::string block_hash(std::uint64_t n) const;

    mutable std::mutex mu_;
    std::unique_ptr<FakeUpstream> node_;
    std::string refusal_;
    bool down_ = false;
    std::uint64_t head_ = 16;
    std::uint64_t generation_ = 0;
    std::uint64_t replaced_above_ = 0;
    bool receipts_null_ = false;
    std::vector<std::string> mempool_;
    std::map<std::string, std::uint64_t> mined_;
    std::vector<std::pair<std::string, std::uint64_t>> accepted_;
    std::size_t broadcasts_ = 0;
    std::vector<eth::BlobSidecar> blob_forms_;
    std::uint64_t nonce_count_ = 0;
};

}  // namespace gateway::test
