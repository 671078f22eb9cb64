package dev.specula.engine;

import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import java.util.Arrays;

/**
 * How one decoding step runs its sequences through the target: sequence b's args over its own KV cache (its
 * tokens left pending there). Each sequence's outputs must be bit-identical to a forward of that sequence alone:
 * that is what keeps batched greedy output equal to plain greedy output.
 */
@FunctionalInterface
public interface BatchForward {
    void forward(NativeModel target, KvCache[] kvs, ForwardArgs[] args);

    /**
     * One forward call for the whole batch (spec_forward_batch): the sequences' rows share the weight products, so
     * the weights are read once per step rather than once per sequence. A lone sequence takes the plain forward.
     */
    BatchForward ONE_CALL = (target, kvs, args) -> {
        if (kvs.length == 1) target.forward(kvs[0], args[0]);
        else target.forwardBatch(Arrays.asList(kvs), Arrays.asList(args));
    };

    /** One forward call per sequence (the ABI's single-sequence forward). */
    BatchForward ONE_AT_A_TIME = (target, kvs, args) -> {
        for (int b = 0; b < kvs.length; b++) target.forward(kvs[b], args[b]);
    };
}
