package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_recycler_draft_args;
import dev.specula.ffi.spec_recycler_update_args;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Token Recycling's adjacency matrix on a context's device: row t holds the k candidate tokens most likely
 * to follow t, best first. Updates are atomic per call; calls on one recycler are serialised, so it may be
 * shared by the sequences and threads of one context.
 */
public final class Recycler extends NativeHandle {
    public static final int DEFAULT_K = SPEC_RECYCLER_DEFAULT_K();
    public static final int MAX_K = SPEC_RECYCLER_MAX_K();

    /** How a fresh matrix is filled. */
    public enum Fill {
        ZERO(SPEC_RECYCLER_FILL_ZERO()), SELF(SPEC_RECYCLER_FILL_SELF()), RANK(SPEC_RECYCLER_FILL_RANK());

        final int code;

        Fill(int code) {
            this.code = code;
        }
    }

    /** A static tree: node 0 is the root, node i takes candidate ranks[i] of its parent's token. */
    public record Template(int[] parents, int[] ranks) {
        public Template {
            if (parents.length == 0 || parents.length != ranks.length)
                throw new IllegalArgumentException("a template needs one parent and one rank per node, and a root");
            if (parents[0] != -1) throw new IllegalArgumentException("template node 0 must be the root (parent -1)");
            for (int i = 1; i < parents.length; i++) {
                if (parents[i] < 0 || parents[i] >= i)
                    throw new IllegalArgumentException("template node " + i + " has parent " + parents[i] + ": not a tree in topological order");
                if (ranks[i] < 0 || ranks[i] >= MAX_K)
                    throw new IllegalArgumentException("template node " + i + " has rank " + ranks[i] + ", outside 0.." + (MAX_K - 1));
            }
        }

        public int size() {
            return parents.length;
        }

        public int maxRank() {
            int m = 0;
            for (int i = 1; i < ranks.length; i++) m = Math.max(m, ranks[i]);
            return m;
        }

        /** A template of the Token Recycling paper's shape: the root and 80 nodes, depth at most 6, up to 8 children per node. */
        public static Template defaultTemplate() {
            Native.ensureLoaded();
            int cap = SPEC_RECYCLER_DEFAULT_TEMPLATE_NODES();
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment p = arena.allocate(ValueLayout.JAVA_INT, cap), r = arena.allocate(ValueLayout.JAVA_INT, cap);
                MemorySegment n = arena.allocate(ValueLayout.JAVA_INT);
                Native.check(spec_recycler_default_template(p, r, cap, n), MemorySegment.NULL);
                int count = n.get(ValueLayout.JAVA_INT, 0);
                return new Template(p.asSlice(0, count * 4L).toArray(ValueLayout.JAVA_INT), r.asSlice(0, count * 4L).toArray(ValueLayout.JAVA_INT));
            }
        }
    }

    private final Context context;
    private final int nVocab;
    private final int k;

    private Recycler(Context context, MemorySegment raw, int nVocab, int k) {
        super("Recycler(" + nVocab + " x " + k + ")", context, raw, h -> spec_recycler_destroy(h));
        this.context = context;
        this.nVocab = nVocab;
        this.k = k;
    }

    public static Recycler create(Context context, int nVocab, int k, Fill fill) {
        MemorySegment ctx = context.handle();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(spec_recycler_create(ctx, nVocab, k, out), ctx);
            Recycler r = new Recycler(context, out.get(ValueLayout.ADDRESS, 0), nVocab, k);
            if (fill != Fill.ZERO) r.fill(fill);
            return r;
        }
    }

    public int vocabSize() {
        return nVocab;
    }

    public int k() {
        return k;
    }

    public Context context() {
        return context;
    }

    public synchronized void fill(Fill fill) {
        Native.check(spec_recycler_fill(segment(), fill.code), context.handle());
    }

    /** The whole matrix, row-major [nVocab][k]. */
    public synchronized int[] save() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment dst = arena.allocate(ValueLayout.JAVA_INT, (long) nVocab * k);
            Native.check(spec_recycler_save(segment(), dst, (long) nVocab * k), context.handle());
            return dst.toArray(ValueLayout.JAVA_INT);
        }
    }

    /** Replaces the matrix; every id must be below the vocabulary size (checked before anything changes). */
    public synchronized void load(int[] matrix) {
        try (Arena arena = Arena.ofConfined()) {
            Native.check(spec_recycler_load(segment(), arena.allocateFrom(ValueLayout.JAVA_INT, matrix), matrix.length), context.handle());
        }
    }

    /** After verification: every node's top-k next tokens become the row of its token, all trees in one step. */
    public synchronized void update(int maxTreeNodes, int[][] tokens, DeviceBuffer logits) {
        try (Arena arena = Arena.ofConfined()) {
            int batch = tokens.length;
            MemorySegment n = arena.allocate(ValueLayout.JAVA_INT, batch);
            MemorySegment tok = arena.allocate(ValueLayout.JAVA_INT, (long) batch * maxTreeNodes);
            for (int b = 0; b < batch; b++) {
                if (tokens[b].length > maxTreeNodes) throw new IllegalArgumentException("sequence " + b + " has more than " + maxTreeNodes + " nodes");
                n.setAtIndex(ValueLayout.JAVA_INT, b, tokens[b].length);
                MemorySegment.copy(tokens[b], 0, tok, ValueLayout.JAVA_INT, (long) b * maxTreeNodes * 4, tokens[b].length);
            }
            MemorySegment a = spec_recycler_update_args.allocate(arena);
            spec_recycler_update_args.batch(a, batch);
            spec_recycler_update_args.max_tree_nodes(a, maxTreeNodes);
            spec_recycler_update_args.n_nodes(a, n);
            spec_recycler_update_args.tokens(a, tok);
            spec_recycler_update_args.logits(a, TreeVerifier.owned(context, logits));
            Native.check(spec_recycler_update(segment(), a), context.handle());
        }
    }

    /** Expands the template from each root token; returns the trees' tokens (their parents are the template's). */
    public synchronized int[][] draft(Template template, int[] roots) {
        if (template.maxRank() >= k)
            throw new IllegalArgumentException("the template uses rank " + template.maxRank() + " but the matrix keeps only " + k + " candidates");
        try (Arena arena = Arena.ofConfined()) {
            int n = template.size(), batch = roots.length;
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT, (long) batch * n);
            MemorySegment a = spec_recycler_draft_args.allocate(arena);
            spec_recycler_draft_args.batch(a, batch);
            spec_recycler_draft_args.n_template(a, n);
            spec_recycler_draft_args.template_parents(a, arena.allocateFrom(ValueLayout.JAVA_INT, template.parents()));
            spec_recycler_draft_args.template_ranks(a, arena.allocateFrom(ValueLayout.JAVA_INT, template.ranks()));
            spec_recycler_draft_args.root_tokens(a, arena.allocateFrom(ValueLayout.JAVA_INT, roots));
            spec_recycler_draft_args.tokens(a, out);
            spec_recycler_draft_args.parents(a, MemorySegment.NULL);
            Native.check(spec_recycler_draft(segment(), a), context.handle());
            int[][] trees = new int[batch][];
            for (int b = 0; b < batch; b++) trees[b] = out.asSlice((long) b * n * 4, n * 4L).toArray(ValueLayout.JAVA_INT);
            return trees;
        }
    }
}
