// micro_bench: the hot functions of a request one by one (Google Benchmark), so that a change to
// one shows without a whole tests/bench/run. Built with the tests, never run by them:
//
//   build/tests/micro_bench                              every one
//   build/tests/micro_bench --benchmark_filter=Batch     some
//
// The inputs are the bench's own requests and answers (tests/bench/run): the small read, the batch
// of 20 reads, a signed raw transaction, an answer of a block, a log range (gzip). Each benchmark
// reports the bytes it read (bytes_per_second) where that says something.

#include "gateway/cache/chain_cache.hpp"
#include "gateway/eth/hex.hpp"
#include "gateway/eth/keccak.hpp"
#include "gateway/eth/transaction.hpp"
#include "gateway/jsonrpc/jsonrpc.hpp"
#include "gateway/jsonrpc/methods.hpp"
#include "gateway/metrics/metrics.hpp"
#include "gateway/store/store.hpp"
#include "gateway/util/gzip.hpp"
#include "support/tx_signer.hpp"

#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <unistd.h>

#include <string>
#include <variant>
#include <vector>

namespace gateway {
namespace {

namespace json = boost::json;

const std::string kSmall =
    R"({"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x70997970c51812dc3a010c7d01b50e0d17dc79c8","latest"]})";

// The bench's batch: 20 eth_getBalance calls for 20 accounts.
std::string batch_of(int n) {
    std::string out = "[";
    for (int i = 1; i <= n; ++i)
        out += fmt::format(
            R"({}{{"jsonrpc":"2.0","id":{},"method":"eth_getBalance","params":["0x{:040x}","latest"]}})",
            i > 1 ? "," : "", i, i);
    return out + "]";
}

// A node's answer to that batch, under the gateway's ids 1000.. (as it sends them).
std::string batch_answer_of(int n) {
    std::string out = "[";
    for (int i = 0; i < n; ++i)
        out += fmt::format(R"({}{{"jsonrpc":"2.0","id":{},"result":"0x{:x}"}})", i > 0 ? "," : "",
                           1000 + i, 1'000'000'000'000'000'000ull + static_cast<unsigned>(i));
    return out + "]";
}

// An answer the size of a block header with 100 transaction hashes (about 7 KB).
std::string block_answer() {
    std::string txs;
    for (int i = 0; i < 100; ++i) txs += fmt::format(R"({}"0x{:064x}")", i > 0 ? "," : "", i + 1);
    return fmt::format(
        R"({{"jsonrpc":"2.0","id":7,"result":{{"number":"0x10","hash":"0x{:064x}","parentHash":"0x{:064x}","timestamp":"0x6553f100","gasUsed":"0x1c9c380","gasLimit":"0x1c9c380","baseFeePerGas":"0x7","miner":"0x{:040x}","transactions":[{}]}}}})",
        16, 15, 1, txs);
}

void BM_ParseRequest_Small(benchmark::State& state) {
    for (auto _ : state) {
        auto r = jsonrpc::parse_request(kSmall, jsonrpc::ParseLimits{});
        benchmark::DoNotOptimize(r);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kSmall.size()));
}
BENCHMARK(BM_ParseRequest_Small);

void BM_ParseRequest_Batch(benchmark::State& state) {
    const std::string body = batch_of(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        auto r = jsonrpc::parse_request(body, jsonrpc::ParseLimits{});
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));  // calls
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ParseRequest_Batch)->Arg(20)->Arg(100);

// What every call goes through on its way to a node: its vocabulary, its cache key, the body sent.
void BM_CallOnItsWayDown(benchmark::State& state) {
    const auto parsed = jsonrpc::parse_request(kSmall, jsonrpc::ParseLimits{});
    const auto& call = std::get<jsonrpc::Call>(parsed->entries.front());
    std::uint64_t id = 1000;
    for (auto _ : state) {
        benchmark::DoNotOptimize(jsonrpc::method_kind(call.method));
        benchmark::DoNotOptimize(jsonrpc::method_label(call.method));
        benchmark::DoNotOptimize(jsonrpc::block_need(call.method, call.params));
        std::string key = cache::cache_key(call.method, call.params);
        benchmark::DoNotOptimize(key);
        std::string body = jsonrpc::upstream_request(id++, call.method, call.params);
        benchmark::DoNotOptimize(body);
    }
}
BENCHMARK(BM_CallOnItsWayDown);

void BM_CacheKey(benchmark::State& state) {
    const auto parsed = jsonrpc::parse_request(kSmall, jsonrpc::ParseLimits{});
    const auto& call = std::get<jsonrpc::Call>(parsed->entries.front());
    for (auto _ : state) {
        std::string key = cache::cache_key(call.method, call.params);
        benchmark::DoNotOptimize(key);
    }
}
BENCHMARK(BM_CacheKey);

