package dev.specula.model.gguf;

import dev.specula.model.ModelFormatException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalDouble;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * A GGUF file (versions 2 and 3, little-endian), memory-mapped. The header, metadata and tensor directory are
 * parsed and checked when the file is opened; tensor data stays in the mapping and is handed out as slices of it,
 * valid until {@link #close()}.
 *
 * <p>Metadata values become: u8, i8, u16, i16, i32 → Integer; u32 → Integer when it fits, else Long; u64, i64 →
 * Long; f32 → Float; f64 → Double; bool → Boolean; string → String. Arrays of strings → List&lt;String&gt;; of 8-,
 * 16- and 32-bit integers → int[] (u32 keeps its bits); of 64-bit integers → long[]; f32 → float[]; f64 →
 * double[]; bool → boolean[]; arrays of arrays → List&lt;Object&gt;.
 *
 * <p>Every problem with the file, including a missing or unreadable file, is a {@link ModelFormatException} that
 * names the file. Lengths and counts are checked against the bytes left in the file before anything is allocated,
 * so a lying length field cannot exhaust memory.
 */
public final class GgufFile implements AutoCloseable {
    /** "GGUF" as the first four bytes. */
    static final byte[] MAGIC = {'G', 'G', 'U', 'F'};
    public static final int DEFAULT_ALIGNMENT = 32;
    public static final String ALIGNMENT_KEY = "general.alignment";
    public static final int MAX_DIMS = 4;
    /** Deeper nesting than any real file uses; bounds recursion so a crafted file cannot overflow the stack. */
    static final int MAX_ARRAY_NESTING = 8;
    /** Bytes the smallest tensor directory entry takes: empty name, n_dims, one dim, type, offset. */
    private static final int MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
    /** Bytes the smallest metadata entry takes: empty key, type, a one-byte value. */
    private static final int MIN_KV_BYTES = 8 + 4 + 1;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final MemorySegment file;
    private final int version;
    private final Map<String, Object> metadata = new LinkedHashMap<>();
    private final Map<String, GgufType> types = new HashMap<>();
    private final Map<String, GgufType> elementTypes = new HashMap<>();
    private final Map<String, GgufTensor> tensors = new LinkedHashMap<>();
    private final int alignment;
    private final long dataOffset;
    private boolean closed;

    /** Maps and parses a GGUF file. Throws ModelFormatException naming the file for any problem. */
    public static GgufFile open(Path path) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment segment;
            try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
                segment = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
            }
            return new GgufFile(path, arena, segment);
        } catch (IOException e) {
            arena.close();
            throw new ModelFormatException(path, "cannot read the file (" + e + ")", e);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private GgufFile(Path path, Arena arena, MemorySegment file) {
        this.path = path;
        this.arena = arena;
        this.file = file;
        Cursor in = new Cursor();

        byte[] magic = in.bytes(4, "the magic number");
        if (!java.util.Arrays.equals(magic, MAGIC)) {
            throw fail("wrong magic " + hex(magic) + " (a GGUF file starts with \"GGUF\")");
        }
        long v = in.u32("the version");
        if (v == 2 || v == 3) {
            version = (int) v;
        } else if (Integer.reverseBytes((int) v) == 2 || Integer.reverseBytes((int) v) == 3) {
            throw fail("big-endian GGUF files are not supported (version field " + v + ")");
        } else {
            throw fail("unsupported GGUF version " + v + " (supported: 2, 3)");
        }
        long tensorCount = in.count("tensor count", MIN_TENSOR_INFO_BYTES);
        long kvCount = in.count("metadata entry count", MIN_KV_BYTES);

        for (long i = 0; i < kvCount; i++) {
            String key = in.string("the key of metadata entry #" + i);
            if (metadata.containsKey(key)) throw fail("duplicate metadata key '" + key + "'");
            GgufType type = in.valueType("metadata key '" + key + "'");
            metadata.put(key, in.value(type, key, 0));
            types.put(key, type);
        }
        alignment = readAlignment();

        for (long i = 0; i < tensorCount; i++) {
            String name = in.string("the name of tensor #" + i);
            if (tensors.containsKey(name)) throw fail("duplicate tensor name '" + name + "'");
            tensors.put(name, in.tensorInfo(name));
        }
        dataOffset = alignUp(in.pos, alignment);
        if (tensorCount > 0 && dataOffset > file.byteSize()) {
            throw fail("truncated: the data section would start at byte " + dataOffset + " but the file has "
                    + file.byteSize() + " bytes");
        }
        // The directory gave offsets and types; now that the data section's start is known, slice each tensor.
        for (Map.Entry<String, GgufTensor> e : tensors.entrySet()) {
            GgufTensor info = e.getValue();
            e.setValue(new GgufTensor(info.name(), info.type(), info.dims(), info.offset(), slice(info)));
        }
        checkOverlaps();
    }

    public Path path() {
        return path;
    }

    public int version() {
        return version;
    }

    public long fileSize() {
        return file.byteSize();
    }

    /** Alignment of tensor data: general.alignment, or 32. */
    public int alignment() {
        return alignment;
    }

    /** Where the data section starts, in bytes from the start of the file. */
    public long dataOffset() {
        return dataOffset;
    }

    // ---------------------------------------------------------------- metadata

    /** Every metadata entry in file order. Arrays inside are the parsed arrays themselves: do not modify them. */
    public Map<String, Object> metadata() {
        return Collections.unmodifiableMap(metadata);
    }

    public boolean contains(String key) {
        return metadata.containsKey(key);
    }

    /** The GGUF type a key was stored with, or null when it is absent. */
    public GgufType valueType(String key) {
        return types.get(key);
    }

    /** The element type of an array-valued key, or null when the key is absent or no array. */
    public GgufType arrayElementType(String key) {
        return types.get(key) == GgufType.ARRAY ? elementTypes.get(key) : null;
    }

    public Optional<Object> find(String key) {
        return Optional.ofNullable(metadata.get(key));
    }

    public Object get(String key) {
        Object value = metadata.get(key);
        if (value == null) throw fail("missing metadata key '" + key + "'");
        return value;
    }

    public String getString(String key) {
        return findString(key).orElseThrow(() -> missing(key));
    }

    public Optional<String> findString(String key) {
        Object v = metadata.get(key);
        if (v == null) return Optional.empty();
        if (v instanceof String s) return Optional.of(s);
        throw wrongType(key, "a string");
    }

    public int getInt(String key) {
        return findInt(key).orElseThrow(() -> missing(key));
    }

    /** An integer of any width whose value fits in an int. */
    public OptionalInt findInt(String key) {
        OptionalLong v = findLong(key);
        if (v.isEmpty()) return OptionalInt.empty();
        long x = v.getAsLong();
        if (x != (int) x) throw fail("metadata key '" + key + "' = " + x + " does not fit in a 32-bit int");
        return OptionalInt.of((int) x);
    }

    public long getLong(String key) {
        return findLong(key).orElseThrow(() -> missing(key));
    }

    public OptionalLong findLong(String key) {
        Object v = metadata.get(key);
        if (v == null) return OptionalLong.empty();
        if (v instanceof Integer i) {
            // u32 values that fit in an int are Integers; any that do not are Longs, so no sign fix-up is needed.
            return OptionalLong.of(i);
        }
        if (v instanceof Long l) {
            if (types.get(key) == GgufType.UINT64 && l < 0) {
                throw fail("metadata key '" + key + "' = " + Long.toUnsignedString(l) + " does not fit in a 64-bit signed long");
            }
            return OptionalLong.of(l);
        }
        throw wrongType(key, "an integer");
    }

    /** A float, a double narrowed to float, or an integer converted. */
    public float getFloat(String key) {
        return (float) getDouble(key);
    }

    public Optional<Float> findFloat(String key) {
        OptionalDouble v = findDouble(key);
        return v.isPresent() ? Optional.of((float) v.getAsDouble()) : Optional.empty();
    }

    public double getDouble(String key) {
        return findDouble(key).orElseThrow(() -> missing(key));
    }

    public OptionalDouble findDouble(String key) {
        Object v = metadata.get(key);
        if (v == null) return OptionalDouble.empty();
        if (v instanceof Float f) return OptionalDouble.of(f);
        if (v instanceof Double d) return OptionalDouble.of(d);
        // Some writers store whole-number hyperparameters (a rope base of 10000) as integers.
        if (v instanceof Integer i) return OptionalDouble.of(i);
        if (v instanceof Long l && types.get(key) != GgufType.UINT64) return OptionalDouble.of(l);
        throw wrongType(key, "a number");
    }

    public boolean getBoolean(String key) {
        return findBoolean(key).orElseThrow(() -> missing(key));
    }

    public Optional<Boolean> findBoolean(String key) {
        Object v = metadata.get(key);
        if (v == null) return Optional.empty();
        if (v instanceof Boolean b) return Optional.of(b);
        throw wrongType(key, "a bool");
    }

    @SuppressWarnings("unchecked")
    public List<String> getStringList(String key) {
        Object v = get(key);
        if (v instanceof List<?> l && elementTypes.get(key) == GgufType.STRING) return (List<String>) l;
        throw wrongType(key, "an array of strings");
    }

    /** An array of 8-, 16- or 32-bit integers. */
    public int[] getIntArray(String key) {
        if (get(key) instanceof int[] a) return a;
        throw wrongType(key, "an array of 8- to 32-bit integers");
    }

    public long[] getLongArray(String key) {
        if (get(key) instanceof long[] a) return a;
        throw wrongType(key, "an array of 64-bit integers");
    }

    public float[] getFloatArray(String key) {
        if (get(key) instanceof float[] a) return a;
        throw wrongType(key, "an array of f32");
    }

    public double[] getDoubleArray(String key) {
        if (get(key) instanceof double[] a) return a;
        throw wrongType(key, "an array of f64");
    }

    public boolean[] getBooleanArray(String key) {
        if (get(key) instanceof boolean[] a) return a;
        throw wrongType(key, "an array of bools");
    }

    // ---------------------------------------------------------------- tensors

    /** Every tensor in file order. */
    public List<GgufTensor> tensors() {
        return List.copyOf(tensors.values());
    }

    public Optional<GgufTensor> findTensor(String name) {
        return Optional.ofNullable(tensors.get(name));
    }

    public GgufTensor tensor(String name) {
        GgufTensor t = tensors.get(name);
        if (t == null) throw fail("missing tensor '" + name + "'");
        return t;
    }

    public boolean hasTensor(String name) {
        return tensors.containsKey(name);
    }

    /** Unmaps the file; tensor data segments handed out become inaccessible. */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "GgufFile(" + path + ", v" + version + ", " + metadata.size() + " keys, " + tensors.size() + " tensors)";
    }

    // ---------------------------------------------------------------- parsing

    /** A ModelFormatException naming this file. */
    ModelFormatException fail(String problem) {
        return new ModelFormatException(path, problem);
    }

    private ModelFormatException missing(String key) {
        return fail("missing metadata key '" + key + "'");
    }

    private ModelFormatException wrongType(String key, String expected) {
        GgufType t = types.get(key);
        String stored = t == GgufType.ARRAY ? "an array of " + elementTypes.get(key) : "a " + t;
        return fail("metadata key '" + key + "' is " + stored + ", expected " + expected);
    }

    private int readAlignment() {
        Object a = metadata.get(ALIGNMENT_KEY);
        if (a == null) return DEFAULT_ALIGNMENT;
        if (!(a instanceof Integer i) || types.get(ALIGNMENT_KEY) != GgufType.UINT32) {
            throw wrongType(ALIGNMENT_KEY, "a u32");
        }
        if (i <= 0 || Integer.bitCount(i) != 1) throw fail(ALIGNMENT_KEY + " " + i + " is not a power of two");
        return i;
    }

    private MemorySegment slice(GgufTensor t) {
        long nbytes = t.type().bytesFor(t.elementCount());
        long start = dataOffset + t.offset();
        long end = start + nbytes;
        if (start < 0 || end < 0 || end > file.byteSize()) {
            throw fail("data of tensor '" + t.name() + "' (bytes " + Long.toUnsignedString(start) + " to "
                    + Long.toUnsignedString(end) + ") runs past the end of the file (" + file.byteSize() + " bytes)");
        }
        return file.asSlice(start, nbytes);
    }

    private void checkOverlaps() {
        List<GgufTensor> byOffset = new ArrayList<>(tensors.values());
        byOffset.sort((a, b) -> Long.compare(a.offset(), b.offset()));
        for (int i = 1; i < byOffset.size(); i++) {
            GgufTensor prev = byOffset.get(i - 1), t = byOffset.get(i);
            if (prev.offset() + prev.byteSize() > t.offset()) {
                throw fail("tensor '" + t.name() + "' at offset " + t.offset() + " overlaps tensor '" + prev.name()
                        + "' (offset " + prev.offset() + ", " + prev.byteSize() + " bytes)");
            }
        }
    }

    static long alignUp(long x, long alignment) {
        return (x + alignment - 1) / alignment * alignment;
    }

    private static String hex(byte[] bytes) {
        StringBuilder sb = new StringBuilder();
        for (byte b : bytes) sb.append(String.format("%02x", b & 0xff));
        return "0x" + sb;
    }

    /** Reads the header region front to back, checking every read against the end of the file. */
    private final class Cursor {
        long pos;

        private long remaining() {
            return file.byteSize() - pos;
        }

        private void need(long n, String what) {
            if (n > remaining()) {
                throw fail("truncated: " + what + " needs " + n + " bytes at offset " + pos + " but the file ends at "
                        + file.byteSize());
            }
        }

        byte[] bytes(int n, String what) {
            need(n, what);
            byte[] b = file.asSlice(pos, n).toArray(ValueLayout.JAVA_BYTE);
            pos += n;
            return b;
        }

        int u8(String what) {
            need(1, what);
            return file.get(ValueLayout.JAVA_BYTE, pos++) & 0xff;
        }

        int u16(String what) {
            need(2, what);
            int v = file.get(U16, pos) & 0xffff;
            pos += 2;
            return v;
        }

        long u32(String what) {
            need(4, what);
            long v = Integer.toUnsignedLong(file.get(U32, pos));
            pos += 4;
            return v;
        }

        long u64(String what) {
            need(8, what);
            long v = file.get(U64, pos);
            pos += 8;
            return v;
        }

        /** A u64 count of items that each take at least minBytes: checked against what is left of the file. */
        long count(String what, int minBytes) {
            long n = u64("the " + what);
            if (n < 0 || n > remaining() / minBytes) {
                throw fail("absurd " + what + " " + Long.toUnsignedString(n) + ": that many entries would run past the end of the file ("
                        + remaining() + " bytes remain)");
            }
            if (n > Integer.MAX_VALUE - 8) throw fail(what + " " + n + " is too large");
            return n;
        }

        String string(String what) {
            long len = u64("the length of " + what);
            if (len < 0 || len > remaining()) {
                throw fail("string length " + Long.toUnsignedString(len) + " of " + what + " at offset " + (pos - 8)
                        + " runs past the end of the file (" + remaining() + " bytes remain)");
            }
            if (len > Integer.MAX_VALUE - 8) throw fail("string length " + len + " of " + what + " is too large");
            String s = new String(file.asSlice(pos, len).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
            pos += len;
            return s;
        }

        GgufType valueType(String what) {
            long id = u32("the value type of " + what);
            GgufType t = GgufType.byId(id);
            if (t == null) throw fail(what + " has unknown value type " + id);
            return t;
        }

        Object value(GgufType type, String key, int depth) {
            String what = "the value of metadata key '" + key + "'";
            return switch (type) {
                case UINT8 -> u8(what);
                case INT8 -> (int) (byte) u8(what);
                case UINT16 -> u16(what);
                case INT16 -> (int) (short) u16(what);
                case UINT32 -> {
                    long v = u32(what);
                    yield v <= Integer.MAX_VALUE ? (Object) (int) v : (Object) v;
                }
                case INT32 -> (int) u32(what);
                case FLOAT32 -> Float.intBitsToFloat((int) u32(what));
                case BOOL -> u8(what) != 0;
                case STRING -> string(what);
                case ARRAY -> array(key, depth);
                case UINT64, INT64 -> u64(what);
                case FLOAT64 -> Double.longBitsToDouble(u64(what));
            };
        }

        private Object array(String key, int depth) {
            if (depth >= MAX_ARRAY_NESTING) {
                throw fail("metadata key '" + key + "' nests arrays deeper than " + MAX_ARRAY_NESTING + " levels");
            }
            GgufType type = valueType("the elements of metadata key '" + key + "'");
            if (depth == 0) elementTypes.put(key, type);
            long n = u64("the array length of metadata key '" + key + "'");
            if (n < 0 || n > remaining() / type.minBytes()) {
                throw fail("array length " + Long.toUnsignedString(n) + " of metadata key '" + key + "' (" + type
                        + ") runs past the end of the file (" + remaining() + " bytes remain)");
            }
            if (n > Integer.MAX_VALUE - 8) throw fail("array length " + n + " of metadata key '" + key + "' is too large");
            int count = (int) n;
            long bytes = (long) count * type.minBytes();
            Object result = switch (type) {
                case UINT8, INT8, BOOL -> {
                    byte[] raw = file.asSlice(pos, bytes).toArray(ValueLayout.JAVA_BYTE);
                    if (type == GgufType.BOOL) {
                        boolean[] a = new boolean[count];
                        for (int i = 0; i < count; i++) a[i] = raw[i] != 0;
                        yield a;
                    }
                    int[] a = new int[count];
                    for (int i = 0; i < count; i++) a[i] = type == GgufType.UINT8 ? raw[i] & 0xff : raw[i];
                    yield a;
                }
                case UINT16, INT16 -> {
                    short[] raw = new short[count];
                    MemorySegment.copy(file, U16, pos, raw, 0, count);
                    int[] a = new int[count];
                    for (int i = 0; i < count; i++) a[i] = type == GgufType.UINT16 ? raw[i] & 0xffff : raw[i];
                    yield a;
                }
                case UINT32, INT32 -> {
                    int[] a = new int[count];
                    MemorySegment.copy(file, U32, pos, a, 0, count);
                    yield a;
                }
                case UINT64, INT64 -> {
                    long[] a = new long[count];
                    MemorySegment.copy(file, U64, pos, a, 0, count);
                    yield a;
                }
                case FLOAT32 -> {
                    float[] a = new float[count];
                    MemorySegment.copy(file, F32, pos, a, 0, count);
                    yield a;
                }
                case FLOAT64 -> {
                    double[] a = new double[count];
                    MemorySegment.copy(file, F64, pos, a, 0, count);
                    yield a;
                }
                case STRING -> {
                    // Grows as strings actually parse, so a lying count cannot reserve memory up front.
                    List<String> a = new ArrayList<>(Math.min(count, 1 << 16));
                    for (int i = 0; i < count; i++) a.add(string("element " + i + " of metadata key '" + key + "'"));
                    yield Collections.unmodifiableList(a);
                }
                case ARRAY -> {
                    List<Object> a = new ArrayList<>(Math.min(count, 1 << 16));
                    for (int i = 0; i < count; i++) a.add(array(key, depth + 1));
                    yield Collections.unmodifiableList(a);
                }
            };
            if (type != GgufType.STRING && type != GgufType.ARRAY) pos += bytes;
            return result;
        }

        GgufTensor tensorInfo(String name) {
            String what = "tensor '" + name + "'";
            long nDims = u32("the n_dims of " + what);
            if (nDims < 1 || nDims > MAX_DIMS) throw fail(what + " has n_dims " + nDims + " (must be 1 to " + MAX_DIMS + ")");
            long[] dims = new long[(int) nDims];
            long elements = 1;
            for (int d = 0; d < nDims; d++) {
                dims[d] = u64("dimension " + d + " of " + what);
                if (dims[d] <= 0) {
                    throw fail(what + " has dimension " + d + " = " + Long.toUnsignedString(dims[d]) + " (must be positive)");
                }
                try {
                    elements = Math.multiplyExact(elements, dims[d]);
                } catch (ArithmeticException e) {
                    throw fail("element count of " + what + " overflows (dims " + java.util.Arrays.toString(dims) + ")");
                }
            }
            long typeId = u32("the type of " + what);
            GgmlType type = GgmlType.byId(typeId);
            if (type == null) throw fail(what + " has unknown tensor type " + typeId);
            if (dims[0] % type.blockSize() != 0) {
                throw fail(what + " has rows of " + dims[0] + " elements, not a multiple of the " + type
                        + " block size " + type.blockSize());
            }
            try {
                type.bytesFor(elements);
            } catch (ArithmeticException e) {
                throw fail("byte size of " + what + " overflows");
            }
            long offset = u64("the data offset of " + what);
            if (offset < 0) throw fail(what + " has absurd data offset " + Long.toUnsignedString(offset));
            if (offset % alignment != 0) {
                throw fail(what + " has misaligned data offset " + offset + " (alignment " + alignment + ")");
            }
            return new GgufTensor(name, type, dims, offset, MemorySegment.NULL);
        }
    }
}
