package dev.specula.engine;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * How one decoding step runs its sequences' trees through the target: sequence b's tree over its own KV cache
 * (its tokens left pending there), its logits written at row {@code b * stride} of logits. Each sequence's logits
 * must be bit-identical to a forward of that sequence alone: that is what keeps batched greedy output equal to
 * plain greedy output.
 */
@FunctionalInterface
public interface BatchForward {
    void forward(NativeModel target, KvCache[] kvs, DraftTree[] trees, DeviceBuffer logits, int stride);

    /**
     * One forward call for the whole batch (spec_forward_batch): the sequences' rows share the weight products, so
     * the weights are read once per step rather than once per sequence. A lone sequence takes the plain forward.
     */
    BatchForward ONE_CALL = (target, kvs, trees, logits, stride) -> {
        if (kvs.length == 1) {
            BatchForward.ONE_AT_A_TIME.forward(target, kvs, trees, logits, stride);
            return;
        }
        long rowBytes = (long) target.shape().nVocab() * Float.BYTES;
        List<ForwardArgs> args = new ArrayList<>(kvs.length);
        for (int b = 0; b < kvs.length; b++) args.add(ForwardArgs.tree(trees[b].tokens(), trees[b].parents(), logits, b * stride * rowBytes));
        target.forwardBatch(Arrays.asList(kvs), args);
    };

    /** One forward call per sequence (the ABI's single-sequence forward). */
    BatchForward ONE_AT_A_TIME = (target, kvs, trees, logits, stride) -> {
        long rowBytes = (long) target.shape().nVocab() * Float.BYTES;
        for (int b = 0; b < kvs.length; b++)
            target.forward(kvs[b], ForwardArgs.tree(trees[b].tokens(), trees[b].parents(), logits, b * stride * rowBytes));
    };
}
