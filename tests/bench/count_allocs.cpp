// libbench_count_allocs.so: counts a process's heap allocations, for tests/bench/run's
// allocations per request. Loaded with LD_PRELOAD; the count covers malloc, calloc, realloc (when
// it allocates: from nothing, or by moving to a new block), the aligned allocations and operator
// new.
//
// It counts for the allocator the process would use without it, found with dlsym(RTLD_NEXT):
// glibc's, or jemalloc when the binary links it (GATEWAY_MALLOC). All of malloc's family is
// forwarded there, free included, so that a block always goes back to the allocator that gave it.
// operator new and delete are defined here over malloc and free: jemalloc's own would not pass
// through malloc, and libstdc++'s would be counted once either way.
//
// On SIGUSR2 the process writes "<count> <report number>" to the file named by BENCH_ALLOC_FILE,
// whole (a file of its own, renamed over the old one: a reader never sees half of one). The bench
// signals before and after a run and takes the difference. Each thread counts in a slot of its
// own, with a plain load and store (no locked instruction, no shared cache line); the handler adds
// the slots up. Threads past the 256th share the last slot and may lose a count there. Not for
// production: the gateway never loads it.

#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

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

namespace next {

using Malloc = void* (*)(std::size_t);
using Calloc = void* (*)(std::size_t, std::size_t);
using Realloc = void* (*)(void*, std::size_t);
using Free = void (*)(void*);
using Memalign = void* (*)(std::size_t, std::size_t);

Malloc malloc_fn = nullptr;
Calloc calloc_fn = nullptr;
Realloc realloc_fn = nullptr;
std::atomic<Free> free_fn{nullptr};  // set last: the others are set once it is
Memalign memalign_fn = nullptr;

// What is asked for while dlsym itself runs (it may allocate) comes from here, and is never
// freed.
alignas(64) char early[64 * 1024];
std::atomic<std::size_t> early_used{0};
thread_local bool resolving __attribute__((tls_model("initial-exec"))) = false;

bool is_early(const void* p) {
    return p >= early && p < early + sizeof early;
}

void* early_alloc(std::size_t n, std::size_t alignment = 16) {
    if (alignment == 0 || alignment > alignof(decltype(early)) || n > sizeof early) return nullptr;
    std::size_t at = early_used.load();
    std::size_t start = 0;
    do {
        start = (at + alignment - 1) / alignment * alignment;
        if (start > sizeof early - n) return nullptr;
    } while (!early_used.compare_exchange_weak(at, start + n));
    return early + start;
}

template <class F>
F find(const char* name) {
    return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}

// false while the lookup runs (the caller then uses `early`).
bool ready() {
    if (free_fn.load(std::memory_order_acquire) != nullptr) return true;
    if (resolving) return false;
    resolving = true;
    memalign_fn = find<Memalign>("memalign");
    realloc_fn = find<Realloc>("realloc");
    calloc_fn = find<Calloc>("calloc");
    malloc_fn = find<Malloc>("malloc");
    const Free f = find<Free>("free");
    resolving = false;
    if (!malloc_fn || !calloc_fn || !realloc_fn || !f || !memalign_fn) std::abort();
    free_fn.store(f, std::memory_order_release);
    return true;
}

}  // namespace next

}  // namespace

extern "C" {

void* malloc(std::size_t n) {
    if (!next::ready()) return next::early_alloc(n);
    count();
    return next::malloc_fn(n);
}

void* calloc(std::size_t n, std::size_t size) {
    if (!next::ready()) {
        std::size_t bytes = 0;
        if (__builtin_mul_overflow(n, size, &bytes)) return nullptr;
        return next::early_alloc(bytes);  // `early` is zeroed, never reused
    }
    count();
    return next::calloc_fn(n, size);
}

void free(void* p) {
    if (p == nullptr || next::is_early(p)) return;
    if (next::ready()) next::free_fn.load(std::memory_order_relaxed)(p);
}

void* realloc(void* p, std::size_t n) {
    if (next::is_early(p)) {
        // Out of `early` into the allocator: its old size is unknown, but never past the end.
        void* out = malloc(n);
        if (out != nullptr) {
            const std::size_t room =
                static_cast<std::size_t>(next::early + sizeof next::early - static_cast<char*>(p));
            __builtin_memcpy(out, p, n < room ? n : room);
        }
        return out;
    }
    // While dlsym runs, only from nothing: a block of the allocator exists only once it is found.
    if (!next::ready()) return p == nullptr ? next::early_alloc(n) : nullptr;
    void* out = next::realloc_fn(p, n);
    if (out != nullptr && out != p) count();  // from nothing, or moved to a new block
    return out;
}

void* memalign(std::size_t alignment, std::size_t n) {
    if (!next::ready()) return next::early_alloc(n, alignment);
    count();
    return next::memalign_fn(alignment, n);
}

void* aligned_alloc(std::size_t alignment, std::size_t n) {
    return memalign(alignment, n);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
    if (alignment == 0 || alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0)
        return EINVAL;
    void* p = memalign(alignment, n);
    if (p == nullptr) return ENOMEM;
    *out = p;
    return 0;
}

}  // extern "C"

// operator new and delete over malloc and free (counted there).

void* operator new(std::size_t n) {
    if (void* p = malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    return operator new(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    return malloc(n ? n : 1);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    return malloc(n ? n : 1);
}
void* operator new(std::size_t n, std::align_val_t a) {
    if (void* p = memalign(static_cast<std::size_t>(a), n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
    return operator new(n, a);
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return memalign(static_cast<std::size_t>(a), n ? n : 1);
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
    return memalign(static_cast<std::size_t>(a), n ? n : 1);
}
void operator delete(void* p) noexcept {
    free(p);
}
void operator delete[](void* p) noexcept {
    free(p);
}
void operator delete(void* p, std::size_t) noexcept {
    free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
    free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
    free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
    free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
    free(p);
}
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
    free(p);
}
