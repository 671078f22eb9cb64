// spec_copy_d2d within one buffer moves bytes as memmove does (the cpu backend's copy is a memmove, and a drafter
// shifts its rows down a buffer: EagleDraftPolicy), but one device copy of overlapping ranges has no defined order. So
// the cuda backend copies overlapping ranges as pieces that do not overlap, in an order that reads every byte before a
// piece overwrites it. Plain C++: test_model_math checks it on any machine.
#pragma once

#include <cstdint>

namespace specula::cuda {

// The most pieces an overlapping copy is split into; a smaller shift goes through a temporary copy instead.
constexpr uint64_t MAX_COPY_PIECES = 64;

// Calls piece(dst, src, bytes) for the pieces of a copy of nbytes from src to dst (addresses as integers), in the order
// they must run: one piece when the ranges do not overlap; else pieces of the shift |dst - src| bytes, front to back
// when the bytes move down, back to front when they move up (each piece's source is read before any later piece
// overwrites it, and no piece overlaps itself). Returns the count of pieces, or 0, calling nothing, when the ranges
// overlap by a shift so small that more than MAX_COPY_PIECES would be needed (copy through a temporary then). The
// caller skips copies with nothing to move (dst == src, nbytes == 0).
template <typename Piece>
uint64_t copy_pieces(uint64_t dst, uint64_t src, uint64_t nbytes, Piece &&piece) {
    const uint64_t shift = dst > src ? dst - src : src - dst;
    if (shift >= nbytes) {
        piece(dst, src, nbytes);
        return 1;
    }
    const uint64_t n = (nbytes + shift - 1) / shift;
    if (n > MAX_COPY_PIECES) return 0;
    for (uint64_t k = 0; k < n; k++) {
        // down (dst < src): piece k from the front; up: piece k from the back
        const uint64_t at = dst < src ? k * shift : (nbytes > (k + 1) * shift ? nbytes - (k + 1) * shift : 0);
        const uint64_t end = dst < src ? (at + shift < nbytes ? at + shift : nbytes) : nbytes - k * shift;
        piece(dst + at, src + at, end - at);
    }
    return n;
}

} // namespace specula::cuda
