// Sequential (host) versions of the per-row procedures of verification: argmax, the shaping of
// a target distribution (temperature, top-k, top-p) into integer weights, the residual
// max(p - q, 0), and drawing a token. The cpu twin runs these; the cuda kernel (verify.cu) runs
// the same steps block-parallel on the same kernel_math.hpp primitives, and because all sums are
// of integers the two agree exactly. Tests include this header to check it against brute force.
#pragma once

#include "kernel_math.hpp"
#include "specula.h"

#include <cstdint>

namespace specula::seq {

// The largest composite of a row: its token is the argmax (ties: lowest id).
// Two passes: the largest order key (a loop of 32-bit maxima the compiler vectorizes), then the first token
// that has it. Greedy verification runs this once a node; the one-pass 64-bit loop took ~0.2 ms a row of 32k.
inline uint64_t row_argmax(const float *row, int64_t n_vocab) {
    uint32_t best = 0;
    for (int64_t i = 0; i < n_vocab; i++) {
        const uint32_t k = km::order_key(row[i]);
        best = k > best ? k : best;
    }
    for (int64_t i = 0; i < n_vocab; i++)
        if (km::order_key(row[i]) == best) return km::composite(row[i], (uint32_t)i);
    return 0;
}

// The pivot composite at which the running statistic, over tokens in ranking order, reaches
// target (1 <= target <= the statistic's total). stat(i, c) gives token i's statistic.
template <typename Stat>
uint64_t radix_select(const float *row, int64_t n_vocab, Stat stat, uint64_t target) {
    uint64_t prefix = 0, acc = 0;
    for (int pass = 0; pass < km::RADIX_PASSES; pass++) {
        uint64_t hstat[km::RADIX_BINS] = {}, hcount[km::RADIX_BINS] = {}, hmax[km::RADIX_BINS] = {};
        for (int64_t i = 0; i < n_vocab; i++) {
            uint64_t c = km::composite(row[i], (uint32_t)i);
            if (!km::radix_match(c, prefix, pass)) continue;
            const uint64_t st = stat(i, c);
            if (st == 0) continue; // a token without mass is never the pivot: leave it out
            uint32_t d = km::radix_digit(c, pass);
            hstat[d] += st;
            hcount[d] += 1;
            if (c > hmax[d]) hmax[d] = c;
        }
        int bin = km::radix_choose(hstat, acc, target);
        if (hcount[bin] == 1) return hmax[bin];
        prefix |= (uint64_t)bin << (56 - 8 * pass);
    }
    return prefix;
}

// A node's shaped target distribution: w[i] = the weight of token i (0 outside the kept set),
// total = their sum (> 0).
struct Shaped {
    uint64_t argmax;   // composite of the row's argmax
    uint64_t pivot;    // tokens with composite >= pivot are kept
    uint64_t total;
};

inline Shaped shape_row(const float *row, int64_t n_vocab, const spec_sampling_params &p, uint64_t *w) {
    Shaped s{};
    s.argmax = row_argmax(row, n_vocab);
    const float max_logit = row[km::composite_id(s.argmax)];
    const float inv_temp = km::fdiv(1.0f, p.temperature);
    uint64_t cut_k = 0, cut_p = 0;
    if (p.top_k > 0 && p.top_k < n_vocab)
        cut_k = radix_select(row, n_vocab, [](int64_t, uint64_t) { return (uint64_t)1; }, (uint64_t)p.top_k);
    if (p.top_p < 1.0f) {
        uint64_t total_k = 0;
        for (int64_t i = 0; i < n_vocab; i++)
            if (km::composite(row[i], (uint32_t)i) >= cut_k) total_k += km::token_weight(row[i], max_logit, inv_temp);
        if (total_k > 0) {
            auto stat = [&](int64_t i, uint64_t c) { return c >= cut_k ? km::token_weight(row[i], max_logit, inv_temp) : 0; };
            cut_p = radix_select(row, n_vocab, stat, km::top_p_target(p.top_p, total_k));
        }
    }
    s.pivot = cut_k > cut_p ? cut_k : cut_p;
    s.total = 0;
    for (int64_t i = 0; i < n_vocab; i++) {
        w[i] = km::composite(row[i], (uint32_t)i) >= s.pivot ? km::token_weight(row[i], max_logit, inv_temp) : 0;
        s.total += w[i];
    }
    if (s.total == 0) { // every logit nan: the point mass at the argmax
        w[km::composite_id(s.argmax)] = km::WEIGHT_ONE;
        s.total = km::WEIGHT_ONE;
    }
    return s;
}

// p <- max(p - q, 0) in weight units; returns the new total (0 when q covers all of p).
inline uint64_t residual(uint64_t *w, int64_t n_vocab, const float *q, uint64_t total) {
    uint64_t next = 0;
    for (int64_t i = 0; i < n_vocab; i++) {
        uint64_t c = km::draft_weight(q[i], total);
        w[i] = w[i] > c ? w[i] - c : 0;
        next += w[i];
    }
    return next;
}

// Draws a token with probability w[i] / total by inverse CDF over the canonical lane order.
inline int32_t sample_weights(const uint64_t *w, int64_t n_vocab, uint64_t total, uint64_t r) {
    uint64_t u = km::mulhi64(r, total); // in [0, total)
    for (int64_t lane = 0; lane < km::SAMPLE_LANES; lane++) {
        uint64_t lane_sum = 0;
        for (int64_t i = lane; i < n_vocab; i += km::SAMPLE_LANES) lane_sum += w[i];
        if (u >= lane_sum) {
            u -= lane_sum;
            continue;
        }
        for (int64_t i = lane; i < n_vocab; i += km::SAMPLE_LANES) {
            if (u < w[i]) return (int32_t)i;
            u -= w[i];
        }
    }
    return -1; // unreachable when total is the sum of w
}

// The first of a batch's results that drew no bonus token, or -1. Only sample_weights' -1 (a
// total that is not the sum of its weights) leaves one; both backends' verify then fail with a
// status rather than hand the caller a token of -1.
inline int64_t first_without_bonus(const spec_verify_result *results, int64_t batch) {
    for (int64_t b = 0; b < batch; b++)
        if (results[b].bonus_token < 0) return b;
    return -1;
}

} // namespace specula::seq
