package dev.specula.model.gguf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * Writes a GGUF file (version 3, little-endian). Metadata and tensors are declared first; {@link #write(Path)} then
 * streams the file out tensor by tensor, asking each tensor's {@link FloatSource} for its values a chunk at a time,
 * so a file of any size can be written without holding its weights in memory.
 *
 * <pre>{@code
 * new GgufWriter()
 *         .putString("general.architecture", "llama")
 *         .putUInt32("llama.block_count", 2)
 *         .addTensor("token_embd.weight", GgmlType.Q8_0, new long[] {64, 512}, (start, chunk) -> ...)
 *         .write(path);
 * }</pre>
 *
 * <p>Metadata types: the typed put methods store exactly their type. {@link #put(String, Object)} infers one from
 * the Java type (Integer → i32, Long → i64, Float → f32, Double → f64, Boolean → bool, String → string, int[] →
 * i32 array, long[] → i64 array, float[] → f32 array, double[] → f64 array, boolean[] → bool array, List of
 * String → string array, List of arrays → array of arrays), except that an Integer under a key llama.cpp reads as
 * u32 (general.alignment, general.file_type, tokenizer.ggml.*_token_id, the hyperparameters such as
 * llama.block_count) is stored as u32, because llama.cpp rejects such a key stored with another type.
 */
public final class GgufWriter {
    public static final int VERSION = 3;
    private static final int CHUNK_ELEMENTS = 1 << 16;
    private static final int BUFFER_BYTES = 1 << 20;
    private static final Pattern LLAMA_CPP_U32_KEYS = Pattern.compile(
            "general\\.(alignment|file_type|quantization_version)"
                    + "|tokenizer\\.ggml\\.[a-z_]+_token_id"
                    + "|[a-z0-9_]+\\.(context_length|embedding_length|block_count|feed_forward_length|vocab_size"
                    + "|attention\\.head_count|attention\\.head_count_kv|attention\\.key_length|attention\\.value_length"
                    + "|rope\\.dimension_count|rope\\.scaling\\.original_context_length|expert_count|expert_used_count)");

    /** Produces a tensor's values in order: elements [start, start + chunk.length) of the flattened tensor. */
    @FunctionalInterface
    public interface FloatSource {
        void fill(long start, float[] chunk);
    }

    /** An array value: its element type and its elements (a primitive array, a List of String or of ArrayValue). */
    private record ArrayValue(GgufType elementType, Object values, int length) {}

    private record Entry(GgufType type, Object value) {}

    private record TensorEntry(String name, GgmlType type, long[] dims, long elements, long nbytes,
                               FloatSource floats, MemorySegment raw) {}

    private final Map<String, Entry> metadata = new LinkedHashMap<>();
    private final Map<String, TensorEntry> tensors = new LinkedHashMap<>();
    private int alignment = GgufFile.DEFAULT_ALIGNMENT;

    /** Sets the data alignment (a power of two) and records it as general.alignment. */
    public GgufWriter alignment(int alignment) {
        if (alignment <= 0 || Integer.bitCount(alignment) != 1) {
            throw new IllegalArgumentException("alignment " + alignment + " is not a power of two");
        }
        this.alignment = alignment;
        return putUInt32(GgufFile.ALIGNMENT_KEY, alignment);
    }

    // ---------------------------------------------------------------- metadata

    public GgufWriter putString(String key, String value) {
        return put(key, GgufType.STRING, value);
    }

    public GgufWriter putUInt8(String key, int value) {
        return put(key, GgufType.UINT8, value);
    }

    public GgufWriter putInt8(String key, int value) {
        return put(key, GgufType.INT8, value);
    }

    public GgufWriter putUInt16(String key, int value) {
        return put(key, GgufType.UINT16, value);
    }

    public GgufWriter putInt16(String key, int value) {
        return put(key, GgufType.INT16, value);
    }

    public GgufWriter putUInt32(String key, long value) {
        return put(key, GgufType.UINT32, value);
    }

    public GgufWriter putInt32(String key, int value) {
        return put(key, GgufType.INT32, value);
    }

    /** The value's 64 bits as u64 (Long.toUnsignedString shows it). */
    public GgufWriter putUInt64(String key, long value) {
        return put(key, GgufType.UINT64, value);
    }

    public GgufWriter putInt64(String key, long value) {
        return put(key, GgufType.INT64, value);
    }

    public GgufWriter putFloat32(String key, float value) {
        return put(key, GgufType.FLOAT32, value);
    }

    public GgufWriter putFloat64(String key, double value) {
        return put(key, GgufType.FLOAT64, value);
    }

    public GgufWriter putBool(String key, boolean value) {
        return put(key, GgufType.BOOL, value);
    }

    /** A scalar of an explicit type; integer values must fit the type. Use putArray for arrays. */
    public GgufWriter put(String key, GgufType type, Object value) {
        checkKey(key);
        if (type == GgufType.ARRAY) return put(key, value);
        metadata.put(key, new Entry(type, scalar(key, type, value)));
        return this;
    }

    /** An array of an explicit element type: int[] for 8- to 32-bit integers, long[], float[], double[], boolean[], a List. */
    public GgufWriter putArray(String key, GgufType elementType, Object values) {
        checkKey(key);
        metadata.put(key, new Entry(GgufType.ARRAY, array(key, elementType, values)));
        return this;
    }

    /** A value whose GGUF type is inferred from its Java type (see the class comment). */
    public GgufWriter put(String key, Object value) {
        checkKey(key);
        if (value == null) throw new IllegalArgumentException("metadata key '" + key + "': value is null");
        GgufType type = inferType(key, value);
        if (type == GgufType.ARRAY) {
            metadata.put(key, new Entry(type, inferArray(key, value)));
        } else {
            metadata.put(key, new Entry(type, scalar(key, type, value)));
        }
        return this;
    }

    /** Every entry of a map, in its iteration order, with inferred types. */
    public GgufWriter putAll(Map<String, ?> entries) {
        entries.forEach(this::put);
        return this;
    }

    /** Copies a metadata entry of a GGUF file with the exact type it had there. */
    public GgufWriter copy(GgufFile from, String key) {
        GgufType type = from.valueType(key);
        if (type == null) throw new IllegalArgumentException(from.path() + " has no metadata key '" + key + "'");
        Object value = from.get(key);
        if (type != GgufType.ARRAY) return put(key, type, value);
        GgufType element = from.arrayElementType(key);
        return element == GgufType.ARRAY ? put(key, value) : putArray(key, element, value);
    }

    // ---------------------------------------------------------------- tensors

    /**
     * A tensor whose values come from source when the file is written, encoded as type (F32, F16, BF16, Q8_0 or
     * Q4_0). dims lists the innermost dimension first: a [rows][cols] matrix is {cols, rows}.
     */
    public GgufWriter addTensor(String name, GgmlType type, long[] dims, FloatSource source) {
        if (!GgmlQuant.supports(type)) {
            throw new IllegalArgumentException("tensor '" + name + "': cannot encode floats as " + type
                    + " (supported: " + GgmlQuant.SUPPORTED + "); give raw bytes instead");
        }
        return add(name, type, dims, source, null);
    }

    /** A tensor from values already in memory, encoded as type when the file is written. */
    public GgufWriter addTensor(String name, GgmlType type, long[] dims, float[] values) {
        long elements = elements(name, type, dims);
        if (values.length != elements) {
            throw new IllegalArgumentException("tensor '" + name + "': dims " + Arrays.toString(dims) + " hold "
                    + elements + " values, got " + values.length);
        }
        return addTensor(name, type, dims, (start, chunk) -> System.arraycopy(values, (int) start, chunk, 0, chunk.length));
    }

    /** A tensor given as bytes already in type's encoding (any GGML type). */
    public GgufWriter addRawTensor(String name, GgmlType type, long[] dims, byte[] data) {
        return addRawTensor(name, type, dims, MemorySegment.ofArray(data));
    }

    /** A tensor given as bytes already in type's encoding; data must stay readable until write returns. */
    public GgufWriter addRawTensor(String name, GgmlType type, long[] dims, MemorySegment data) {
        return add(name, type, dims, null, data);
    }

    private GgufWriter add(String name, GgmlType type, long[] dims, FloatSource floats, MemorySegment raw) {
        if (name == null || name.isEmpty()) throw new IllegalArgumentException("tensor name is empty");
        if (tensors.containsKey(name)) throw new IllegalArgumentException("duplicate tensor name '" + name + "'");
        long elements = elements(name, type, dims);
        long nbytes = type.bytesFor(elements);
        if (raw != null && raw.byteSize() != nbytes) {
            throw new IllegalArgumentException("tensor '" + name + "': " + type + " " + Arrays.toString(dims) + " takes "
                    + nbytes + " bytes, got " + raw.byteSize());
        }
        tensors.put(name, new TensorEntry(name, type, dims.clone(), elements, nbytes, floats, raw));
        return this;
    }

    private static long elements(String name, GgmlType type, long[] dims) {
        if (dims.length < 1 || dims.length > GgufFile.MAX_DIMS) {
            throw new IllegalArgumentException("tensor '" + name + "': " + dims.length + " dims (must be 1 to 4)");
        }
        long n = 1;
        for (long d : dims) {
            if (d <= 0) throw new IllegalArgumentException("tensor '" + name + "': dims " + Arrays.toString(dims) + " must be positive");
            n = Math.multiplyExact(n, d);
        }
        if (dims[0] % type.blockSize() != 0) {
            throw new IllegalArgumentException("tensor '" + name + "': rows of " + dims[0] + " are not a multiple of the "
                    + type + " block size " + type.blockSize());
        }
        return n;
    }

    // ---------------------------------------------------------------- writing

    /**
     * Writes the file. It goes to a temporary file beside path first and is renamed into place when complete, so
     * a failure never leaves a half-written file under path.
     */
    public void write(Path path) {
        Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                    StandardOpenOption.TRUNCATE_EXISTING)) {
                Out out = new Out(ch);
                writeHeader(out);
                out.pad(alignment);
                for (TensorEntry t : tensors.values()) {
                    writeData(out, t);
                    out.pad(alignment);
                }
                out.flush();
            }
            try {
                Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + path + ": " + e.getMessage(), e);
        } finally {
            try {
                Files.deleteIfExists(tmp);
            } catch (IOException ignored) {
                // the rename already consumed it, or the original error matters more
            }
        }
    }

    private void writeHeader(Out out) throws IOException {
        out.bytes(GgufFile.MAGIC);
        out.u32(VERSION);
        out.u64(tensors.size());
        out.u64(metadata.size());
        for (Map.Entry<String, Entry> e : metadata.entrySet()) {
            out.string(e.getKey());
            out.u32(e.getValue().type().id());
            writeValue(out, e.getValue().type(), e.getValue().value());
        }
        long offset = 0;
        for (TensorEntry t : tensors.values()) {
            out.string(t.name());
            out.u32(t.dims().length);
            for (long d : t.dims()) out.u64(d);
            out.u32(t.type().id());
            out.u64(offset);
            offset = GgufFile.alignUp(offset + t.nbytes(), alignment);
        }
    }

    private static void writeValue(Out out, GgufType type, Object v) throws IOException {
        switch (type) {
            case UINT8, INT8 -> out.u8(((Number) v).intValue());
            case UINT16, INT16 -> out.u16(((Number) v).intValue());
            case UINT32, INT32 -> out.u32(((Number) v).intValue());
            case UINT64, INT64 -> out.u64(((Number) v).longValue());
            case FLOAT32 -> out.u32(Float.floatToRawIntBits((Float) v));
            case FLOAT64 -> out.u64(Double.doubleToRawLongBits((Double) v));
            case BOOL -> out.u8((Boolean) v ? 1 : 0);
            case STRING -> out.string((String) v);
            case ARRAY -> writeArray(out, (ArrayValue) v);
        }
    }

    private static void writeArray(Out out, ArrayValue a) throws IOException {
        out.u32(a.elementType().id());
        out.u64(a.length());
        switch (a.elementType()) {
            case UINT8, INT8 -> {
                for (int x : (int[]) a.values()) out.u8(x);
            }
            case UINT16, INT16 -> {
                for (int x : (int[]) a.values()) out.u16(x);
            }
            case UINT32, INT32 -> {
                for (int x : (int[]) a.values()) out.u32(x);
            }
            case UINT64, INT64 -> {
                for (long x : (long[]) a.values()) out.u64(x);
            }
            case FLOAT32 -> {
                for (float x : (float[]) a.values()) out.u32(Float.floatToRawIntBits(x));
            }
            case FLOAT64 -> {
                for (double x : (double[]) a.values()) out.u64(Double.doubleToRawLongBits(x));
            }
            case BOOL -> {
                for (boolean x : (boolean[]) a.values()) out.u8(x ? 1 : 0);
            }
            case STRING -> {
                for (Object s : (List<?>) a.values()) out.string((String) s);
            }
            case ARRAY -> {
                for (Object inner : (List<?>) a.values()) writeArray(out, (ArrayValue) inner);
            }
        }
    }

    private static void writeData(Out out, TensorEntry t) throws IOException {
        if (t.raw() != null) {
            out.segment(t.raw());
            return;
        }
        int chunkElements = (int) Math.min(CHUNK_ELEMENTS, t.elements());
        float[] chunk = new float[chunkElements];
        byte[] encoded = new byte[(int) t.type().bytesFor(chunkElements)];
        for (long start = 0; start < t.elements(); start += chunk.length) {
            long left = t.elements() - start;
            if (left < chunk.length) chunk = new float[(int) left];
            t.floats().fill(start, chunk);
            int n = GgmlQuant.encode(t.type(), chunk, 0, chunk.length, encoded, 0);
            out.bytes(encoded, n);
        }
    }

    // ---------------------------------------------------------------- value checks

    private static void checkKey(String key) {
        if (key == null || key.isEmpty()) throw new IllegalArgumentException("metadata key is empty");
    }

    /** Whether llama.cpp reads this key as u32 (and refuses it stored as anything else). */
    static boolean llamaCppReadsAsU32(String key) {
        return LLAMA_CPP_U32_KEYS.matcher(key).matches();
    }

    private static GgufType inferType(String key, Object v) {
        return switch (v) {
            case String _ -> GgufType.STRING;
            case Boolean _ -> GgufType.BOOL;
            case Integer i -> i >= 0 && llamaCppReadsAsU32(key) ? GgufType.UINT32 : GgufType.INT32;
            case Long _ -> GgufType.INT64;
            case Float _ -> GgufType.FLOAT32;
            case Double _ -> GgufType.FLOAT64;
            case Short _ -> GgufType.INT16;
            case Byte _ -> GgufType.INT8;
            case int[] _ -> GgufType.ARRAY;
            case long[] _ -> GgufType.ARRAY;
            case float[] _ -> GgufType.ARRAY;
            case double[] _ -> GgufType.ARRAY;
            case boolean[] _ -> GgufType.ARRAY;
            case List<?> _ -> GgufType.ARRAY;
            default -> throw new IllegalArgumentException("metadata key '" + key + "': cannot store a "
                    + v.getClass().getName() + " in GGUF");
        };
    }

    private static ArrayValue inferArray(String key, Object v) {
        return switch (v) {
            case int[] a -> array(key, GgufType.INT32, a);
            case long[] a -> array(key, GgufType.INT64, a);
            case float[] a -> array(key, GgufType.FLOAT32, a);
            case double[] a -> array(key, GgufType.FLOAT64, a);
            case boolean[] a -> array(key, GgufType.BOOL, a);
            case List<?> l -> {
                if (l.isEmpty() || l.getFirst() instanceof String) yield array(key, GgufType.STRING, l);
                if (l.stream().allMatch(x -> x != null && inferType(key, x) == GgufType.ARRAY)) {
                    yield array(key, GgufType.ARRAY, l);
                }
                // A list of boxed scalars: store it as the array of the first element's type.
                GgufType element = inferType(key, l.getFirst());
                yield array(key, element, boxedToArray(key, element, l));
            }
            default -> throw new IllegalArgumentException("metadata key '" + key + "': " + v.getClass().getName() + " is not an array");
        };
    }

    private static Object boxedToArray(String key, GgufType element, List<?> l) {
        try {
            return switch (element) {
                case UINT8, INT8, UINT16, INT16, UINT32, INT32 -> l.stream().mapToInt(x -> ((Number) x).intValue()).toArray();
                case UINT64, INT64 -> l.stream().mapToLong(x -> ((Number) x).longValue()).toArray();
                case FLOAT32 -> {
                    float[] a = new float[l.size()];
                    for (int i = 0; i < a.length; i++) a[i] = (Float) l.get(i);
                    yield a;
                }
                case FLOAT64 -> l.stream().mapToDouble(x -> (Double) x).toArray();
                case BOOL -> {
                    boolean[] a = new boolean[l.size()];
                    for (int i = 0; i < a.length; i++) a[i] = (Boolean) l.get(i);
                    yield a;
                }
                default -> throw new IllegalArgumentException("metadata key '" + key + "': mixed list");
            };
        } catch (ClassCastException | NullPointerException e) {
            throw new IllegalArgumentException("metadata key '" + key + "': the list mixes element types", e);
        }
    }

    private static ArrayValue array(String key, GgufType element, Object values) {
        String what = "metadata key '" + key + "'";
        return switch (element) {
            case UINT8, INT8, UINT16, INT16, UINT32, INT32 -> {
                if (!(values instanceof int[] a)) throw new IllegalArgumentException(what + ": an " + element + " array needs an int[]");
                for (int x : a) {
                    if (element != GgufType.UINT32 && element != GgufType.INT32) scalar(key, element, x);
                }
                yield new ArrayValue(element, a.clone(), a.length);
            }
            case UINT64, INT64 -> {
                if (!(values instanceof long[] a)) throw new IllegalArgumentException(what + ": an " + element + " array needs a long[]");
                yield new ArrayValue(element, a.clone(), a.length);
            }
            case FLOAT32 -> {
                if (!(values instanceof float[] a)) throw new IllegalArgumentException(what + ": an f32 array needs a float[]");
                yield new ArrayValue(element, a.clone(), a.length);
            }
            case FLOAT64 -> {
                if (!(values instanceof double[] a)) throw new IllegalArgumentException(what + ": an f64 array needs a double[]");
                yield new ArrayValue(element, a.clone(), a.length);
            }
            case BOOL -> {
                if (!(values instanceof boolean[] a)) throw new IllegalArgumentException(what + ": a bool array needs a boolean[]");
                yield new ArrayValue(element, a.clone(), a.length);
            }
            case STRING -> {
                if (!(values instanceof List<?> l) || !l.stream().allMatch(x -> x instanceof String)) {
                    throw new IllegalArgumentException(what + ": a string array needs a List of String");
                }
                yield new ArrayValue(element, List.copyOf(l), l.size());
            }
            case ARRAY -> {
                if (!(values instanceof List<?> l)) throw new IllegalArgumentException(what + ": an array of arrays needs a List");
                List<ArrayValue> inner = new ArrayList<>();
                for (Object x : l) inner.add(x instanceof ArrayValue av ? av : inferArray(key, x));
                yield new ArrayValue(element, inner, inner.size());
            }
        };
    }

    /** Checks a scalar against its type's range and normalizes it to the boxed type writeValue expects. */
    private static Object scalar(String key, GgufType type, Object v) {
        String what = "metadata key '" + key + "'";
        if (v == null) throw new IllegalArgumentException(what + ": value is null");
        switch (type) {
            case STRING -> {
                if (v instanceof String) return v;
            }
            case BOOL -> {
                if (v instanceof Boolean) return v;
            }
            case FLOAT32 -> {
                if (v instanceof Float || v instanceof Double) return ((Number) v).floatValue();
            }
            case FLOAT64 -> {
                if (v instanceof Float || v instanceof Double) return ((Number) v).doubleValue();
            }
            case UINT64, INT64 -> {
                if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte) return ((Number) v).longValue();
            }
            default -> {
                if (v instanceof Long || v instanceof Integer || v instanceof Short || v instanceof Byte) {
                    long x = ((Number) v).longValue();
                    long min = switch (type) {
                        case INT8 -> Byte.MIN_VALUE;
                        case INT16 -> Short.MIN_VALUE;
                        case INT32 -> Integer.MIN_VALUE;
                        default -> 0;
                    };
                    long max = switch (type) {
                        case UINT8 -> 0xff;
                        case INT8 -> Byte.MAX_VALUE;
                        case UINT16 -> 0xffff;
                        case INT16 -> Short.MAX_VALUE;
                        case UINT32 -> 0xffffffffL;
                        default -> Integer.MAX_VALUE;
                    };
                    if (x < min || x > max) throw new IllegalArgumentException(what + ": " + x + " does not fit " + type);
                    return x;
                }
            }
        }
        throw new IllegalArgumentException(what + ": a " + v.getClass().getSimpleName() + " cannot be stored as " + type);
    }

    /** A buffered little-endian channel writer that counts the bytes it wrote. */
    private static final class Out {
        private final FileChannel channel;
        private final ByteBuffer buf = ByteBuffer.allocate(BUFFER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        private long written;

        Out(FileChannel channel) {
            this.channel = channel;
        }

        private void room(int n) throws IOException {
            if (buf.remaining() < n) flush();
        }

        void u8(int v) throws IOException {
            room(1);
            buf.put((byte) v);
            written += 1;
        }

        void u16(int v) throws IOException {
            room(2);
            buf.putShort((short) v);
            written += 2;
        }

        void u32(long v) throws IOException {
            room(4);
            buf.putInt((int) v);
            written += 4;
        }

        void u64(long v) throws IOException {
            room(8);
            buf.putLong(v);
            written += 8;
        }

        void string(String s) throws IOException {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            bytes(b);
        }

        void bytes(byte[] b) throws IOException {
            bytes(b, b.length);
        }

        void bytes(byte[] b, int n) throws IOException {
            for (int at = 0; at < n; ) {
                if (!buf.hasRemaining()) flush();
                int k = Math.min(buf.remaining(), n - at);
                buf.put(b, at, k);
                at += k;
            }
            written += n;
        }

        void segment(MemorySegment s) throws IOException {
            flush();
            for (long at = 0; at < s.byteSize(); ) {
                long k = Math.min(1L << 30, s.byteSize() - at);
                ByteBuffer piece = s.asSlice(at, k).asByteBuffer();
                while (piece.hasRemaining()) channel.write(piece);
                at += k;
            }
            written += s.byteSize();
        }

        void pad(int alignment) throws IOException {
            long target = GgufFile.alignUp(written, alignment);
            while (written < target) u8(0);
        }

        void flush() throws IOException {
            buf.flip();
            while (buf.hasRemaining()) channel.write(buf);
            buf.clear();
        }
    }
}
