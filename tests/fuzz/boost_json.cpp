// Boost.JSON compiled into the fuzz build (header-only mode), so that libFuzzer sees coverage of
// its parser and ASan checks it. The gateway itself links the Boost.JSON library.
#include <boost/json/src.hpp>
