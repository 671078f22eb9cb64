// Notes that are not errors: a slower path taken because a faster one failed (a CUDA graph
// capture, say), where the results stay the same. Native code never prints on its own, and an
// error path returns a status instead; such a note reaches stderr only when the environment sets
// SPECULA_LOG=1 (read once per process), and each note's owner (a model, say) writes it at most
// once, so a decode loop cannot flood the log.
#pragma once

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace specula {

// Whether a value of SPECULA_LOG turns the notes on: exactly "1".
inline bool log_requested(const char *value) { return value && std::strcmp(value, "1") == 0; }

inline bool log_enabled() {
    static const bool on = log_requested(std::getenv("SPECULA_LOG"));
    return on;
}

// One note, written as the line "specula: <message>" the first time it is given with logging on.
class NoteOnce {
public:
    // With logging as SPECULA_LOG says; returns whether this call wrote the line.
    bool note(FILE *out, const char *fmt, ...) __attribute__((format(printf, 3, 4))) {
        va_list ap;
        va_start(ap, fmt);
        const bool wrote = vnote(log_enabled(), out, fmt, ap);
        va_end(ap);
        return wrote;
    }
    // With logging on or off as the caller says (the tests).
    bool note_when(bool enabled, FILE *out, const char *fmt, ...) __attribute__((format(printf, 4, 5))) {
        va_list ap;
        va_start(ap, fmt);
        const bool wrote = vnote(enabled, out, fmt, ap);
        va_end(ap);
        return wrote;
    }
    bool written() const { return written_.load(); }

private:
    bool vnote(bool enabled, FILE *out, const char *fmt, va_list ap) {
        if (!enabled || written_.exchange(true)) return false;
        std::fputs("specula: ", out);
        std::vfprintf(out, fmt, ap);
        std::fputc('\n', out);
        std::fflush(out);
        return true;
    }
    std::atomic<bool> written_{false};
};

} // namespace specula
