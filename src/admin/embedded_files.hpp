#pragma once
// The operator page's files, compiled into the binary from src/admin/ui/ by
// cmake/embed_files.cmake (the definition is generated into the build folder).

#include <span>
#include <string_view>

namespace gateway::admin {

struct EmbeddedFile {
    std::string_view name;     ///< its file name: "index.html", "app.js", ...
    std::string_view content;  ///< its bytes
};

/// Every file of src/admin/ui/, as it was at build time.
std::span<const EmbeddedFile> embedded_files();

}  // namespace gateway::admin