void BM_UpstreamRequest(benchmark::State& state) {
    const auto parsed = jsonrpc::parse_request(kSmall, jsonrpc::ParseLimits{});
    const auto& call = std::get<jsonrpc::Call>(parsed->entries.front());
    std::uint64_t id = 1000;
    for (auto _ : state) {
        std::string body = jsonrpc::upstream_request(id++, call.method, call.params);
        benchmark::DoNotOptimize(body);
    }
}
BENCHMARK(BM_UpstreamRequest);

// A node's answer, read, and the client's answer made from it.
void BM_AnswerOnItsWayUp(benchmark::State& state, const std::string& answer, std::uint64_t id) {
    if (auto reply = jsonrpc::parse_reply(answer, id); !reply || reply->is_error()) {
        state.SkipWithError("the answer is not a result");
        return;
    }
    for (auto _ : state) {
        auto reply = jsonrpc::parse_reply(answer, id);
        std::string out = jsonrpc::result_response("1", *reply->result);
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * answer.size()));
}
BENCHMARK_CAPTURE(BM_AnswerOnItsWayUp, Small,
                  std::string(R"({"jsonrpc":"2.0","id":1000,"result":"0xde0b6b3a7640000"})"), 1000);
BENCHMARK_CAPTURE(BM_AnswerOnItsWayUp, Block, block_answer(), 7);

void BM_SplitBatchReply(benchmark::State& state) {
    const std::string answer = batch_answer_of(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        auto parts = jsonrpc::split_batch_reply(answer);
        benchmark::DoNotOptimize(parts);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * answer.size()));
}
BENCHMARK(BM_SplitBatchReply)->Arg(20)->Arg(100);

void BM_BatchResponse(benchmark::State& state) {
    std::vector<std::string> parts;
    for (int i = 0; i < state.range(0); ++i)
        parts.push_back(jsonrpc::result_response(std::to_string(i + 1), "\"0xde0b6b3a7640000\""));
    for (auto _ : state) {
        std::string out = jsonrpc::batch_response(parts);
        benchmark::DoNotOptimize(out);
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_BatchResponse)->Arg(20);

// Intake: a raw transaction decoded (its hash and sender recovered) from its hex.
void BM_ParseRawTransaction(benchmark::State& state) {
    const std::string raw = test::sign_legacy(test::kKey0, {.nonce = 7});
    const eth::Bytes bytes = *eth::from_hex(raw);
    for (auto _ : state) {
        auto tx = eth::parse_transaction(bytes);
        benchmark::DoNotOptimize(tx);
    }
}
BENCHMARK(BM_ParseRawTransaction);

void BM_Keccak256_32Bytes(benchmark::State& state) {
    const std::string data(32, 'x');
    for (auto _ : state) benchmark::DoNotOptimize(eth::keccak256(data));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}
BENCHMARK(BM_Keccak256_32Bytes);

// A log range as the bench's node answers it (bench_fake_node's eth_getLogs, here 10 KB or 60 KB
// of transfer logs with their hashes): what server.compression compresses and an upstream's gzip
// answer decodes.
std::string log_range(std::size_t logs) {
    std::string out = "[";
    for (std::size_t i = 0; i < logs; ++i) {
        const std::string n = std::to_string(i);
        out += fmt::format(
            R"({}{{"address":"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48","topics":[)"
            R"("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef","{}","{}"],)"
            R"("data":"0x{:064x}","blockNumber":"0x{:x}","transactionHash":"{}","logIndex":"0x{:x}"}})",
            i ? "," : "", eth::to_hex(eth::keccak256("from " + n)),
            eth::to_hex(eth::keccak256("to " + n)), (i * 982451653ull) % 100'000'000'000ull,
            200 + i / 10, eth::to_hex(eth::keccak256("tx " + n)), i);
    }
    return out + "]";
}

void BM_Gzip(benchmark::State& state) {
    const std::string in = log_range(static_cast<std::size_t>(state.range(0)));
    std::size_t out = 0;
    for (auto _ : state) out = util::gzip(in, 1).size();
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
    state.counters["ratio"] = static_cast<double>(in.size()) / static_cast<double>(out);
}
BENCHMARK(BM_Gzip)->Arg(20)->Arg(100);

void BM_Gunzip(benchmark::State& state) {
    const std::string plain = log_range(static_cast<std::size_t>(state.range(0)));
    const std::string in = util::gzip(plain, 1);
    for (auto _ : state) benchmark::DoNotOptimize(util::gunzip(in, 64u << 20, nullptr));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * plain.size()));
}
BENCHMARK(BM_Gunzip)->Arg(20)->Arg(100);

