// libbench_count_allocs.so: counts a process's heap allocations, for tests/bench/run's
// allocations per request. Loaded with LD_PRELOAD; the count covers malloc, calloc, realloc (when
// it allocates: from nothing, or by moving to a new block), the aligned allocations and, through
// them, operator new (libstdc++'s calls malloc and aligned_alloc).
//
// On SIGUSR2 the process writes "<count> <report number>" to the file named by BENCH_ALLOC_FILE,
// whole (a file of its own, renamed over the old one: a reader never sees half of one). The bench
// signals before and after a run and takes the difference. Each thread counts in a slot of its
// own, with a plain load and store (no locked instruction, no shared cache line); the handler adds
// the slots up. Threads past the 256th share the last slot and may lose a count there. Not for
// production: the gateway never loads it.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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
std::atomic<std::uint64_t> reports{0};
char report_path[4096];
char report_tmp[4096 + 8];

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
    std::atomic<std::uint64_t>& n = my_count();
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

// Appends `v` in decimal at `out`; the characters written.
int put_decimal(char* out, std::uint64_t v) {
    char digits[20];
    int d = 0;
    do {
        digits[d++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    int n = 0;
    while (d > 0) out[n++] = digits[--d];
    return n;
}

// Async-signal-safe (sums, formats, open/write/close/rename, no allocation); errno is kept.
void report(int) {
    const int saved_errno = errno;
    std::uint64_t total = 0;
    for (const Slot& slot : slots) total += slot.n.load(std::memory_order_relaxed);
    char line[48];
    int n = put_decimal(line, total);
    line[n++] = ' ';
    n += put_decimal(line + n, reports.fetch_add(1, std::memory_order_relaxed) + 1);
    line[n++] = '\n';
    if (report_path[0] != '\0') {
        const int fd = ::open(report_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            const bool whole = ::write(fd, line, static_cast<std::size_t>(n)) == n;
            ::close(fd);
            if (whole) ::rename(report_tmp, report_path);
        }
    }
    errno = saved_errno;
}

// The handler is there whether or not BENCH_ALLOC_FILE is set: SIGUSR2 never ends a process that
// loaded the counter.
__attribute__((constructor)) void start() {
    if (const char* path = std::getenv("BENCH_ALLOC_FILE")) {
        std::size_t n = 0;
        while (path[n] != '\0' && n + 1 < sizeof report_path) ++n;
        for (std::size_t i = 0; i < n; ++i) report_tmp[i] = report_path[i] = path[i];
        const char suffix[] = ".tmp";
        for (std::size_t i = 0; i < sizeof suffix; ++i) report_tmp[n + i] = suffix[i];
        report_path[n] = '\0';
    }
    struct sigaction sa {};
    sa.sa_handler = report;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, nullptr);
    // The file is there from the start (with the count so far): the bench sees the counter is.
    report(0);
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
    void* out = __libc_realloc(p, n);
    if (out != nullptr && out != p) count();  // from nothing, or moved to a new block
    return out;
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
    if (alignment == 0 || alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    count();
    void* p = __libc_memalign(alignment, n);
    if (p == nullptr) return ENOMEM;
    *out = p;
    return 0;
}

}  // extern "C"
