package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_memory_plan;
import dev.specula.ffi.spec_memory_request;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * What one use of a model takes of a backend's memory (spec_memory_plan_compute), in bytes: device memory for
 * cuda, host memory for cpu. The backend allocates by the same arithmetic, so a model, caches and a reserved
 * context ({@link Context#reserve}) within the plan need no more memory while they run.
 *
 * @param weights       the backend's copy of the weights (cpu: 0, it reads the caller's mapping)
 * @param kvCaches      all sequences' KV caches
 * @param modelScratch  one forward call's activations, fixed per model
 * @param kernelScratch spec_verify and the recycler's per-step scratch for all sequences' trees
 * @param recycler      the Token Recycling adjacency matrix
 * @param total         the sum
 */
public record MemoryPlan(long weights, long kvCaches, long modelScratch, long kernelScratch, long recycler, long total) {
    static {
        Native.ensureLoaded();
    }

    /**
     * Plans a model of shape on backend ("cpu" or "cuda"); needs no device, so any machine can plan for any
     * backend compiled into the library.
     *
     * @param weightBytes  the sum of the weights' sizes as they will be handed over
     * @param kvCapacity   positions per KV cache
     * @param sequences    KV caches (the batch), each with a tree of maxTreeNodes
     * @param maxTreeNodes tree nodes per sequence verified each step; 0 when nothing is verified
     * @param recyclerK    candidates per row of a recycler over the model's vocabulary; 0 for none
     */
    public static MemoryPlan compute(String backend, ModelShape shape, DType kvType, long weightBytes, int kvCapacity,
                                     int sequences, int maxTreeNodes, int recyclerK) {
        Specula.requireCompiled(backend);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment r = spec_memory_request.allocate(arena);
            spec_memory_request.weight_bytes(r, weightBytes);
            spec_memory_request.kv_capacity(r, kvCapacity);
            spec_memory_request.n_sequences(r, sequences);
            spec_memory_request.max_tree_nodes(r, maxTreeNodes);
            spec_memory_request.recycler_k(r, recyclerK);
            MemorySegment p = spec_memory_plan.allocate(arena);
            Native.check(spec_memory_plan_compute(arena.allocateFrom(backend), NativeModel.config(arena, shape, kvType), r, p),
                    MemorySegment.NULL);
            return new MemoryPlan(spec_memory_plan.weights(p), spec_memory_plan.kv_caches(p), spec_memory_plan.model_scratch(p),
                    spec_memory_plan.kernel_scratch(p), spec_memory_plan.recycler(p), spec_memory_plan.total(p));
        }
    }
}