// A batch's calls counted in metrics: one observation a call (Arg 0), or once for the 20 calls
// answered together (Arg 1, as the batch path does since 4654e40).
void BM_ObserveBatchCalls(benchmark::State& state) {
    gateway::metrics::Metrics metrics;
    const bool together = state.range(0) == 1;
    for (auto _ : state) {
        if (together) {
            metrics.observe_call("devnet", "eth_getBalance", "ok", 0.002, 20);
        } else {
            for (int i = 0; i < 20; ++i)
                metrics.observe_call("devnet", "eth_getBalance", "ok", 0.002);
        }
    }
}
BENCHMARK(BM_ObserveBatchCalls)->Arg(0)->Arg(1);

// A batch of 20 reads' answers kept for stale serving, one put() a call (Arg 0, before
// put_all) or one put_all() for the batch (Arg 1, as the batch path does): the key and ticket of
// each call made, and the answers kept, the same entries again each round.
void BM_KeepBatchAnswers(benchmark::State& state) {
    config::CacheConfig config;
    config.enabled = false;  // the bench's pass-through chain: kept for stale serving only
    cache::ChainCache cache("devnet", config, nullptr);
    const auto parsed = jsonrpc::parse_request(batch_of(20), jsonrpc::ParseLimits{});
    const std::string result = "\"0xde0b6b3a7640000\"";
    const bool together = state.range(0) == 1;
    std::vector<cache::ChainCache::Ticket> tickets;
    std::vector<cache::ChainCache::Put> puts;
    for (auto _ : state) {
        tickets.clear();
        puts.clear();
        for (const auto& entry : parsed->entries) {
            const auto& call = std::get<jsonrpc::Call>(entry);
            tickets.push_back(*cache.ticket(call.method, call.params));
        }
        if (together) {
            for (const auto& t : tickets) puts.push_back({&t, &result});
            cache.put_all(puts);
        } else {
            for (const auto& t : tickets) cache.put(t, result);
        }
    }
    state.counters["entries"] = static_cast<double>(cache.entries());
}
BENCHMARK(BM_KeepBatchAnswers)->Arg(0)->Arg(1);

// The journal's part of a raw transaction's intake: its QUEUED row and history in one group
// commit's savepoint, its BROADCASTING change in another's, 64 of each a commit, as the journal's
// thread runs them (JournalService::run_batch). On /dev/shm, so that the figure is SQLite's and
// the gateway's statements, not the disk's fsync. Per transaction.
void BM_JournalIntake(benchmark::State& state) {
    const std::string path = fmt::format("/dev/shm/micro-journal-{}.db", ::getpid());
    ::unlink(path.c_str());
    auto journal = store::open_store(config::StoreConfig{"sqlite", path});
    std::uint64_t n = 0;
    constexpr int kBatch = 64;
    for (auto _ : state) {
        std::vector<std::string> hashes;
        journal->begin();
        for (int i = 0; i < kBatch; ++i, ++n) {
            store::TxRecord r;
            r.hash = fmt::format("0x{:064x}", n * 0x9e3779b97f4a7c15ull);  // spread like hashes
            r.chain = "pass";
            r.chain_id = 31337;
            r.sender = fmt::format("0x{:040x}", n % 1000);
            r.nonce = n / 1000;
            r.raw.assign(110, static_cast<std::uint8_t>(n));
            r.client = "127.0.0.1";
            r.source = "127.0.0.1";
            r.state = store::TxState::queued;
            r.reason = "received";
            r.created_ms = r.updated_ms = 1'700'000'000'000 + static_cast<std::int64_t>(n);
            journal->savepoint();
            benchmark::DoNotOptimize(journal->insert(r));
            journal->release_savepoint();
            hashes.push_back(std::move(r.hash));
        }
        journal->commit();
        journal->begin();
        for (auto& h : hashes) {
            store::TxUpdate u;
            u.hash = std::move(h);
            u.state = store::TxState::broadcasting;
            u.reason = "accepted by node";
            u.at_ms = 1'700'000'000'000 + static_cast<std::int64_t>(n);
            u.broadcasts = 1;
            u.set_block = true;
            journal->savepoint();
            benchmark::DoNotOptimize(journal->update(u));
            journal->release_savepoint();
        }
        journal->commit();
    }
    state.SetItemsProcessed(state.iterations() * kBatch);
    journal.reset();
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((path + suffix).c_str());
}
BENCHMARK(BM_JournalIntake)->Unit(benchmark::kMicrosecond);

void BM_AcceptsGzip(benchmark::State& state) {
    // What browsers and HTTP libraries send.
    const std::string header = "gzip, deflate, br, zstd";
    for (auto _ : state) benchmark::DoNotOptimize(util::accepts_gzip(header));
}
BENCHMARK(BM_AcceptsGzip);

}  // namespace
}  // namespace gateway

BENCHMARK_MAIN();
