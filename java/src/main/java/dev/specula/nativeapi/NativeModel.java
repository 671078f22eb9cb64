package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_eagle_config;
import dev.specula.ffi.spec_eagle_forward_args;
import dev.specula.ffi.SpeculaFfi;
import dev.specula.ffi.spec_forward_args;
import dev.specula.ffi.spec_logits_summary;
import dev.specula.ffi.spec_model_config;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * A transformer's weights on a context. Weights are handed over as addresses (typically into a mapped
 * model file) that must stay valid while the model lives: pass their owner to {@link #keepAlive}.
 * Forward calls on one model are serialised; separate models run in parallel.
 */
public final class NativeModel extends NativeHandle {
    private final Context context;
    private final ModelShape shape;
    private final List<Object> keepAlive = new ArrayList<>();
    private boolean finalized;

    private NativeModel(Context context, ModelShape shape, MemorySegment raw) {
        super("NativeModel(" + shape.nLayer() + " layers, vocabulary " + shape.nVocab() + ")", context, raw, h -> spec_model_destroy(h));
        this.context = context;
        this.shape = shape;
    }

    /** Closing a model closes its KV caches and draft heads first: they point into it. */
    @Override
    void closeDependents() {
        context.closeDependentsOf(this);
    }

    /** Creates an empty model of this shape whose KV caches hold kvType (F32, F16 or BF16). */
    public static NativeModel create(Context context, ModelShape shape, DType kvType) {
        MemorySegment ctx = context.handle();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment c = config(arena, shape, kvType);
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(spec_model_create(ctx, c, out), ctx);
            return new NativeModel(context, shape, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /** spec_model_config for shape with KV caches of kvType: what spec_model_create and spec_memory_plan_compute take. */
    static MemorySegment config(Arena arena, ModelShape shape, DType kvType) {
        MemorySegment c = spec_model_config.allocate(arena);
        spec_model_config.arch(c, shape.arch().code());
        spec_model_config.n_vocab(c, shape.nVocab());
        spec_model_config.n_embd(c, shape.nEmbd());
        spec_model_config.n_layer(c, shape.nLayer());
        spec_model_config.n_head(c, shape.nHead());
        spec_model_config.n_head_kv(c, shape.nHeadKv());
        spec_model_config.head_dim(c, shape.headDim());
        spec_model_config.n_ff(c, shape.nFf());
        spec_model_config.n_ctx_train(c, shape.nCtxTrain());
        spec_model_config.rms_eps(c, shape.rmsEps());
        spec_model_config.rope_theta(c, shape.ropeTheta());
        spec_model_config.rope_style(c, shape.ropeStyle().code());
        spec_model_config.rope_dims(c, shape.ropeDims());
        spec_model_config.rope_scaling(c, shape.ropeScaling().code());
        spec_model_config.rope_factor(c, shape.ropeFactor());
        spec_model_config.rope_low_freq_factor(c, shape.ropeLowFreqFactor());
        spec_model_config.rope_high_freq_factor(c, shape.ropeHighFreqFactor());
        spec_model_config.rope_orig_ctx(c, shape.ropeOrigCtx());
        spec_model_config.kv_dtype(c, kvType.code());
        spec_model_config.sliding_window(c, shape.slidingWindow());
        spec_model_config.swa_pattern(c, shape.swaPattern());
        spec_model_config.rope_theta_local(c, shape.ropeThetaLocal());
        spec_model_config.attn_scale(c, shape.attnScale());
        return c;
    }

    public ModelShape shape() {
        return shape;
    }

    public Context context() {
        return context;
    }

    /** Keeps owner (e.g. the mapped file) reachable as long as this model. */
    public synchronized void keepAlive(Object owner) {
        keepAlive.add(owner);
    }

    /** Hands over one weight; global roles ignore layer. data must be native memory. */
    public synchronized void setWeight(WeightRole role, int layer, DType type, MemorySegment data, long rows, long cols) {
        if (!data.isNative()) throw new IllegalArgumentException("weight " + role.label() + " must be native memory, not a heap array");
        MemorySegment h = segment();
        Native.check(spec_model_set_weight(h, role.code(), layer, type.code(), data, data.byteSize(), rows, cols), context.handle());
    }

    /** Checks every needed weight is there; forward calls are possible after this. */
    public synchronized void finish() {
        Native.check(spec_model_finalize(segment()), context.handle());
        finalized = true;
    }

    public synchronized KvCache newKvCache(int capacity) {
        MemorySegment h = segment();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(spec_kv_create(h, capacity, out), context.handle());
            return new KvCache(this, out.get(ValueLayout.ADDRESS, 0), capacity);
        }
    }

    /** Runs args over kv's committed prefix; the tokens stay pending in kv until {@link KvCache#commit}. */
    public synchronized void forward(KvCache kv, ForwardArgs args) {
        MemorySegment h = segment();
        MemorySegment kvh = ownHandle(kv);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = spec_forward_args.allocate(arena);
            fillArgs(arena, a, args);
            Native.check(spec_forward(h, kvh, a), context.handle());
        }
    }

    /**
     * Runs several sequences in one forward (spec_forward_batch): sequence i runs args.get(i) over kvs.get(i). Their rows share
     * the matrix products, so the weights are read once for all of them; each sequence's outputs are those
     * {@link #forward(KvCache, ForwardArgs)} would give it alone (bit for bit on the cpu backend). The caches must be distinct
     * caches of this model, at most {@link #MAX_BATCH_SEQUENCES}. Nothing runs, and no cache changes, when any sequence is
     * refused; the message names it.
     */
    public synchronized void forwardBatch(List<KvCache> kvs, List<ForwardArgs> args) {
        MemorySegment h = segment();
        int n = checkBatch(kvs, args.size(), "args");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment handles = handles(arena, kvs);
            MemorySegment array = arena.allocate(spec_forward_args.layout(), n);
            for (int i = 0; i < n; i++) fillArgs(arena, spec_forward_args.asSlice(array, i), args.get(i));
            Native.check(spec_forward_batch(h, n, handles, array), context.handle());
        }
    }

    /**
     * Commits a path of each cache's pending tree in one call (spec_kv_commit_batch): kvs.get(i) keeps paths.get(i), as
     * {@link KvCache#commit} would. Every path is checked first; when one is refused no cache changes.
     */
    public synchronized void commitBatch(List<KvCache> kvs, List<int[]> paths) {
        int n = checkBatch(kvs, paths.size(), "paths");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment handles = handles(arena, kvs);
            MemorySegment lengths = arena.allocate(ValueLayout.JAVA_INT, n);
            MemorySegment pointers = arena.allocate(ValueLayout.ADDRESS, n);
            for (int i = 0; i < n; i++) {
                int[] path = paths.get(i);
                lengths.setAtIndex(ValueLayout.JAVA_INT, i, path.length);
                pointers.setAtIndex(ValueLayout.ADDRESS, i, path.length == 0 ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, path));
            }
            Native.check(spec_kv_commit_batch(n, handles, lengths, pointers), context.handle());
        }
    }

    /** Truncates each cache to its new length in one call (spec_kv_truncate_batch); checked first, all or nothing. */
    public synchronized void truncateBatch(List<KvCache> kvs, int[] newLengths) {
        int n = checkBatch(kvs, newLengths.length, "newLengths");
        try (Arena arena = Arena.ofConfined()) {
            Native.check(spec_kv_truncate_batch(n, handles(arena, kvs), arena.allocateFrom(ValueLayout.JAVA_INT, newLengths)),
                    context.handle());
        }
    }

    /** The most sequences one batch call takes. */
    public static final int MAX_BATCH_SEQUENCES = SPEC_MAX_FORWARD_SEQUENCES();

    // ---- ABI 0.9: EAGLE draft layers (spec_model_set_eagle): inputs fc [embd(token); feature], run by eagleForward

    /** Makes this model (not yet finished) an EAGLE draft layer, whose fc has a bias when fcBias (cpu and cuda backends). */
    public synchronized void makeEagle(boolean fcBias) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment c = spec_eagle_config.allocate(arena);
            spec_eagle_config.fc_bias(c, fcBias ? 1 : 0);
            Native.check(spec_model_set_eagle(segment(), c), context.handle());
        }
    }

    /** Hands over an EAGLE layer's fc [n_embd][2 n_embd] (bias false) or its bias [1][n_embd] (bias true). */
    public synchronized void setEagleWeight(boolean bias, DType type, MemorySegment data, long rows, long cols) {
        if (!data.isNative()) throw new IllegalArgumentException("EAGLE fc weight must be native memory, not a heap array");
        Native.check(spec_model_set_eagle_weight(segment(), bias ? SPEC_EW_FC_BIAS() : SPEC_EW_FC(), type.code(), data, data.byteSize(), rows, cols),
                context.handle());
    }

    /**
     * An EAGLE layer's forward: as {@link #forward(KvCache, ForwardArgs)}, token i entering with the feature at row
     * featureRows[i] (null: row i) of features (f32 rows of n_embd from featuresOffset on). Those rows must not overlap
     * the final hidden rows the call writes.
     */
    public synchronized void eagleForward(KvCache kv, ForwardArgs args, DeviceBuffer features, long featuresOffset, int[] featureRows) {
        eagleCall(kv, args, features, featuresOffset, featureRows, false);
    }

    /**
     * ABI 0.10: {@link #eagleForward} that keeps the cache's pending tokens and adds args' tokens after them (token i is
     * pending token pending + i; a parent indexes the whole pending tree, -1 being a root over the committed prefix;
     * null parents chain after the last pending token). Each call thus runs only its own rows, bit-identical on the cpu
     * to one call over the whole tree.
     */
    public synchronized void eagleExtend(KvCache kv, ForwardArgs args, DeviceBuffer features, long featuresOffset, int[] featureRows) {
        eagleCall(kv, args, features, featuresOffset, featureRows, true);
    }

    /**
     * ABI 0.11: {@link #eagleExtend}, then the summary of each new row's logits (k ids each; args must ask for every
     * row's logits, which are still written): what {@link LogitsSummary#summarize} of those rows gives, in one call.
     */
    public synchronized LogitsSummary[] eagleExtendSummarized(KvCache kv, ForwardArgs args, DeviceBuffer features, long featuresOffset, int[] featureRows,
            int k) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = spec_logits_summary.allocateArray(Math.max(1, args.size()), arena);
            eagleCall(arena, kv, args, features, featuresOffset, featureRows, (h, kvh, e) -> spec_eagle_forward_extend_summarize(h, kvh, e, k, out));
            return LogitsSummary.read(out, args.size(), k);
        }
    }

    private interface EagleEntry {
        int call(MemorySegment model, MemorySegment kv, MemorySegment args);
    }

    private void eagleCall(KvCache kv, ForwardArgs args, DeviceBuffer features, long featuresOffset, int[] featureRows, boolean extend) {
        try (Arena arena = Arena.ofConfined()) {
            eagleCall(arena, kv, args, features, featuresOffset, featureRows, extend ? SpeculaFfi::spec_eagle_forward_extend : SpeculaFfi::spec_eagle_forward);
        }
    }

    private void eagleCall(Arena arena, KvCache kv, ForwardArgs args, DeviceBuffer features, long featuresOffset, int[] featureRows, EagleEntry entry) {
        MemorySegment h = segment();
        MemorySegment kvh = ownHandle(kv);
        if (featureRows != null && featureRows.length != args.size())
            throw new IllegalArgumentException(featureRows.length + " feature rows for " + args.size() + " tokens");
        MemorySegment a = spec_forward_args.allocate(arena);
        fillArgs(arena, a, args);
        MemorySegment e = spec_eagle_forward_args.allocate(arena);
        spec_eagle_forward_args.forward(e, a);
        spec_eagle_forward_args.features(e, bufferHandle(features));
        spec_eagle_forward_args.features_offset(e, featuresOffset);
        spec_eagle_forward_args.feature_rows(e, featureRows == null ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, featureRows));
        Native.check(entry.call(h, kvh, e), context.handle());
    }

    private int checkBatch(List<KvCache> kvs, int others, String what) {
        int n = kvs.size();
        if (n == 0 || n > MAX_BATCH_SEQUENCES)
            throw new IllegalArgumentException("a batch has 1.." + MAX_BATCH_SEQUENCES + " sequences, got " + n);
        if (others != n) throw new IllegalArgumentException(n + " kv caches but " + others + " " + what);
        return n;
    }

    private MemorySegment handles(Arena arena, List<KvCache> kvs) {
        MemorySegment out = arena.allocate(ValueLayout.ADDRESS, kvs.size());
        for (int i = 0; i < kvs.size(); i++) out.setAtIndex(ValueLayout.ADDRESS, i, ownHandle(kvs.get(i)));
        return out;
    }

    private MemorySegment ownHandle(KvCache kv) {
        if (kv.model() != this) throw new IllegalStateException(kv.kind() + " belongs to another model");
        return kv.handle();
    }

    private void fillArgs(Arena arena, MemorySegment a, ForwardArgs args) {
        spec_forward_args.n_tokens(a, args.size());
        spec_forward_args.tokens(a, arena.allocateFrom(ValueLayout.JAVA_INT, args.tokens()));
        spec_forward_args.parents(a, args.parents() == null ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, args.parents()));
        spec_forward_args.positions(a, args.positions() == null ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, args.positions()));
        spec_forward_args.logits_mode(a, switch (args.logitsMode()) {
            case NONE -> SPEC_LOGITS_NONE();
            case ALL -> SPEC_LOGITS_ALL();
            case LAST -> SPEC_LOGITS_LAST();
        });
        spec_forward_args.logits(a, bufferHandle(args.logits()));
        spec_forward_args.exit_layer(a, args.exitLayer());
        spec_forward_args.exit_hidden(a, bufferHandle(args.exitHidden()));
        spec_forward_args.exit_logits(a, bufferHandle(args.exitLogits()));
        spec_forward_args.stop_at_exit(a, args.stopAtExit() ? 1 : 0);
        spec_forward_args.logits_offset(a, args.logitsOffset());
        spec_forward_args.final_hidden(a, bufferHandle(args.finalHidden()));
        spec_forward_args.final_hidden_offset(a, args.finalHiddenOffset());
    }

    private MemorySegment bufferHandle(DeviceBuffer b) {
        if (b == null) return MemorySegment.NULL;
        if (b.context() != context) throw new IllegalStateException(b.kind() + " belongs to another context");
        return b.handle();
    }

    public boolean finished() {
        return finalized;
    }
}
