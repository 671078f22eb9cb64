package dev.specula.memory;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.specula.Drafter;
import dev.specula.SpeculaEngine;
import dev.specula.model.EagleFixture;
import dev.specula.model.EagleLayerFile;
import dev.specula.model.LoadedModel;
import dev.specula.model.ModelFile;
import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.MemoryPlan;
import dev.specula.nativeapi.WeightsMemory;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.List;
import dev.specula.nativeapi.Specula;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MemoryBudgetTest {
    static final int VOCAB = 400;

    @TempDir
    static Path temp;
    static ModelFile target;
    static Path draftPath;

    @BeforeAll
    static void setUp() {
        Path t = temp.resolve("target.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(4).heads(4).kvHeads(2).ff(160).vocab(VOCAB).context(1024)
                .type(GgmlType.F32).seed(4).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(t);
        draftPath = temp.resolve("draft.gguf");
        new TestModelMaker().arch("llama").dim(32).layers(1).heads(2).kvHeads(1).ff(64).vocab(VOCAB).context(1024)
                .type(GgmlType.F32).seed(5).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(draftPath);
        target = ModelFile.open(t);
    }

    @AfterAll
    static void tearDown() {
        target.close();
    }

    static MemoryBudget.Request request(String backend, String drafter, int context, int batch, int nodes) {
        return SpeculaEngine.builder().model(target.path()).backend(Backend.parse(backend), 0).drafter(Drafter.parse(drafter))
                .draftModel(draftPath).contextLength(context).batch(batch).maxTreeNodes(nodes).memoryLimit(1L << 50).plan().requested();
    }

    static long item(MemoryBudget b, String prefix) {
        return b.items().stream().filter(i -> i.component().startsWith(prefix)).mapToLong(MemoryBudget.Item::bytes).sum();
    }

    @Test
    void itemizesTheTargetTheTreeAndTheRecycler() {
        MemoryBudget.Request r = request("cpu", "recycling", 512, 2, 81);
        MemoryBudget b = MemoryBudget.of(r);
        MemoryPlan plan = MemoryPlan.compute("cpu", target.config(), DType.F16, LoadedModel.weightBytes(target), 512, 2, 81, 8);
        // 4 layers x (K, V) x 512 positions x 2 KV heads x 16 dims x f16, and an int32 position per slot, per sequence.
        assertEquals(2L * (4 * 2 * 512 * 2 * 16 * 2 + 512 * 4), plan.kvCaches());
        assertEquals(plan.kvCaches(), item(b, "target KV caches"));
        assertEquals(plan.modelScratch(), item(b, "target forward scratch"));
        assertEquals(plan.kernelScratch(), item(b, "verify + recycling scratch"));
        assertEquals(2L * 81 * VOCAB * 4, item(b, "tree logits"));
        assertEquals((long) VOCAB * 8 * 4, item(b, "recycling matrix"));
        // On cpu the weights are the file's mapping: listed, not counted.
        MemoryBudget.Item w = b.items().get(0);
        assertTrue(w.component().contains("mapped file, not allocated"), w.component());
        assertFalse(w.counted());
        assertEquals(LoadedModel.weightBytes(target), w.bytes());
        assertEquals(plan.total() + 2L * 81 * VOCAB * 4, b.total());
        // On cuda they are a device copy and count.
        assumeTrue(Specula.backendsCompiled().contains("cuda"), "the library was built without the cuda backend (SPECULA_CUDA=OFF or no nvcc)");
        MemoryBudget cuda = MemoryBudget.of(request("cuda", "recycling", 512, 2, 81));
        assertTrue(cuda.items().get(0).counted());
        MemoryPlan cudaPlan = MemoryPlan.compute("cuda", target.config(), DType.F16, LoadedModel.weightBytes(target), 512, 2, 81, 8);
        assertEquals(cudaPlan.total() + 2L * 81 * VOCAB * 4, cuda.total());
        assertTrue(cuda.table().contains("target weights (device copy)"), cuda.table());
        // The context is capped at the model's training context, as generators cap it.
        assertEquals(1024, request("cpu", "none", 8192, 1, 1).contextLength());
    }

    @Test
    void draftModelAndEarlyExitBringTheirOwnBuffers() {
        assumeTrue(Specula.backendsCompiled().contains("cuda"), "the library was built without the cuda backend (SPECULA_CUDA=OFF or no nvcc)");
        MemoryBudget d = MemoryBudget.of(request("cuda", "draft-model", 256, 3, 16));
        MemoryPlan draft;
        try (ModelFile f = ModelFile.open(draftPath)) {
            draft = MemoryPlan.compute("cuda", f.config(), DType.F16, LoadedModel.weightBytes(f), 256, 3, 0, 0);
        }
        assertEquals(draft.weights(), item(d, "draft weights"));
        assertEquals(draft.kvCaches(), item(d, "draft KV caches"));
        assertEquals(3L * VOCAB * 4, item(d, "draft-model logits"));
        assertEquals(0, item(d, "recycling matrix"));
        MemoryBudget e = MemoryBudget.of(request("cpu", "early-exit", 256, 2, 16));
        // The engine's windowed shadow pass of 16 tokens plus its sink: 17 positions and rows; one more row for exit steps.
        assertEquals(MemoryPlan.compute("cpu", target.config(), DType.F16, 0, 17, 2, 0, 0).kvCaches(), item(e, "early-exit KV caches"));
        assertEquals(2L * 18 * VOCAB * 4, item(e, "early-exit logits"));
        assertEquals(MemoryBudget.of(request("cpu", "pld", 256, 2, 16)).total() + item(e, "early-exit"), e.total());
    }

    @Test
    void anEagleLayerCountsItsFcInputScratchOnceAndItsFeatureRowsPerSequence() {
        try (ModelFile f = ModelFile.open(draftPath)) {
            MemoryBudget.Drafting eagle = new MemoryBudget.Drafting("eagle", 0, f.config(), 1000, 300, 4, 0, 0, true, 12345, 678);
            MemoryBudget.Drafting without = new MemoryBudget.Drafting("eagle", 0, f.config(), 1000, 300, 4, 0, 0, true);
            MemoryBudget.Request r = new MemoryBudget.Request(Backend.CPU, DType.F16, target.config(), LoadedModel.weightBytes(target), 256, 3, 16, eagle);
            MemoryBudget b = MemoryBudget.of(r), base = MemoryBudget.of(new MemoryBudget.Request(Backend.CPU, DType.F16, target.config(),
                    LoadedModel.weightBytes(target), 256, 3, 16, without));
            assertEquals(12345, item(b, "eagle fc input scratch"));
            assertEquals(3L * 678, item(b, "eagle feature rows (3 sequences"));
            assertEquals(base.total() + 12345 + 3L * 678, b.total());
        }
    }

    @Test
    void refusalNamesTheTotalTheLimitAndTheLargestItems() {
        MemoryBudget.Request r = request("cpu", "recycling", 1024, 4, 81);
        MemoryBudget b = MemoryBudget.of(r);
        MemoryBudget.Limit limit = MemoryBudget.Limit.explicit(b.total() / 2);
        var e = assertThrows(MemoryBudgetException.class, () -> MemoryBudget.fit(r, MemoryPolicy.REFUSE, limit));
        String m = e.getMessage();
        assertTrue(m.contains("needs " + MemoryBudget.human(b.total())), m);
        assertTrue(m.contains(MemoryBudget.human(b.total() / 2) + " (memory limit) is available"), m);
        for (MemoryBudget.Item i : b.largest(3)) assertTrue(m.contains(i.component() + " " + MemoryBudget.human(i.bytes())), m);
        assertTrue(m.contains("largest items: " + b.largest(1).get(0).component()), m);
        assertTrue(m.contains("shrink-tree"), m);
        assertSame(limit, e.limit());
        // Fitting exactly is fitting.
        MemoryBudget.Fit fit = MemoryBudget.fit(r, MemoryPolicy.REFUSE, MemoryBudget.Limit.explicit(b.total()));
        assertFalse(fit.shrunk());
        assertEquals("", fit.shrinkNote());
        // Nothing to check against: nothing refused.
        assertFalse(MemoryBudget.fit(r, MemoryPolicy.REFUSE, MemoryBudget.Limit.unknown("no device")).checked());
    }

    @Test
    void shrinkTreeHalvesToTheLargestFittingSize() {
        MemoryBudget.Request r = request("cpu", "recycling", 512, 2, 81);
        // 81 -> 40 -> 20 fits; 40 does not.
        long limit = MemoryBudget.of(r.withMaxTreeNodes(20)).total() + 1;
        assertTrue(MemoryBudget.of(r.withMaxTreeNodes(40)).total() > limit);
        MemoryBudget.Fit fit = MemoryBudget.fit(r, MemoryPolicy.SHRINK_TREE, MemoryBudget.Limit.explicit(limit));
        assertTrue(fit.shrunk());
        assertEquals(20, fit.budget().request().maxTreeNodes());
        assertEquals(2, fit.budget().request().batch());
        assertEquals("tree shrunk from 81 to 20 nodes", fit.shrinkNote());
        assertTrue(fit.describe().contains("shrink-tree"), fit.describe());
        // Down to plain decoding, and no further.
        long plain = MemoryBudget.of(r.withMaxTreeNodes(1)).total();
        assertEquals(1, MemoryBudget.fit(r, MemoryPolicy.SHRINK_TREE, MemoryBudget.Limit.explicit(plain)).budget().request().maxTreeNodes());
        var e = assertThrows(MemoryBudgetException.class,
                () -> MemoryBudget.fit(r, MemoryPolicy.SHRINK_TREE, MemoryBudget.Limit.explicit(plain - 1)));
        assertTrue(e.getMessage().contains("even trees of 1 node (plain decoding) need " + MemoryBudget.human(plain)), e.getMessage());
        assertEquals(1, e.budget().request().maxTreeNodes());
    }

    @Test
    void shrinkBatchHalvesToTheLargestFittingBatch() {
        assumeTrue(Specula.backendsCompiled().contains("cuda"), "the library was built without the cuda backend (SPECULA_CUDA=OFF or no nvcc)");
        MemoryBudget.Request r = request("cuda", "recycling", 1024, 8, 64);
        long limit = MemoryBudget.of(r.withBatch(2)).total() + 1;
        assertTrue(MemoryBudget.of(r.withBatch(4)).total() > limit);
        MemoryBudget.Fit fit = MemoryBudget.fit(r, MemoryPolicy.SHRINK_BATCH, MemoryBudget.Limit.explicit(limit));
        assertEquals(2, fit.budget().request().batch());
        assertEquals(64, fit.budget().request().maxTreeNodes());
        assertEquals("batch shrunk from 8 to 2 sequences", fit.shrinkNote());
        long one = MemoryBudget.of(r.withBatch(1)).total();
        var e = assertThrows(MemoryBudgetException.class,
                () -> MemoryBudget.fit(r, MemoryPolicy.SHRINK_BATCH, MemoryBudget.Limit.explicit(one - 1)));
        assertTrue(e.getMessage().contains("even a batch of 1 needs " + MemoryBudget.human(one)), e.getMessage());
    }

    /**
     * The cpu backend prepacks Q8_0 matrices into anonymous memory at load (prepack_q8_weights): the budget counts
     * that copy, for the target and for a draft model, as the backend plans it. Here 4 layers of q 64, k 32, v 32, o 64,
     * gate 160, up 160 and down 64 rows plus the 400-row output, each row one started group of 512 weights (544 bytes):
     * 2,704 rows, 1,470,976 bytes, one 2 MiB page. The planned figures are what the loaded models then hold.
     */
    @Test
    void theQ8MatricesTheCpuPrepacksAreCounted() {
        Path q8 = temp.resolve("target-q8.gguf"), q8Draft = temp.resolve("draft-q8.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(4).heads(4).kvHeads(2).ff(160).vocab(VOCAB).context(1024)
                .type(GgmlType.Q8_0).seed(4).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(q8);
        new TestModelMaker().arch("llama").dim(32).layers(1).heads(2).kvHeads(1).ff(64).vocab(VOCAB).context(1024)
                .type(GgmlType.Q8_0).seed(5).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(q8Draft);
        assumeTrue(System.getenv("SPECULA_CPU_PREPACK") == null, "prepacking turned off here");
        MemoryBudget.Request r = SpeculaEngine.builder().model(q8).drafter(Drafter.DRAFT_MODEL).draftModel(q8Draft).contextLength(256)
                .memoryLimit(1L << 50).plan().requested();
        assertEquals(2L << 20, r.targetPrepackedBytes());
        assertEquals(2L << 20, r.drafting().draftPrepackedBytes());
        MemoryBudget b = MemoryBudget.of(r);
        assertEquals(2L << 20, item(b, "target matrices placed"));
        assertEquals(2L << 20, item(b, "draft matrices placed"));
        MemoryBudget.Drafting d = r.drafting();
        MemoryBudget.Drafting unpacked = new MemoryBudget.Drafting(d.name(), d.recyclerK(), d.draft(), d.draftWeightBytes(), d.draftKvPositions(),
                d.logitsRows(), d.targetKvPositions(), d.headsWeightBytes(), d.finalHidden(), d.draftInputScratch(), d.featureRowBytes());
        assertEquals(MemoryBudget.of(new MemoryBudget.Request(r.backend(), r.kvType(), r.target(), r.targetWeightBytes(),
                r.contextLength(), r.batch(), r.maxTreeNodes(), unpacked)).total() + 2 * (2L << 20), b.total());
        try (Context cpu = Context.cpu(); LoadedModel target = LoadedModel.open(cpu, q8); LoadedModel draft = LoadedModel.open(cpu, q8Draft)) {
            assertEquals(r.targetPrepackedBytes(), WeightsMemory.of(target.model()).prepacked(), "what the loaded target holds");
            assertEquals(d.draftPrepackedBytes(), WeightsMemory.of(draft.model()).prepacked(), "what the loaded draft model holds");
        }
        assertEquals(0, item(MemoryBudget.of(request("cpu", "none", 256, 1, 1)), "target matrices placed"), "an F32 file prepacks nothing");
        assertEquals(0, item(MemoryBudget.of(request("cpu", "draft-model", 256, 1, 4)), "draft matrices placed"), "nor an F32 draft");
    }

    /**
     * An EAGLE layer on a Q8_0 target: the layer reads the target's prepacked LM head (counted once, with the target)
     * instead of prepacking a copy of its own, and its fc input scratch is one native slice of rows; both as the backend
     * plans them and as the loaded layer then holds them.
     */
    @Test
    void anEagleLayerOnAQ8TargetCountsWhatTheBackendMakesOfIt() {
        Path q8 = temp.resolve("target-q8-eagle.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(VOCAB).context(1024)
                .type(GgmlType.Q8_0).seed(6).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(q8);
        Path heads = EagleFixture.forModel(q8, "F32", 7).write(temp.resolve("eagle-q8"));
        assumeTrue(System.getenv("SPECULA_CPU_PREPACK") == null, "prepacking turned off here");
        MemoryBudget.Request r = SpeculaEngine.builder().model(q8).drafter(Drafter.EAGLE).heads(heads).contextLength(256)
                .memoryLimit(1L << 50).plan().requested();
        MemoryBudget b = MemoryBudget.of(r);
        assertEquals(2L << 20, item(b, "target matrices placed"), "the target's matrices, its 400-row Q8_0 LM head among them");
        assertEquals(0, item(b, "draft matrices placed"), "the layer's own matrices are F32, and the LM head is the target's");
        assertEquals(512L * 2 * 64 * Float.BYTES, item(b, "eagle fc input scratch"));
        try (Context cpu = Context.cpu(); LoadedModel target = LoadedModel.open(cpu, q8);
             EagleLayerFile file = EagleLayerFile.open(heads, target.file().config());
             var layer = file.load(cpu, target.file().weights(), DType.F32)) {
            WeightsMemory held = WeightsMemory.of(layer);
            assertEquals(r.targetPrepackedBytes(), WeightsMemory.of(target.model()).placed(), "what the loaded target holds");
            assertEquals(r.drafting().draftPrepackedBytes(), held.placed(), "what the loaded layer holds: no LM head of its own");
            assertEquals(0, held.eagleScratch(), "no forward ran yet: the scratch grows with them, up to the plan");
        }
    }

    /**
     * The same layer budgeted for cuda (where the library has it; the plan needs no device): the eagle entry is what the
     * cuda backend plans for the layer (its input rows' device memory and the room its fc takes), not the cpu's fc
     * scratch, and nothing is prepacked; the target's embedding and LM head, which the layer reads on the device, add
     * nothing.
     */
    @Test
    void anEagleLayerBudgetedForCudaCountsWhatCudaMakesOfIt() {
        assumeTrue(Specula.backendsCompiled().contains("cuda"), "cuda is not compiled into this library");
        Path q8 = temp.resolve("target-q8-eagle-cuda.gguf");
        new TestModelMaker().arch("llama").dim(64).layers(2).heads(4).kvHeads(2).ff(160).vocab(VOCAB).context(1024)
                .type(GgmlType.Q8_0).seed(6).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(q8);
        Path heads = EagleFixture.forModel(q8, "F32", 7).write(temp.resolve("eagle-q8-cuda"));
        MemoryBudget.Request r = SpeculaEngine.builder().model(q8).backend(Backend.CUDA, 0).drafter(Drafter.EAGLE).heads(heads)
                .contextLength(256).memoryLimit(1L << 50).plan().requested();
        try (ModelFile target = ModelFile.open(q8); EagleLayerFile file = EagleLayerFile.open(heads, target.config())) {
            WeightsMemory cuda = file.memory(Backend.CUDA, List.of());
            assertTrue(cuda.eagleScratch() > 128L * 2 * 64 * Float.BYTES && cuda.prepacked() == 0, cuda.toString());
            assertEquals(cuda.eagleScratch(), r.drafting().draftInputScratch());
            assertEquals(0, r.drafting().draftPrepackedBytes());
            assertEquals(cuda.eagleScratch(), item(MemoryBudget.of(r), "eagle fc input scratch"));
        }
    }

    /**
     * SPECULA_CPU_WEIGHTS=copy: the cpu backend copies the matrices it does not prepack onto huge pages at load (here
     * every matrix of the F32 target and draft model; the token embeddings stay in place). The budget counts that copy
     * as the backend plans it, and the loaded models hold it; without the variable there is none.
     */
    @Test
    void theHugePageCopyOfTheWeightsIsCounted() throws Throwable {
        assumeTrue(System.getenv("SPECULA_CPU_WEIGHTS") == null, "SPECULA_CPU_WEIGHTS set here");
        Path f32Draft = temp.resolve("draft-f32-copy.gguf");
        new TestModelMaker().arch("llama").dim(32).layers(1).heads(2).kvHeads(1).ff(64).vocab(VOCAB).context(1024)
                .type(GgmlType.F32).seed(8).tokenizer(VocabTrainer.ggufMetadata("llama", VOCAB, 4)).write(f32Draft);
        Path f32 = temp.resolve("target.gguf");
        assertEquals(0, SpeculaEngine.builder().model(f32).contextLength(256).memoryLimit(1L << 50).plan().requested().targetPrepackedBytes());
        NativeEnvironment.set("SPECULA_CPU_WEIGHTS", "copy");
        try {
            MemoryBudget.Request r = SpeculaEngine.builder().model(f32).drafter(Drafter.DRAFT_MODEL).draftModel(f32Draft).contextLength(256)
                    .memoryLimit(1L << 50).plan().requested();
            MemoryBudget b = MemoryBudget.of(r);
            assertTrue(r.targetPrepackedBytes() > 0 && r.targetPrepackedBytes() % (2L << 20) == 0, "whole pages: " + r.targetPrepackedBytes());
            assertEquals(r.targetPrepackedBytes(), item(b, "target matrices placed"));
            assertEquals(r.drafting().draftPrepackedBytes(), item(b, "draft matrices placed"));
            assertEquals(2L << 20, r.drafting().draftPrepackedBytes());
            try (Context cpu = Context.cpu(); LoadedModel t = LoadedModel.open(cpu, f32); LoadedModel d = LoadedModel.open(cpu, f32Draft)) {
                WeightsMemory held = WeightsMemory.of(t.model());
                assertEquals(r.targetPrepackedBytes(), held.weightCopy(), "what the loaded target holds");
                assertEquals(0, held.prepacked());
                assertEquals(r.drafting().draftPrepackedBytes(), WeightsMemory.of(d.model()).weightCopy(), "what the loaded draft holds");
            }
        } finally {
            NativeEnvironment.unset("SPECULA_CPU_WEIGHTS");
        }
    }

    /** The process environment the native library reads (getenv), set through libc: System.getenv's copy cannot be. */
    static final class NativeEnvironment {
        private static final java.lang.foreign.Linker LINKER = java.lang.foreign.Linker.nativeLinker();
        private static final java.lang.invoke.MethodHandle SETENV = LINKER.downcallHandle(LINKER.defaultLookup().find("setenv").orElseThrow(),
                java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT, java.lang.foreign.ValueLayout.ADDRESS,
                        java.lang.foreign.ValueLayout.ADDRESS, java.lang.foreign.ValueLayout.JAVA_INT));
        private static final java.lang.invoke.MethodHandle UNSETENV = LINKER.downcallHandle(LINKER.defaultLookup().find("unsetenv").orElseThrow(),
                java.lang.foreign.FunctionDescriptor.of(java.lang.foreign.ValueLayout.JAVA_INT, java.lang.foreign.ValueLayout.ADDRESS));

        static void set(String name, String value) throws Throwable {
            try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
                assertEquals(0, (int) SETENV.invokeExact(a.allocateFrom(name), a.allocateFrom(value), 1));
            }
        }

        static void unset(String name) throws Throwable {
            try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
                assertEquals(0, (int) UNSETENV.invokeExact(a.allocateFrom(name)));
            }
        }
    }

    @Test
    void limitsSizesAndUnits() {
        MemoryBudget.Limit m = MemoryBudget.Limit.measured(1000, "cuda device 0 free memory", 0.05);
        assertEquals(950, m.bytes());
        assertTrue(m.describe().contains("less a 5% safety margin"), m.describe());
        MemoryBudget.Limit host = MemoryBudget.hostAvailable(0.05);
        assertTrue(host.known() && host.bytes() > 0, host.describe()); // Linux here
        assertEquals(512L << 20, MemoryBudget.parseSize("512M"));
        assertEquals(2L << 30, MemoryBudget.parseSize("2G"));
        assertEquals(3L << 29, MemoryBudget.parseSize("1.5GiB"));
        assertEquals(4096, MemoryBudget.parseSize("4096"));
        assertEquals(64L << 10, MemoryBudget.parseSize("64k"));
        for (String bad : List.of("", "G", "-1M", "lots")) assertThrows(IllegalArgumentException.class, () -> MemoryBudget.parseSize(bad));
        assertEquals("512 B", MemoryBudget.human(512));
        assertEquals("1.5 KiB", MemoryBudget.human(1536));
        assertEquals("20.0 MiB", MemoryBudget.human(20L << 20));
        assertEquals("2.5 GiB", MemoryBudget.human(5L << 29));
        assertEquals(MemoryPolicy.SHRINK_TREE, MemoryPolicy.parse("shrink-tree"));
        assertThrows(IllegalArgumentException.class, () -> MemoryPolicy.parse("grow"));
    }
}
