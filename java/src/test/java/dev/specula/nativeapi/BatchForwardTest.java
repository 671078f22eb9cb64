package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.TinyModel;
import dev.specula.model.ModelFile;
import dev.specula.model.NativeModels;
import dev.specula.model.gguf.GgmlType;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link NativeModel#forwardBatch}: several sequences in one forward give each sequence the very logits (byte for byte) that
 * it gets alone through {@link NativeModel#forward}, over prefill, tree and decode steps, with the caches kept in step by
 * {@link NativeModel#commitBatch} and {@link NativeModel#truncateBatch}; bad batches are refused with clear messages.
 */
class BatchForwardTest {
    @TempDir Path dir;

    @Test
    void batchGivesEachSequenceItsSoloLogitsF32() {
        try (TinyModel tiny = TinyModel.open(dir)) {
            compareBatchWithSolo(tiny.context, tiny.model, 11);
        }
    }

    @Test
    void batchGivesEachSequenceItsSoloLogitsQ8() {
        Path path = dir.resolve("tiny-q8.gguf");
        TinyModel.maker(2).type(GgmlType.Q8_0).write(path);
        try (Context context = Context.cpu(); ModelFile file = ModelFile.open(path)) {
            compareBatchWithSolo(context, NativeModels.load(context, file, DType.F16), 12);
        }
    }

    private static void compareBatchWithSolo(Context context, NativeModel model, long seed) {
        int vocab = model.shape().nVocab();
        SplittableRandom rng = new SplittableRandom(seed);
        int[] promptLengths = {5, 17, 1, 9};
        int n = promptLengths.length;
        List<KvCache> solo = new ArrayList<>(), batch = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            solo.add(model.newKvCache(64));
            batch.add(model.newKvCache(64));
        }
        // 1. prefill: logits of each prompt's last token, the batch's into one buffer at offsets
        List<ForwardArgs> prefill = new ArrayList<>();
        List<int[]> prompts = new ArrayList<>();
        for (int len : promptLengths) prompts.add(tokens(rng, len, vocab));
        try (DeviceBuffer shared = context.allocate((long) n * vocab * 4)) {
            for (int i = 0; i < n; i++)
                prefill.add(new ForwardArgs(prompts.get(i), null, null, ForwardArgs.LogitsMode.LAST, shared, 0, null, null, false,
                        (long) i * vocab * 4));
            model.forwardBatch(batch, prefill);
            for (int i = 0; i < n; i++) {
                try (DeviceBuffer own = context.allocate((long) vocab * 4)) {
                    model.forward(solo.get(i), ForwardArgs.chainLast(prompts.get(i), own));
                    assertSameBytes(own, 0, shared, (long) i * vocab * 4, (long) vocab * 4, "prefill, sequence " + i);
                }
            }
        }
        List<int[]> chains = new ArrayList<>();
        for (int len : promptLengths) chains.add(chain(len));
        model.commitBatch(batch, chains);
        for (int i = 0; i < n; i++) solo.get(i).commit(chains.get(i));

        // 2. a draft tree per sequence (different shapes), logits for every node
        int[][] parents = {{-1, 0, 0, 1, 1, 2}, {-1, 0, 1, 2}, {-1}, {-1, 0, 0, 0, 3, 4, 5, 5}};
        List<ForwardArgs> trees = new ArrayList<>();
        long rows = 0;
        for (int[] p : parents) rows += p.length;
        try (DeviceBuffer shared = context.allocate(rows * vocab * 4)) {
            long at = 0;
            List<int[]> treeTokens = new ArrayList<>();
            for (int[] p : parents) {
                int[] t = tokens(rng, p.length, vocab);
                treeTokens.add(t);
                trees.add(ForwardArgs.tree(t, p, shared, at * vocab * 4));
                at += p.length;
            }
            model.forwardBatch(batch, trees);
            at = 0;
            for (int i = 0; i < n; i++) {
                long bytes = (long) parents[i].length * vocab * 4;
                try (DeviceBuffer own = context.allocate(bytes)) {
                    model.forward(solo.get(i), ForwardArgs.tree(treeTokens.get(i), parents[i], own));
                    assertSameBytes(own, 0, shared, at * vocab * 4, bytes, "tree, sequence " + i);
                }
                at += parents[i].length;
            }
        }
        List<int[]> paths = List.of(new int[] {0, 2, 5}, new int[] {0, 1}, new int[] {}, new int[] {0, 3, 4, 5, 6});
        model.commitBatch(batch, paths);
        for (int i = 0; i < n; i++) solo.get(i).commit(paths.get(i));
        int[] lengths = new int[n];
        for (int i = 0; i < n; i++) {
            lengths[i] = solo.get(i).length();
            assertEquals(lengths[i], batch.get(i).length(), "committed length of sequence " + i);
        }

        // 3. drop the last committed token of each (longer than one) and decode one token each
        for (int i = 0; i < n; i++) lengths[i] = Math.max(1, lengths[i] - 1);
        model.truncateBatch(batch, lengths);
        for (int i = 0; i < n; i++) solo.get(i).truncate(lengths[i]);
        try (DeviceBuffer shared = context.allocate((long) n * vocab * 4)) {
            List<ForwardArgs> decode = new ArrayList<>();
            int[][] next = new int[n][];
            for (int i = 0; i < n; i++) {
                next[i] = tokens(rng, 1, vocab);
                decode.add(new ForwardArgs(next[i], null, null, ForwardArgs.LogitsMode.LAST, shared, 0, null, null, false,
                        (long) i * vocab * 4));
            }
            model.forwardBatch(batch, decode);
            for (int i = 0; i < n; i++) {
                try (DeviceBuffer own = context.allocate((long) vocab * 4)) {
                    model.forward(solo.get(i), ForwardArgs.chainLast(next[i], own));
                    assertSameBytes(own, 0, shared, (long) i * vocab * 4, (long) vocab * 4, "decode, sequence " + i);
                }
            }
        }
    }

    @Test
    void badBatchesAreRefusedClearly() {
        try (TinyModel tiny = TinyModel.open(dir)) {
            NativeModel model = tiny.model;
            int vocab = model.shape().nVocab();
            KvCache a = model.newKvCache(16), b = model.newKvCache(16);
            try (DeviceBuffer logits = tiny.context.allocate(4L * vocab * 4)) {
                ForwardArgs one = ForwardArgs.chainLast(new int[] {1, 2}, logits);
                SpeculaException e = assertThrows(SpeculaException.class, () -> model.forwardBatch(List.of(a, b, a), List.of(one, one, one)));
                assertEquals(Status.INVALID_ARGUMENT, e.status());
                assertTrue(e.getMessage().contains("sequences 0 and 2 name the same kv cache"), e.getMessage());

                ForwardArgs tooLong = ForwardArgs.chainLast(new int[17], logits);
                e = assertThrows(SpeculaException.class, () -> model.forwardBatch(List.of(a, b), List.of(one, tooLong)));
                assertTrue(e.getMessage().contains("sequence 1: 17 tokens do not fit"), e.getMessage());
                assertEquals(0, a.length());

                IllegalArgumentException size = assertThrows(IllegalArgumentException.class, () -> model.forwardBatch(List.of(a, b), List.of(one)));
                assertTrue(size.getMessage().contains("2 kv caches but 1 args"), size.getMessage());
                assertThrows(IllegalArgumentException.class, () -> model.forwardBatch(List.of(), List.of()));

                model.forwardBatch(List.of(a, b), List.of(one, one));
                e = assertThrows(SpeculaException.class, () -> model.commitBatch(List.of(a, b), List.of(new int[] {0, 1}, new int[] {1})));
                assertTrue(e.getMessage().contains("sequence 1: path[0] = 1 has parent 0"), e.getMessage());
                assertEquals(0, a.length(), "a refused batch commit changes no cache");
                model.commitBatch(List.of(a, b), List.of(new int[] {0, 1}, new int[] {0}));
                assertEquals(2, a.length());
                assertEquals(1, b.length());
            }
            try (Context other = Context.cpu()) {
                NativeModel foreign = NativeModels.load(other, tiny.file, DType.F32);
                KvCache theirs = foreign.newKvCache(16);
                IllegalStateException e = assertThrows(IllegalStateException.class,
                        () -> model.truncateBatch(List.of(a, theirs), new int[] {0, 0}));
                assertTrue(e.getMessage().contains("belongs to another model"), e.getMessage());
            }
        }
    }

    private static int[] tokens(SplittableRandom rng, int n, int vocab) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = rng.nextInt(vocab);
        return t;
    }

    private static int[] chain(int n) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        return p;
    }

    private static void assertSameBytes(DeviceBuffer expected, long expectedOffset, DeviceBuffer actual, long actualOffset, long bytes,
                                        String what) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment want = arena.allocate(bytes), got = arena.allocate(bytes);
            expected.copyToHost(expectedOffset, want, 0, bytes);
            actual.copyToHost(actualOffset, got, 0, bytes);
            assertEquals(-1, want.mismatch(got), what + ": the batch's logits differ from the sequence's own");
        }
    }
}
