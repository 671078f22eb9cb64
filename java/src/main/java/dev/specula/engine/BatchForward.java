package dev.specula.engine;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;

/**
 * How one decoding step runs its sequences' trees through the target: sequence b's tree over its own KV cache
 * (its tokens left pending there), its logits written at row {@code b * stride} of logits. Each sequence's logits
 * must be bit-identical to a forward of that sequence alone: that is what keeps batched greedy output equal to
 * plain greedy output. The only place that chooses between one call per sequence and one call for the batch.
 */
@FunctionalInterface
public interface BatchForward {
    void forward(NativeModel target, KvCache[] kvs, DraftTree[] trees, DeviceBuffer logits, int stride);

    /** One forward call per sequence (the ABI's single-sequence forward). */
    BatchForward ONE_AT_A_TIME = (target, kvs, trees, logits, stride) -> {
        long rowBytes = (long) target.shape().nVocab() * Float.BYTES;
        for (int b = 0; b < kvs.length; b++)
            target.forward(kvs[b], ForwardArgs.tree(trees[b].tokens(), trees[b].parents(), logits, b * stride * rowBytes));
    };
}
