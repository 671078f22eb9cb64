package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_heads_config;
import dev.specula.ffi.spec_heads_forward_args;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * Medusa- or Hydra-style draft heads over a target model's final hidden state (spec_heads, ABI 0.8), on the
 * target's context and with its matrix kernels. Weights are handed over as addresses that must stay valid
 * while the heads live (pass their owner to {@link #keepAlive}). Calls on one instance are serialised.
 */
public final class NativeHeads extends NativeHandle {
    /** The most heads one set may have (SPEC_HEADS_MAX). */
    public static final int MAX_HEADS = SPEC_HEADS_MAX();

    /**
     * @param nHeads      heads, 1..{@link #MAX_HEADS}
     * @param nBlocks     residual blocks per head
     * @param conditioned Hydra: head i also reads the embeddings of the root and the i tokens drafted before it
     * @param projBias    whether each vocabulary projection has a bias
     */
    public record Config(int nHeads, int nBlocks, boolean conditioned, boolean projBias) {}

    /** The head weights of specula.h's spec_head_weight_role. */
    public enum Role {
        BLOCK(SPEC_HW_BLOCK()), BLOCK_BIAS(SPEC_HW_BLOCK_BIAS()), BLOCK_RES(SPEC_HW_BLOCK_RES()),
        BLOCK_RES_BIAS(SPEC_HW_BLOCK_RES_BIAS()), PROJ(SPEC_HW_PROJ()), PROJ_BIAS(SPEC_HW_PROJ_BIAS());

        private final int code;

        Role(int code) {
            this.code = code;
        }

        public int code() {
            return code;
        }
    }

    private final Context context;
    private final NativeModel target;
    private final Config config;
    private final List<Object> keepAlive = new ArrayList<>();

    private NativeHeads(NativeModel target, Config config, MemorySegment raw) {
        super("NativeHeads(" + config.nHeads() + (config.conditioned() ? " Hydra" : " Medusa") + " heads)", target.context(), raw,
                h -> spec_heads_destroy(h));
        this.context = target.context();
        this.target = target;
        this.config = config;
    }

    /** Empty heads of config over target (finished); fails with UNSUPPORTED on backends without heads. */
    public static NativeHeads create(NativeModel target, Config config) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(spec_heads_create(target.segment(), config(arena, config), out), target.context().handle());
            return new NativeHeads(target, config, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    private static MemorySegment config(Arena arena, Config config) {
        MemorySegment c = spec_heads_config.allocate(arena);
        spec_heads_config.n_heads(c, config.nHeads());
        spec_heads_config.n_blocks(c, config.nBlocks());
        spec_heads_config.conditioned(c, config.conditioned() ? 1 : 0);
        spec_heads_config.proj_bias(c, config.projBias() ? 1 : 0);
        return c;
    }

    /**
     * The shape {rows, cols} of a head weight over a target of nEmbd and nVocab (the ABI's rule); rows = 0 when
     * that weight does not exist in such heads.
     */
    public static long[] weightShape(Config config, int nEmbd, int nVocab, Role role, int head, int block) {
        Native.ensureLoaded();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment rows = arena.allocate(ValueLayout.JAVA_LONG), cols = arena.allocate(ValueLayout.JAVA_LONG);
            Native.check(spec_head_weight_shape(config(arena, config), nEmbd, nVocab, role.code(), head, block, rows, cols), MemorySegment.NULL);
            return new long[] {rows.get(ValueLayout.JAVA_LONG, 0), cols.get(ValueLayout.JAVA_LONG, 0)};
        }
    }

    public Config config() {
        return config;
    }

    public NativeModel target() {
        return target;
    }

    public synchronized void keepAlive(Object owner) {
        keepAlive.add(owner);
    }

    /** Hands over one weight (F32, F16 or BF16, native memory); PROJ roles ignore block. */
    public synchronized void setWeight(Role role, int head, int block, DType type, MemorySegment data, long rows, long cols) {
        if (!data.isNative()) throw new IllegalArgumentException("head weight " + role + " must be native memory, not a heap array");
        Native.check(spec_heads_set_weight(segment(), role.code(), head, block, type.code(), data, data.byteSize(), rows, cols), context.handle());
    }

    /** Checks every weight is there; forward calls are possible after this. */
    public synchronized void finish() {
        Native.check(spec_heads_finalize(segment()), context.handle());
    }

    /**
     * Runs head over nRows inputs sharing the hidden state at hiddenOffset of hidden (n_embd floats): writes f32
     * [nRows][n_vocab] logits at logitsOffset. tokens: [nRows][head + 1] for conditioned heads, else null.
     */
    public synchronized void forward(int head, int nRows, DeviceBuffer hidden, long hiddenOffset, int[] tokens, DeviceBuffer logits,
                                     long logitsOffset) {
        MemorySegment h = segment();
        if (hidden.context() != context || logits.context() != context) throw new IllegalStateException("a buffer belongs to another context");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = spec_heads_forward_args.allocate(arena);
            spec_heads_forward_args.head(a, head);
            spec_heads_forward_args.n_rows(a, nRows);
            spec_heads_forward_args.hidden(a, hidden.handle());
            spec_heads_forward_args.hidden_offset(a, hiddenOffset);
            spec_heads_forward_args.tokens(a, tokens == null ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, tokens));
            spec_heads_forward_args.logits(a, logits.handle());
            spec_heads_forward_args.logits_offset(a, logitsOffset);
            Native.check(spec_heads_forward(h, a), context.handle());
        }
    }
}
