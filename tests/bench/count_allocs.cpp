// libbench_count_allocs.so: counts a process's heap allocations, for tests/bench/run's
// allocations per request. Loaded with LD_PRELOAD; the count covers malloc, calloc, realloc (to a
// new block), the aligned allocations and, through them, operator new (libstdc++'s calls malloc).
//
// On SIGUSR2 the process writes the count so far, in decimal, to the file named by
// BENCH_ALLOC_FILE (from the start of the file, padded with spaces). The bench signals before and
// after a run and takes the difference. Each thread counts in a slot of its own (no shared cache
// line on the allocation path); the handler adds the slots up. Not for production: the gateway
// never loads it.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {

constexpr int kSlots = 256;

struct alignas(64) Slot {
    std::atomic<std::uint64_t> n{0};
};

Slot slots[kSlots];
std::atomic<int> next_slot{0};
int report_fd = -1;

std::atomic<std::uint64_t>& my_count() {
    // A thread past the 256th shares the last slot: still counted, at the cost of sharing.
    // initial-exec: this library is loaded at start (LD_PRELOAD), and the general model may
    // allocate on a thread's first access, from inside malloc.
    static thread_local int slot __attribute__((tls_model("initial-exec"))) = -1;
    if (slot < 0) {
        const int s = next_slot.fetch_add(1, std::memory_order_relaxed);
        slot = s < kSlots ? s : kSlots - 1;
    }
    return slots[slot].n;
}

void count() {
    my_count().fetch_add(1, std::memory_order_relaxed);
}

// Async-signal-safe: sums, formats and writes with no allocation. The line is the count and
// spaces, 31 characters and a newline, so that a shorter count overwrites a longer one whole.
void report(int) {
    std::uint64_t total = 0;
    for (const Slot& s : slots) total += s.n.load(std::memory_order_relaxed);
    char digits[20];
    int d = 0;
    do {
        digits[d++] = static_cast<char>('0' + total % 10);
        total /= 10;
    } while (total != 0);
    char line[32];
    int n = 0;
    while (d > 0) line[n++] = digits[--d];
    while (n < 31) line[n++] = ' ';
    line[n++] = '\n';
    if (report_fd >= 0) (void)!pwrite(report_fd, line, static_cast<std::size_t>(n), 0);
}

__attribute__((constructor)) void start() {
    const char* path = std::getenv("BENCH_ALLOC_FILE");
    if (path == nullptr) return;
    report_fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    struct sigaction sa {};
    sa.sa_handler = report;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, nullptr);
}

}  // namespace

extern "C" {

void* malloc(std::size_t n) {
    count();
    return __libc_malloc(n);
}

void* calloc(std::size_t n, std::size_t size) {
    count();
    return __libc_calloc(n, size);
}

void* realloc(void* p, std::size_t n) {
    if (p == nullptr) count();
    return __libc_realloc(p, n);
}

void* memalign(std::size_t alignment, std::size_t n) {
    count();
    return __libc_memalign(alignment, n);
}

void* aligned_alloc(std::size_t alignment, std::size_t n) {
    count();
    return __libc_memalign(alignment, n);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
    if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return 22;  // EINVAL
    count();
    void* p = __libc_memalign(alignment, n);
    if (p == nullptr) return 12;  // ENOMEM
    *out = p;
    return 0;
}

}  // extern "C"
