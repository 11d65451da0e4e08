// Fuzz target: a node's answer to a batch through split_batch_reply, which cuts the raw text into
// its elements without building a document. Checked against Boost.JSON's document of the same
// text: the same elements, each text exactly its element, the same ids; then each element with
// an id through parse_reply, as the pool reads it, checked the same way.

#include "check.hpp"
#include "json_compare.hpp"
#include "reference_reply.hpp"

#include "gateway/jsonrpc/jsonrpc.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {

using namespace gateway::jsonrpc;
using gateway::fuzz::check;
namespace json = boost::json;

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const auto elements = split_batch_reply(body);

    bool too_deep = false;
    const auto doc = gateway::fuzz::reference_parse(body, too_deep);
    if (too_deep) return 0;
    check(elements.has_value() == (doc && doc->is_array()),
          "split exactly the texts that are JSON arrays");
    if (!elements) return 0;
    const json::array& array = doc->as_array();
    check(elements->size() == array.size(), "one element per array element");

    for (std::size_t i = 0; i < array.size(); ++i) {
        const BatchElement& e = (*elements)[i];
        check(!e.text.empty() && !is_space(e.text.front()) && !is_space(e.text.back()),
              "an element's text has no space around it");
        check(e.text.data() >= body.data() && e.text.data() + e.text.size() <= body.data() + size,
              "an element's text lies in the body");
        bool deep = false;
        const auto element = gateway::fuzz::reference_parse(e.text, deep);
        check(element && gateway::fuzz::same_json(*element, array[i]),
              "an element's text is that element");

        std::optional<std::uint64_t> id;
        if (const json::object* o = array[i].if_object())
            if (const json::value* v = o->if_contains("id")) id = gateway::fuzz::integer_id(*v);
        check(e.id == id, "an element's id is its integer \"id\"");
        if (e.id) gateway::fuzz::check_reply(e.text, *e.id);
    }
    return 0;
}
