package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_weight_plan;
import dev.specula.ffi.spec_weights_memory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * What a backend makes of a model's weights beyond its {@link MemoryPlan} (spec_memory_plan_weights, spec_model_memory),
 * in bytes. The backend states these where it allocates them, so that a memory budget reads them instead of restating
 * the backend's layouts.
 *
 * @param prepacked    cpu: the Q8_0 matrices prepacked at load for the int8 kernels, in whole 2 MiB pages (0 with
 *                     SPECULA_CPU_PREPACK=0)
 * @param eagleScratch cpu: an EAGLE layer's fc input rows at their largest; 0 for other models
 * @param total        prepacked + eagleScratch + weightCopy
 * @param weightCopy   cpu, SPECULA_CPU_WEIGHTS=copy: the matrices not prepacked, copied at load onto whole 2 MiB pages
 *                     (the token embeddings stay in place); 0 otherwise
 * @param forwardScratch {@link #of} only (0 in a plan, where {@link MemoryPlan#modelScratch} counts it): the forward
 *                     scratch the model holds now, within that plan; not in total
 *
 * <p>An EAGLE layer reads its target's prepacked or copied LM head (the target counts it), never a copy of its own.
 */
public record WeightsMemory(long prepacked, long eagleScratch, long total, long weightCopy, long forwardScratch) {
    static {
        Native.ensureLoaded();
    }

    /**
     * One weight as it will be handed over: a model weight (role, layer; {@link NativeModel#setWeight}) or, with role
     * null, an EAGLE layer's fc or its bias ({@link NativeModel#setEagleWeight}).
     */
    public record Planned(WeightRole role, int layer, boolean eagleFcBias, DType dtype) {
        public static Planned weight(WeightRole role, int layer, DType dtype) {
            return new Planned(role, layer, false, dtype);
        }

        public static Planned eagleFc(boolean bias, DType dtype) {
            return new Planned(null, 0, bias, dtype);
        }
    }

    /**
     * What finalizing a model of shape on backend ("cpu" or "cuda") handed these weights, and running its forwards,
     * will take (eagle: an EAGLE layer). Reads no weight and needs no device; the cpu backend answers for this machine's
     * kernels and environment, as it will load.
     */
    public static WeightsMemory plan(String backend, ModelShape shape, boolean eagle, List<Planned> weights) {
        Specula.requireCompiled(backend);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment array = arena.allocate(spec_weight_plan.layout(), Math.max(1, weights.size()));
            for (int i = 0; i < weights.size(); i++) {
                Planned w = weights.get(i);
                MemorySegment p = spec_weight_plan.asSlice(array, i);
                spec_weight_plan.role(p, w.role() == null ? 0 : w.role().code());
                spec_weight_plan.layer(p, w.layer());
                spec_weight_plan.eagle_role(p, w.role() != null ? -1 : w.eagleFcBias() ? SPEC_EW_FC_BIAS() : SPEC_EW_FC());
                spec_weight_plan.dtype(p, w.dtype().code());
            }
            MemorySegment out = spec_weights_memory.allocate(arena);
            // The KV cache type is part of spec_model_config but none of these depends on it.
            Native.check(spec_memory_plan_weights(arena.allocateFrom(backend), NativeModel.config(arena, shape, DType.F32), eagle ? 1 : 0,
                    weights.size(), array, out), MemorySegment.NULL);
            return read(out);
        }
    }

    /** What a finished model holds now, by the backend's own accounting. */
    public static WeightsMemory of(NativeModel model) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = spec_weights_memory.allocate(arena);
            Native.check(spec_model_memory(model.segment(), out), model.context().handle());
            return read(out);
        }
    }

    /** What the cpu backend places of the matrices at load, beyond the caller's mapping: prepacked plus copied. */
    public long placed() {
        return prepacked + weightCopy;
    }

    private static WeightsMemory read(MemorySegment out) {
        return new WeightsMemory(spec_weights_memory.prepacked(out), spec_weights_memory.eagle_scratch(out), spec_weights_memory.total(out),
                spec_weights_memory.weight_copy(out), spec_weights_memory.forward_scratch(out));
    }
}
