/* A tiny test harness for the native tests: CHECK records a failure and carries on. */
#ifndef SPECULA_CHECK_H
#define SPECULA_CHECK_H

#include <stdio.h>
#include <string.h>

#include "specula.h"

static int check_failures = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                    \
        }                                                                        \
    } while (0)

/* The last error of ctx (or the thread when ctx is NULL) contains `needle`. */
static int error_mentions(const spec_context *ctx, const char *needle) {
    char msg[1024];
    if (spec_last_error(ctx, msg, sizeof msg, NULL) != SPEC_OK) return 0;
    if (!strstr(msg, needle)) {
        fprintf(stderr, "  last error \"%s\" does not mention \"%s\"\n", msg, needle);
        return 0;
    }
    return 1;
}

/* Expects call to return status `want` with a message mentioning `needle`. */
#define CHECK_FAILS(ctx, call, want, needle)                                      \
    do {                                                                          \
        spec_status st_ = (call);                                                 \
        if (st_ != (want)) {                                                      \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d\n", __FILE__, __LINE__, #call, st_, (want)); \
            check_failures++;                                                     \
        } else if (!error_mentions((ctx), (needle))) {                            \
            fprintf(stderr, "%s:%d: %s: message lacks \"%s\"\n", __FILE__, __LINE__, #call, (needle)); \
            check_failures++;                                                     \
        }                                                                         \
    } while (0)

#define CHECK_OK(call) CHECK((call) == SPEC_OK)

static int check_finish(const char *name) {
    if (check_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

#endif
