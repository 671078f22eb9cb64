/* spec_logits_summarize on the cpu backend (the twin the cuda kernel is held to) against a plain
 * reference written independently: a full sort by (logit, lower id, NaN as -inf) and -sum p log p.
 * Random rows with ties, NaN, +-inf, rows of only NaN or only -inf, limits below the row length,
 * offsets and strides; then every kind of bad argument: status and message. */
#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "check.h"
#include "test_random.hpp"


static double rank_value(float x) { return std::isnan(x) ? -INFINITY : (double)x; }

static spec_logits_summary reference(const float *row, int limit, int k) {
    std::vector<int> ids(limit);
    std::iota(ids.begin(), ids.end(), 0);
    std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return rank_value(row[a]) > rank_value(row[b]); });
    const float max_logit = row[ids[0]];
    std::vector<double> w(limit, 0.0);
    double total = 0;
    for (int i = 0; i < limit; i++) {
        if (std::isnan(row[i]) || std::isnan(max_logit)) continue;
        w[i] = row[i] == max_logit ? 1.0 : std::exp((double)row[i] - (double)max_logit);
        total += w[i];
    }
    spec_logits_summary s;
    memset(&s, 0, sizeof s);
    for (int j = 0; j < SPEC_SUMMARY_MAX_K; j++) s.top[j] = j < k && j < limit ? ids[j] : -1;
    if (total == 0) {
        s.prob[0] = 1;
        return s;
    }
    double h = 0;
    for (int i = 0; i < limit; i++)
        if (w[i] > 0) h -= w[i] / total * std::log(w[i] / total);
    s.entropy = (float)h;
    for (int j = 0; j < k && j < limit; j++) s.prob[j] = (float)(w[ids[j]] / total);
    return s;
}

static bool close_to(double got, double want, double tol) { return std::fabs(got - want) <= tol * std::max(1.0, std::fabs(want)); }

/* Compares one row's summary; prints the first few differences. */
static bool same(const spec_logits_summary &got, const spec_logits_summary &want, int k, const char *what, int row) {
    bool ok = got.reserved == 0 && close_to(got.entropy, want.entropy, 1e-6);
    for (int j = 0; j < SPEC_SUMMARY_MAX_K; j++) ok = ok && got.top[j] == want.top[j] && close_to(got.prob[j], want.prob[j], 1e-6);
    if (!ok)
        fprintf(stderr, "  %s row %d k %d: top %d/%d p %.7g/%.7g second %d/%d entropy %.7g/%.7g\n", what, row, k, got.top[0], want.top[0],
                (double)got.prob[0], (double)want.prob[0], got.top[1], want.top[1], (double)got.entropy, (double)want.entropy);
    return ok;
}

static void test_random(spec_context *ctx) {
    const struct {
        int rows, stride, limit;
        const char *kind;
    } cases[] = {{1, 1, 1, "one token"},      {3, 7, 5, "short, ties"},     {9, 1000, 1000, "ties"},
                 {5, 4100, 4000, "gaussian"}, {4, 32000, 31990, "nan"},     {2, 50, 3, "k past limit"},
                 {6, 300, 300, "specials"},   {130, 257, 250, "many rows"}};
    uint64_t seed = 0x5eed;
    for (auto &c : cases) {
        std::vector<float> data((size_t)c.rows * c.stride + 3);
        for (float &x : data) {
            const uint64_t r = splitmix64(seed);
            if (!strcmp(c.kind, "gaussian") || !strcmp(c.kind, "nan") || !strcmp(c.kind, "many rows"))
                x = (float)(((double)(r >> 11) * 0x1.0p-53 - 0.5) * 12.0);
            else
                x = (float)(r % 9) * 0.5f - 2.0f; /* few values: many ties */
        }
        const size_t off = 3; /* rows start 3 floats in, to exercise offset_bytes */
        auto row = [&](int r) { return &data[off + (size_t)r * c.stride]; };
        if (!strcmp(c.kind, "nan"))
            for (int r = 0; r < c.rows; r++)
                for (int i = 0; i < c.limit; i += 1 + (int)(splitmix64(seed) % 50)) row(r)[i] = NAN;
        if (!strcmp(c.kind, "specials")) {
            for (int i = 0; i < c.limit; i++) row(0)[i] = NAN;       /* only NaN: a point mass at id 0 */
            for (int i = 0; i < c.limit; i++) row(1)[i] = -INFINITY; /* uniform over the -inf logits */
            row(1)[17] = NAN;
            row(2)[40] = INFINITY; /* two +inf share the mass */
            row(2)[7] = INFINITY;
            row(3)[0] = NAN;       /* NaN first: ranks last, has no mass */
            row(4)[299] = 1e30f;   /* everything else underflows */
            row(5)[5] = -0.0f;     /* -0 ties +0 */
            row(5)[2] = 0.0f;
            for (int i = 0; i < c.limit; i++)
                if (row(5)[i] > 0) row(5)[i] = -1;
        }
        /* Past limit, values that would win if they counted. */
        for (int r = 0; r < c.rows; r++)
            for (int i = c.limit; i < c.stride; i++) row(r)[i] = 1e6f;
        spec_buffer *buf = NULL;
        CHECK_OK(spec_buffer_alloc(ctx, data.size() * 4, &buf));
        CHECK_OK(spec_copy_h2d(buf, 0, data.data(), data.size() * 4));
        int differ = 0;
        for (int k = 1; k <= SPEC_SUMMARY_MAX_K; k++) {
            std::vector<spec_logits_summary> got(c.rows);
            CHECK_OK(spec_logits_summarize(ctx, buf, off * 4, c.rows, c.stride, c.limit, k, got.data()));
            for (int r = 0; r < c.rows; r++)
                if (!same(got[r], reference(row(r), c.limit, k), k, c.kind, r)) differ++;
        }
        printf("summaries %-12s rows %3d limit %5d: %d rows differ\n", c.kind, c.rows, c.limit, differ);
        CHECK(differ == 0);
        spec_buffer_free(buf);
    }
}

