#pragma once
// Space for an HTTP head's fields that a connection keeps and empties for each message: Beast
// allocates a block for every field (and the method, target or reason); a monotonic resource over
// a connection's own buffer makes a small head cost no allocation. What does not fit comes from
// the heap until the next message. Used by the listener's sessions (request heads) and the
// upstream client (answer heads).

#include <cstddef>
#include <memory_resource>

namespace gateway::util {

class HeadArena {
public:
    using Allocator = std::pmr::polymorphic_allocator<char>;

    HeadArena() = default;
    HeadArena(const HeadArena&) = delete;
    HeadArena& operator=(const HeadArena&) = delete;

    /// Empties the space, and gives back what the heap lent. Only once nothing allocated since the
    /// last reset is in use (the parser of the previous message is gone).
    void reset() { resource_.release(); }
    /// For Beast's basic_fields and parsers.
    Allocator allocator() { return Allocator(&resource_); }

private:
    alignas(std::max_align_t) unsigned char space_[1024];
    std::pmr::monotonic_buffer_resource resource_{space_, sizeof space_};
};

}  // namespace gateway::util
