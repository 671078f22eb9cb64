/* Notes that are not errors (native/core/diagnostics.hpp): SPECULA_LOG turns them on only when it
 * is "1"; a note is written once per owner however often it is given, only while logging is on,
 * as one line "specula: <message>". */
#include <cstdio>
#include <cstring>
#include <string>

#include "check.h"
#include "../core/diagnostics.hpp"

using namespace specula;

static std::string read_all(FILE *f) {
    std::string text;
    std::rewind(f);
    char buf[256];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    return text;
}

int main(void) {
    (void)error_mentions;
    CHECK(log_requested("1"));
    CHECK(!log_requested(nullptr));
    CHECK(!log_requested(""));
    CHECK(!log_requested("0"));
    CHECK(!log_requested("yes"));
    CHECK(!log_requested("10"));

    FILE *out = std::tmpfile();
    CHECK(out != nullptr);
    if (!out) return check_finish("test_diagnostics");

    NoteOnce off;
    CHECK(!off.note_when(false, out, "never %d", 1));
    CHECK(!off.written());
    CHECK(read_all(out).empty());

    NoteOnce graph;
    CHECK(graph.note_when(true, out, "capture failed at %s (%d rows)", "cudaGraphInstantiate", 8));
    CHECK(graph.written());
    for (int i = 0; i < 5; i++) CHECK(!graph.note_when(true, out, "capture failed again %d", i));
    NoteOnce other; // another owner's note is its own
    CHECK(other.note_when(true, out, "second owner"));
    const std::string text = read_all(out);
    CHECK(text == "specula: capture failed at cudaGraphInstantiate (8 rows)\nspecula: second owner\n");
    if (text != "specula: capture failed at cudaGraphInstantiate (8 rows)\nspecula: second owner\n")
        fprintf(stderr, "  wrote: [%s]\n", text.c_str());
    std::fclose(out);
    return check_finish("test_diagnostics");
}