/* Hand-worked: [1, 3, 3, 0] gives ids 1, 2 (tie: the lower id), 0, 3. */
static void test_hand_worked(spec_context *ctx) {
    const float row[4] = {1, 3, 3, 0};
    spec_buffer *buf = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, sizeof row, &buf));
    CHECK_OK(spec_copy_h2d(buf, 0, row, sizeof row));
    spec_logits_summary s;
    CHECK_OK(spec_logits_summarize(ctx, buf, 0, 1, 4, 4, 8, &s));
    const double e1 = std::exp(-2.0), e3 = std::exp(-3.0), S = 2 + e1 + e3;
    CHECK(s.top[0] == 1 && s.top[1] == 2 && s.top[2] == 0 && s.top[3] == 3 && s.top[4] == -1 && s.top[7] == -1);
    CHECK(close_to(s.prob[0], 1 / S, 1e-7) && close_to(s.prob[1], 1 / S, 1e-7) && close_to(s.prob[2], e1 / S, 1e-7));
    CHECK(close_to(s.prob[3], e3 / S, 1e-7) && s.prob[4] == 0.0f);
    CHECK(close_to(s.entropy, std::log(S) - (-2 * e1 - 3 * e3) / S, 1e-7));
    /* limit 1: one token, certain. */
    CHECK_OK(spec_logits_summarize(ctx, buf, 0, 1, 4, 1, 2, &s));
    CHECK(s.top[0] == 0 && s.prob[0] == 1.0f && s.top[1] == -1 && s.prob[1] == 0.0f && s.entropy == 0.0f);
    spec_buffer_free(buf);
}

static void test_bad_input(spec_context *ctx) {
    spec_buffer *buf = NULL;
    CHECK_OK(spec_buffer_alloc(ctx, 40 * 4, &buf)); /* 4 rows of 10 */
    spec_logits_summary out[4];
    CHECK_OK(spec_logits_summarize(ctx, buf, 0, 4, 10, 10, 2, out));
    CHECK_OK(spec_logits_summarize(ctx, buf, 4, 4, 10, 9, 2, out)); /* the last row ends exactly at the end */
    CHECK(out[3].top[0] == 0 && out[3].top[1] == 1); /* zeros: ties by id */
    CHECK_FAILS(NULL, spec_logits_summarize(NULL, buf, 0, 1, 10, 10, 2, out), SPEC_ERR_INVALID_HANDLE, "context is null");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 1, 10, 10, 2, NULL), SPEC_ERR_INVALID_ARGUMENT, "out is null");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 0, 10, 10, 2, out), SPEC_ERR_INVALID_ARGUMENT, "rows = 0 is out of range");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 131073, 10, 10, 2, out), SPEC_ERR_INVALID_ARGUMENT, "rows = 131073");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 1, 10, 10, 0, out), SPEC_ERR_INVALID_ARGUMENT, "k = 0 is out of range (1..8)");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 1, 10, 10, 9, out), SPEC_ERR_INVALID_ARGUMENT, "k = 9");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 1, 0, 1, 2, out), SPEC_ERR_INVALID_ARGUMENT, "row_stride = 0");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 1, 10, 0, 2, out), SPEC_ERR_INVALID_ARGUMENT, "limit = 0 is out of range (1..10");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 1, 10, 11, 2, out), SPEC_ERR_INVALID_ARGUMENT, "limit = 11");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 2, 1, 10, 10, 2, out), SPEC_ERR_INVALID_ARGUMENT, "offset_bytes = 2 is not a multiple of 4");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 4, 4, 10, 10, 2, out), SPEC_ERR_OUT_OF_RANGE,
                "4 rows of stride 10 floats (limit 10) from byte 4 need 164 bytes, the logits buffer holds 160");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 0, 2, 100, 10, 2, out), SPEC_ERR_OUT_OF_RANGE, "need 440 bytes");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, 160, 1, 10, 1, 2, out), SPEC_ERR_OUT_OF_RANGE, "from byte 160");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, buf, UINT64_MAX - 3, 2, INT64_MAX, 1, 2, out), SPEC_ERR_OUT_OF_RANGE,
                "the logits buffer holds 160");
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, NULL, 0, 1, 10, 10, 2, out), SPEC_ERR_INVALID_HANDLE, "logits buffer is null");
    uint64_t junk[8] = {0};
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, (spec_buffer *)junk, 0, 1, 10, 10, 2, out), SPEC_ERR_INVALID_HANDLE,
                "logits buffer is not live");
    spec_context *other = NULL;
    spec_buffer *foreign = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &other));
    CHECK_OK(spec_buffer_alloc(other, 40 * 4, &foreign));
    CHECK_FAILS(ctx, spec_logits_summarize(ctx, foreign, 0, 1, 10, 10, 2, out), SPEC_ERR_INVALID_ARGUMENT,
                "logits buffer belongs to another context");
    spec_buffer_free(foreign);
    spec_context_destroy(other);
    spec_buffer_free(buf);
}

int main(void) {
    spec_context *ctx = NULL;
    CHECK_OK(spec_context_create("cpu", 0, &ctx));
    test_hand_worked(ctx);
    test_random(ctx);
    test_bad_input(ctx);
    spec_context_destroy(ctx);
    return check_finish("test_logits_summary");
}
