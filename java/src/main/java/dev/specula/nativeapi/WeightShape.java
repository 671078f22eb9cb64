package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.spec_weight_shape;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The row-major shape a weight must have, [rows = out features][cols = in features]; vectors (norms, biases)
 * have rows = 1. The rule lives once, in the native core; {@link #of} asks it.
 */
public record WeightShape(long rows, long cols) {
    static {
        Native.ensureLoaded();
    }

    /**
     * The shape of role in layer (ignored for global roles) under shape, by spec_weight_shape. Throws
     * SpeculaException when the config is one spec_model_create would refuse, or layer is out of range.
     */
    public static WeightShape of(ModelShape shape, WeightRole role, int layer) {
        try (Arena arena = Arena.ofConfined()) {
            // The KV cache type is part of spec_model_config but no weight's shape depends on it.
            MemorySegment config = NativeModel.config(arena, shape, DType.F32);
            MemorySegment rows = arena.allocate(ValueLayout.JAVA_LONG);
            MemorySegment cols = arena.allocate(ValueLayout.JAVA_LONG);
            Native.check(spec_weight_shape(config, role.code(), layer, rows, cols), MemorySegment.NULL);
            return new WeightShape(rows.get(ValueLayout.JAVA_LONG, 0), cols.get(ValueLayout.JAVA_LONG, 0));
        }
    }

    @Override
    public String toString() {
        return "[" + rows + " x " + cols + "]";
    }
}
