package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.ffi.SpeculaFfi;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** spec_weight_shape through the wrapper, and the enums that stand for the ABI's integer codes. */
class WeightShapeTest {
    /** A shape whose dimensions all differ (q = 96, kv = 48), so that a swapped one shows. */
    record Shape(Arch arch, int nVocab, int nEmbd, int nLayer, int nHead, int nHeadKv, int headDim, int nFf, int nCtxTrain,
                 float rmsEps, float ropeTheta, RopeStyle ropeStyle, int ropeDims, RopeScaling ropeScaling, float ropeFactor,
                 float ropeLowFreqFactor, float ropeHighFreqFactor, int ropeOrigCtx) implements ModelShape {
        static Shape of(Arch arch, int nHeadKv) {
            return new Shape(arch, 400, 64, 2, 4, nHeadKv, 24, 160, 512, 1e-5f, 10000f, RopeStyle.NEOX, 0,
                    RopeScaling.NONE, 0, 0, 0, 0);
        }
    }

    static final Shape QWEN2 = Shape.of(Arch.QWEN2, 2);

    @Test
    void everyRoleHasTheCoreShape() {
        long v = 400, e = 64, q = 96, kv = 48, ff = 160;
        Map<WeightRole, WeightShape> want = Map.ofEntries(
                Map.entry(WeightRole.TOKEN_EMBD, new WeightShape(v, e)), Map.entry(WeightRole.OUTPUT_NORM, new WeightShape(1, e)),
                Map.entry(WeightRole.OUTPUT, new WeightShape(v, e)), Map.entry(WeightRole.ATTN_NORM, new WeightShape(1, e)),
                Map.entry(WeightRole.ATTN_Q, new WeightShape(q, e)), Map.entry(WeightRole.ATTN_K, new WeightShape(kv, e)),
                Map.entry(WeightRole.ATTN_V, new WeightShape(kv, e)), Map.entry(WeightRole.ATTN_OUT, new WeightShape(e, q)),
                Map.entry(WeightRole.ATTN_Q_BIAS, new WeightShape(1, q)), Map.entry(WeightRole.ATTN_K_BIAS, new WeightShape(1, kv)),
                Map.entry(WeightRole.ATTN_V_BIAS, new WeightShape(1, kv)), Map.entry(WeightRole.FFN_NORM, new WeightShape(1, e)),
                Map.entry(WeightRole.FFN_GATE, new WeightShape(ff, e)), Map.entry(WeightRole.FFN_UP, new WeightShape(ff, e)),
                Map.entry(WeightRole.FFN_DOWN, new WeightShape(e, ff)),
                Map.entry(WeightRole.ATTN_Q_NORM, new WeightShape(1, q / QWEN2.nHead())),
                Map.entry(WeightRole.ATTN_K_NORM, new WeightShape(1, q / QWEN2.nHead())),
                Map.entry(WeightRole.ATTN_POST_NORM, new WeightShape(1, e)), Map.entry(WeightRole.FFN_POST_NORM, new WeightShape(1, e)));
        assertEquals(WeightRole.values().length, want.size());
        for (WeightRole role : WeightRole.values()) {
            for (int layer = 0; layer < QWEN2.nLayer(); layer++) {
                assertEquals(want.get(role), QWEN2.weightShape(role, layer), role + " layer " + layer);
            }
            assertEquals(role.vector(), want.get(role).rows() == 1, role.label());
        }
        // the global roles ignore the layer
        assertEquals(new WeightShape(v, e), QWEN2.weightShape(WeightRole.OUTPUT, 99));
    }

    @Test
    void aLayerOutOfRangeOrABadConfigIsAClearError() {
        SpeculaException e = assertThrows(SpeculaException.class, () -> QWEN2.weightShape(WeightRole.ATTN_Q, 2));
        assertEquals(Status.OUT_OF_RANGE, e.status());
        assertTrue(e.getMessage().contains("weight " + WeightRole.ATTN_Q.label() + ": layer 2 is out of range (model has 2 layers)"),
                e.getMessage());
        e = assertThrows(SpeculaException.class, () -> QWEN2.weightShape(WeightRole.FFN_DOWN, -1));
        assertEquals(Status.OUT_OF_RANGE, e.status());

        e = assertThrows(SpeculaException.class, () -> Shape.of(Arch.LLAMA, 3).weightShape(WeightRole.ATTN_K, 0));
        assertEquals(Status.INVALID_ARGUMENT, e.status());
        assertTrue(e.getMessage().contains("n_head 4 is not a multiple of n_head_kv 3"), e.getMessage());
    }

    @Test
    void aModelTakesExactlyTheShapeItIsGiven() {
        try (Context context = Context.open("cpu", 0); Arena arena = Arena.ofConfined()) {
            NativeModel model = NativeModel.create(context, QWEN2, DType.F32);
            try {
                WeightShape k = QWEN2.weightShape(WeightRole.ATTN_K, 1);
                MemorySegment data = arena.allocate(k.rows() * k.cols() * 4);
                model.setWeight(WeightRole.ATTN_K, 1, DType.F32, data, k.rows(), k.cols());
                SpeculaException e = assertThrows(SpeculaException.class,
                        () -> model.setWeight(WeightRole.ATTN_K, 1, DType.F32, data, k.cols(), k.rows()));
                assertTrue(e.getMessage().contains("expected [" + k.rows() + " x " + k.cols() + "]"), e.getMessage());
            } finally {
                model.close();
            }
        }
    }

    @Test
    void enumsCarryTheAbiCodes() {
        for (WeightRole role : WeightRole.values()) assertEquals(role.ordinal(), role.code(), role.name());
        assertEquals(SpeculaFfi.SPEC_W_ROLE_COUNT(), WeightRole.values().length);
        assertEquals(SpeculaFfi.SPEC_W_ATTN_V_BIAS(), WeightRole.ATTN_V_BIAS.code());
        assertEquals(SpeculaFfi.SPEC_ARCH_QWEN2(), Arch.QWEN2.code());
        assertEquals(SpeculaFfi.SPEC_ARCH_LLAMA(), Arch.LLAMA.code());
        assertEquals(SpeculaFfi.SPEC_ROPE_NEOX(), RopeStyle.NEOX.code());
        assertEquals(SpeculaFfi.SPEC_ROPE_SCALING_LLAMA3(), RopeScaling.LLAMA3.code());
        assertEquals(SpeculaFfi.SPEC_MAX_TREE_NODES(), TreeVerifier.MAX_TREE_NODES);
        assertTrue(Arch.QWEN2.requiresQkvBias());
        assertFalse(Arch.LLAMA.requiresQkvBias());
    }
}
