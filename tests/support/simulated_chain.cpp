// The simulated chain of tests/support/simulated_chain.hpp: what its node answers.

#include "support/simulated_chain.hpp"

#include "gateway/eth/hex.hpp"
#include "gateway/eth/transaction.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace gateway::test {

namespace json = boost::json;

std::string hash_of(const std::string& raw) {
    return eth::to_hex(eth::decode_transaction(*eth::from_hex(raw)).hash);
}

Chain::Chain() {
    node_ = std::make_unique<FakeUpstream>(
        31337, [this](const std::string& m, const json::value& req) { return answer(m, req); });
}

std::uint64_t Chain::mine() {
    std::lock_guard lock(mu_);
    ++head_;
    for (auto& h : mempool_) mined_[h] = head_;
    mempool_.clear();
    return head_;
}

void Chain::drop_last_block() {
    std::lock_guard lock(mu_);
    std::erase_if(mined_, [&](const auto& m) { return m.second == head_; });
    --head_;
}

std::string Chain::block_hash(std::uint64_t n) const {
    return fmt::format("0x{:064x}", n * 1000 + (n > replaced_above_ ? generation_ : 0));
}

std::optional<FakeReply> Chain::answer(const std::string& m, const json::value& req) {
    std::lock_guard lock(mu_);
    if (down_) return FakeReply::http(503, "down");
    if (m == "eth_blockNumber") return FakeReply::ok(fmt::format("\"0x{:x}\"", head_));
    if (m == "eth_sendRawTransaction") {
        ++broadcasts_;
        if (!refusal_.empty()) return FakeReply::rpc_error(-32000, refusal_);
        const auto tx = eth::decode_transaction(*eth::from_hex(req.at("params").at(0).as_string()));
        if (tx.type == eth::TxType::blob) {
            // As geth: a blob transaction comes with its blobs or not at all.
            if (tx.sidecar == eth::BlobSidecar::none)
                return FakeReply::rpc_error(-32000, "blobless blob transaction");
            blob_forms_.push_back(tx.sidecar);
        }
        const std::string h = eth::to_hex(tx.hash);
        if (!mined_.count(h) && std::find(mempool_.begin(), mempool_.end(), h) == mempool_.end()) {
            mempool_.push_back(h);
            accepted_.emplace_back(eth::to_hex(tx.sender), tx.nonce);
        }
        return FakeReply::ok("\"" + h + "\"");
    }
    if (m == "eth_getTransactionReceipt") {
        const std::string h(req.at("params").at(0).as_string());
        auto it = mined_.find(h);
        if (it == mined_.end() || receipts_null_) return FakeReply::ok("null");
        return FakeReply::ok(fmt::format(
            R"({{"transactionHash":"{}","blockNumber":"0x{:x}","blockHash":"{}","status":"0x1"}})",
            h, it->second, block_hash(it->second)));
    }
    if (m == "eth_getBlockByNumber" || m == "eth_getBlockByHash") {
        const std::string p(req.at("params").at(0).as_string());
        std::uint64_t n = head_;
        if (m == "eth_getBlockByHash") {
            n = std::stoull(p.substr(2), nullptr, 16) / 1000;
            if (n > head_ || block_hash(n) != p) return FakeReply::ok("null");
        } else if (p != "latest") {
            n = std::stoull(p.substr(2), nullptr, 16);
        }
        if (n > head_) return FakeReply::ok("null");
        // Its transactions by hash, as a node answers with `false` (the gateway's scan of new
        // blocks reads them); a node without a transaction index lists them too.
        std::string txs;
        for (const auto& [hash, at] : mined_)
            if (at == n) txs += (txs.empty() ? "\"" : ",\"") + hash + "\"";
        return FakeReply::ok(fmt::format(
            R"({{"number":"0x{:x}","hash":"{}","parentHash":"{}","transactions":[{}]}})", n,
            block_hash(n), n ? block_hash(n - 1) : std::string(66, '0'), txs));
    }
    if (m == "eth_getBalance") return FakeReply::ok("\"0x64\"");
    if (m == "eth_getTransactionCount")
        return FakeReply::ok(fmt::format("\"0x{:x}\"", nonce_count_));
    if (m == "eth_getTransactionByHash") return FakeReply::ok("null");
    return std::nullopt;
}

}  // namespace gateway::test
