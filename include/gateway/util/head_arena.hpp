#pragma once
// Space for an HTTP head's fields that a connection keeps and empties for each message: Beast
// allocates a block for every field (and the method, target or reason); a bump allocator over a
// connection's own buffer makes a small head cost no allocation. What does not fit comes from the
// heap. Used by the listener's sessions (request heads) and the upstream client (answer heads).

#include <cstddef>
#include <functional>
#include <new>

namespace gateway::util {

class HeadArena {
public:
    /// Empties the space. Only once nothing allocated from it since the last reset is in use (the
    /// parser of the previous message is gone).
    void reset() { used_ = 0; }
    void* allocate(std::size_t bytes, std::size_t align) {
        const std::size_t at = (used_ + align - 1) & ~(align - 1);
        if (align <= alignof(std::max_align_t) && at <= sizeof space_ &&
            bytes <= sizeof space_ - at) {
            used_ = at + bytes;
            return space_ + at;
        }
        return ::operator new(bytes);
    }
    void deallocate(void* p, std::size_t bytes) {
        // std::less: a total order over all pointers, the heap's and the space's alike.
        const auto* b = static_cast<const unsigned char*>(p);
        const std::less<const unsigned char*> before;
        if (!before(b, space_) && before(b, space_ + sizeof space_)) return;  // the next reset
        ::operator delete(p, bytes);
    }

private:
    alignas(std::max_align_t) unsigned char space_[1024];
    std::size_t used_ = 0;
};

/// An allocator over a HeadArena, for Beast's basic_fields and parsers.
template <class T>
class HeadAllocator {
public:
    using value_type = T;
    explicit HeadAllocator(HeadArena& arena) noexcept : arena_(&arena) {}
    template <class U>
    HeadAllocator(const HeadAllocator<U>& other) noexcept : arena_(other.arena()) {}
    T* allocate(std::size_t n) {
        if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
        return static_cast<T*>(arena_->allocate(n * sizeof(T), alignof(T)));
    }
    void deallocate(T* p, std::size_t n) noexcept { arena_->deallocate(p, n * sizeof(T)); }
    HeadArena* arena() const noexcept { return arena_; }
    template <class U>
    bool operator==(const HeadAllocator<U>& other) const noexcept {
        return arena_ == other.arena();
    }

private:
    HeadArena* arena_;
};

}  // namespace gateway::util
