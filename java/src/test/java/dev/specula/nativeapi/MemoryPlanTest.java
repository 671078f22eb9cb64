package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import org.junit.jupiter.api.Test;

/** spec_memory_plan_compute through the wrapper: arithmetic, so cuda plans are checked here too, with no GPU. */
class MemoryPlanTest {
    /** 2 layers, 2 KV heads of 16 dims, vocabulary 400. */
    static final ModelShape SMALL = new ModelShape() {
        public Arch arch() { return Arch.LLAMA; }
        public int nVocab() { return 400; }
        public int nEmbd() { return 64; }
        public int nLayer() { return 2; }
        public int nHead() { return 4; }
        public int nHeadKv() { return 2; }
        public int headDim() { return 16; }
        public int nFf() { return 160; }
        public int nCtxTrain() { return 512; }
        public float rmsEps() { return 1e-5f; }
        public float ropeTheta() { return 10000f; }
        public RopeStyle ropeStyle() { return RopeStyle.NORM; }
        public int ropeDims() { return 0; }
        public RopeScaling ropeScaling() { return RopeScaling.NONE; }
        public float ropeFactor() { return 1f; }
        public float ropeLowFreqFactor() { return 1f; }
        public float ropeHighFreqFactor() { return 4f; }
        public int ropeOrigCtx() { return 0; }
    };

    /** K and V, per layer, per position, per KV head: head_dim elements; on cpu also each slot's position (an int32). */
    static long kvBytes(String backend, int capacity, int sequences, int elementBytes) {
        long positions = backend.equals("cpu") ? 4L * capacity * sequences : 0;
        return 2L * 2 * capacity * 2 * 16 * elementBytes * sequences + positions;
    }

    @Test
    void kvCachesAreExactlyTwoTensorsPerLayerOnBothBackends() {
        for (String backend : Specula.backendsCompiled()) { // cpu, and cuda where it was built
            MemoryPlan f16 = MemoryPlan.compute(backend, SMALL, DType.F16, 1000, 100, 3, 0, 0);
            assertEquals(kvBytes(backend, 100, 3, 2), f16.kvCaches(), backend);
            assertEquals(backend.equals("cpu") ? 76_800 + 1_200 : 76_800, f16.kvCaches(), backend);
            MemoryPlan f32 = MemoryPlan.compute(backend, SMALL, DType.F32, 1000, 100, 3, 0, 0);
            assertEquals(kvBytes(backend, 100, 3, 4), f32.kvCaches(), backend);
            assertEquals(MemoryPlan.compute(backend, SMALL, DType.BF16, 1000, 100, 3, 0, 0).kvCaches(), f16.kvCaches(), backend);
            // Nothing verified, no recycler: no kernel scratch, no matrix.
            assertEquals(0, f16.kernelScratch(), backend);
            assertEquals(0, f16.recycler(), backend);
            assertEquals(f16.weights() + f16.kvCaches() + f16.modelScratch() + f16.kernelScratch() + f16.recycler(), f16.total(), backend);
        }
    }

    @Test
    void cpuReadsWeightsInPlaceAndCudaCopiesThem() {
        MemoryPlan cpu = MemoryPlan.compute("cpu", SMALL, DType.F16, 123_456, 64, 1, 8, 8);
        assertEquals(0, cpu.weights());
        assertTrue(cpu.modelScratch() > 0, "the cpu forward's activations: " + cpu.modelScratch());
        // The recycling matrix: n_vocab rows of k int32 candidates.
        assertEquals(400L * 8 * 4, cpu.recycler());
        assumeTrue(Specula.backendsCompiled().contains("cuda"), "the library was built without the cuda backend (SPECULA_CUDA=OFF or no nvcc)");
        MemoryPlan cuda = MemoryPlan.compute("cuda", SMALL, DType.F16, 123_456, 64, 1, 8, 8);
        assertTrue(cuda.weights() > 0, "cuda keeps its own copy of the weights");
        assertEquals(cuda.weights() + cuda.kvCaches() + cuda.modelScratch() + cuda.kernelScratch() + cuda.recycler(), cuda.total());
    }

    @Test
    void kernelScratchGrowsWithTreesAndBatch() {
        for (String backend : Specula.backendsCompiled()) { // cpu, and cuda where it was built
            long one = MemoryPlan.compute(backend, SMALL, DType.F16, 0, 64, 1, 1, 0).kernelScratch();
            long tree = MemoryPlan.compute(backend, SMALL, DType.F16, 0, 64, 1, 64, 8).kernelScratch();
            long batch = MemoryPlan.compute(backend, SMALL, DType.F16, 0, 64, 8, 64, 8).kernelScratch();
            assertTrue(one > 0, backend + ": verifying even one node needs scratch");
            assertTrue(tree >= one && batch >= tree && batch > one, backend + ": " + one + ", " + tree + ", " + batch);
        }
    }

    @Test
    void badRequestsNameTheField() {
        var e = assertThrows(SpeculaException.class, () -> MemoryPlan.compute("cpu", SMALL, DType.F16, 0, 0, 1, 0, 0));
        assertEquals(Status.INVALID_ARGUMENT, e.status());
        assertTrue(e.getMessage().contains("kv_capacity"), e.getMessage());
        e = assertThrows(SpeculaException.class, () -> MemoryPlan.compute("cpu", SMALL, DType.F16, 0, 64, 0, 0, 0));
        assertTrue(e.getMessage().contains("n_sequences"), e.getMessage());
        e = assertThrows(SpeculaException.class, () -> MemoryPlan.compute("tpu", SMALL, DType.F16, 0, 64, 1, 0, 0));
        assertTrue(e.getMessage().contains("tpu"), e.getMessage());
    }

    @Test
    void reserveChecksItsArgumentsAndSucceedsOnCpu() {
        try (Context ctx = Context.cpu()) {
            ctx.reserve(4, 81, 400, 8);
            ctx.reserve(1, 1, 400, 0);
            var e = assertThrows(SpeculaException.class, () -> ctx.reserve(0, 81, 400, 8));
            assertTrue(e.getMessage().contains("batch"), e.getMessage());
            assertThrows(SpeculaException.class, () -> ctx.reserve(1, 0, 400, 8));
        }
    }
}
