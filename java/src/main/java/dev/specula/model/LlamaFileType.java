package dev.specula.model;

import dev.specula.model.gguf.GgmlType;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * llama.cpp's file types (llama_ftype, stored as {@code general.file_type}) and the type each tensor of a llama or
 * qwen2 model gets in a file of that type, following llama.cpp's quantizer (src/llama-quant.cpp) for models
 * without experts and without an importance matrix:
 * <ul>
 *   <li>{@code output.weight}, and the token embeddings when they are tied to it, are Q6_K (Q8_0 files keep Q8_0,
 *       and a row length that is not a multiple of the base type's block gives Q8_0);
 *   <li>attn_v and ffn_down get more bits on some layers (Q4_K_M and Q5_K_M: Q6_K on the first and last eighth and
 *       every third layer between; Q3_K_M: Q5_K/Q4_K by position; Q2_K: Q3_K or Q4_K), and attn_output gets more in
 *       Q2_K and Q3_K_M files;
 *   <li>a tensor whose rows are not a multiple of its type's block falls back: Q2_K and Q3_K to Q4_0, Q4_K to Q5_0,
 *       Q5_K to Q5_1, Q6_K to Q8_0, and anything still not fitting to F16.
 * </ul>
 * A pure file ({@code llama-quantize --pure}) gives every matrix the base type, fallbacks aside.
 */
public enum LlamaFileType {
    F32(0, GgmlType.F32),
    F16(1, GgmlType.F16),
    Q4_0(2, GgmlType.Q4_0),
    Q4_1(3, GgmlType.Q4_1),
    Q8_0(7, GgmlType.Q8_0),
    Q5_0(8, GgmlType.Q5_0),
    Q5_1(9, GgmlType.Q5_1),
    Q2_K(10, GgmlType.Q2_K),
    Q3_K_S(11, GgmlType.Q3_K),
    Q3_K_M(12, GgmlType.Q3_K),
    Q4_K_S(14, GgmlType.Q4_K),
    Q4_K_M(15, GgmlType.Q4_K),
    Q5_K_S(16, GgmlType.Q5_K),
    Q5_K_M(17, GgmlType.Q5_K),
    Q6_K(18, GgmlType.Q6_K),
    BF16(32, GgmlType.BF16);

    private final int id;
    private final GgmlType base;

    LlamaFileType(int id, GgmlType base) {
        this.id = id;
        this.base = base;
    }

    /** The value llama.cpp stores in general.file_type. */
    public int id() {
        return id;
    }

    /** The type most matrices get. */
    public GgmlType base() {
        return base;
    }

    public boolean quantized() {
        return base != GgmlType.F32 && base != GgmlType.F16 && base != GgmlType.BF16;
    }

    /** The file type whose matrices are all of type t (pure), as llama-quantize --pure labels it. */
    public static LlamaFileType pureOf(GgmlType t) {
        return switch (t) {
            case Q3_K -> Q3_K_S;
            case Q4_K -> Q4_K_S;
            case Q5_K -> Q5_K_S;
            default -> Arrays.stream(values()).filter(f -> f.base == t).findFirst()
                    .orElseThrow(() -> new IllegalArgumentException("no llama.cpp file type stores " + t));
        };
    }

    /**
     * A file type by name, case-insensitive. The names of single k-quant types (Q3_K, Q4_K, Q5_K) are not file types
     * in llama.cpp; they name a pure file of that type, so pure is then forced.
     */
    public static Choice parse(String name) {
        String n = name.trim().toUpperCase(Locale.ROOT);
        for (LlamaFileType f : values()) if (f.name().equals(n)) return new Choice(f, false);
        for (GgmlType t : new GgmlType[] {GgmlType.Q3_K, GgmlType.Q4_K, GgmlType.Q5_K}) {
            if (t.name().equals(n)) return new Choice(pureOf(t), true);
        }
        throw new IllegalArgumentException("unknown type '" + name + "': use one of " + names());
    }

    /** Every name parse accepts. */
    public static String names() {
        return Arrays.stream(values()).map(Enum::name).collect(Collectors.joining(", ")) + ", Q3_K, Q4_K, Q5_K";
    }

    /** A parsed --type: the file type and whether every matrix gets its base type. */
    public record Choice(LlamaFileType fileType, boolean pure) {}

    /** What a matrix is, for the type rules. */
    public enum Role { TOKEN_EMBD, OUTPUT, ATTN_Q, ATTN_K, ATTN_V, ATTN_OUTPUT, FFN_GATE, FFN_UP, FFN_DOWN }

    /**
     * The type of one matrix: role, its layer (any value for the global ones), the number of layers, its row length
     * (GGUF's innermost dimension), whether the embeddings are tied to the output, and heads per kv head.
     */
    public GgmlType typeOf(Role role, int layer, int nLayer, long rowLength, boolean tied, int nGqa, boolean pure) {
        if (!quantized()) return base;
        GgmlType t = pure ? base : mixType(role, layer, nLayer, rowLength, tied, nGqa);
        return fallback(t, rowLength);
    }

    private GgmlType mixType(Role role, int layer, int nLayer, long rowLength, boolean tied, int nGqa) {
        if (role == Role.OUTPUT || (tied && role == Role.TOKEN_EMBD)) {
            if (rowLength % base.blockSize() != 0) return GgmlType.Q8_0;
            return base == GgmlType.Q8_0 ? base : GgmlType.Q6_K;
        }
        return switch (role) {
            case ATTN_V -> switch (this) {
                case Q2_K -> nGqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
                case Q3_K_M -> layer < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
                case Q4_K_M, Q5_K_M -> useMoreBits(layer, nLayer) ? GgmlType.Q6_K : base;
                case Q4_K_S -> layer < 4 ? GgmlType.Q5_K : base;
                default -> base;
            };
            case FFN_DOWN -> switch (this) {
                case Q2_K -> GgmlType.Q3_K;
                case Q3_K_M -> layer < nLayer / 16 ? GgmlType.Q5_K : GgmlType.Q4_K;
                case Q4_K_M, Q5_K_M -> useMoreBits(layer, nLayer) ? GgmlType.Q6_K : base;
                case Q4_K_S -> layer < nLayer / 8 ? GgmlType.Q5_K : base;
                default -> base;
            };
            case ATTN_OUTPUT -> switch (this) {
                case Q2_K -> GgmlType.Q3_K;
                case Q3_K_M -> GgmlType.Q4_K;
                default -> base;
            };
            default -> base;
        };
    }

    /** llama.cpp's choice of layers that get more bits: the first and last eighth, and every third between. */
    static boolean useMoreBits(int layer, int nLayer) {
        return layer < nLayer / 8 || layer >= 7 * nLayer / 8 || (layer - nLayer / 8) % 3 == 2;
    }

    /** The type a row of rowLength can hold when t's blocks do not divide it. */
    static GgmlType fallback(GgmlType t, long rowLength) {
        if (rowLength % t.blockSize() == 0) return t;
        GgmlType f = switch (t) {
            case Q2_K, Q3_K -> GgmlType.Q4_0;
            case Q4_K -> GgmlType.Q5_0;
            case Q5_K -> GgmlType.Q5_1;
            case Q6_K -> GgmlType.Q8_0;
            default -> GgmlType.F16;
        };
        return rowLength % f.blockSize() == 0 ? f : GgmlType.F16;
    }
}
