package dev.specula.model.safetensors;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.specula.model.ModelFormatException;
import java.io.IOException;
import java.io.StringReader;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * A safetensors file, memory-mapped: an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the data. Every problem, including a missing or unreadable file, is a
 * {@link ModelFormatException} that names the file.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** The reference implementation's limit; a larger header is a corrupt length field, not a real model. */
    public static final long MAX_HEADER_BYTES = 100L << 20;
    private static final String METADATA_KEY = "__metadata__";

    private final Path path;
    private final Arena arena;
    private final MemorySegment file;
    private final Map<String, SafetensorsTensor> tensors = new LinkedHashMap<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();
    private boolean closed;

    public static SafetensorsFile open(Path path) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment segment;
            try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
                segment = channel.map(FileChannel.MapMode.READ_ONLY, 0, channel.size(), arena);
            }
            return new SafetensorsFile(path, arena, segment);
        } catch (IOException e) {
            arena.close();
            throw new ModelFormatException(path, "cannot read the file (" + e + ")", e);
        } catch (RuntimeException | Error e) {
            arena.close();
            throw e;
        }
    }

    private SafetensorsFile(Path path, Arena arena, MemorySegment file) {
        this.path = path;
        this.arena = arena;
        this.file = file;
        if (file.byteSize() < 8) {
            throw fail("truncated: the 8-byte header length needs 8 bytes but the file has " + file.byteSize());
        }
        long headerBytes = file.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
        if (headerBytes < 0 || headerBytes > file.byteSize() - 8) {
            throw fail("header length " + Long.toUnsignedString(headerBytes) + " runs past the end of the file ("
                    + file.byteSize() + " bytes)");
        }
        if (headerBytes > MAX_HEADER_BYTES) {
            throw fail("header length " + headerBytes + " is larger than the " + MAX_HEADER_BYTES + "-byte limit");
        }
        String json = new String(file.asSlice(8, headerBytes).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
        long dataStart = 8 + headerBytes;
        MemorySegment data = file.asSlice(dataStart);
        parseHeader(json, data);
        checkOverlaps();
    }

    public Path path() {
        return path;
    }

    /** The header's __metadata__ strings. */
    public Map<String, String> metadata() {
        return Collections.unmodifiableMap(metadata);
    }

    public List<SafetensorsTensor> tensors() {
        return List.copyOf(tensors.values());
    }

    public Optional<SafetensorsTensor> findTensor(String name) {
        return Optional.ofNullable(tensors.get(name));
    }

    public SafetensorsTensor tensor(String name) {
        SafetensorsTensor t = tensors.get(name);
        if (t == null) throw fail("missing tensor '" + name + "'");
        return t;
    }

    public boolean hasTensor(String name) {
        return tensors.containsKey(name);
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "SafetensorsFile(" + path + ", " + tensors.size() + " tensors)";
    }

    private ModelFormatException fail(String problem) {
        return new ModelFormatException(path, problem);
    }

    private void parseHeader(String json, MemorySegment data) {
        // A streaming read of the top level, so a key given twice is caught instead of silently replaced.
        try (JsonReader reader = new JsonReader(new StringReader(json))) {
            if (reader.peek() != JsonToken.BEGIN_OBJECT) throw fail("bad JSON header: it is not an object");
            reader.beginObject();
            while (reader.hasNext()) {
                String name = reader.nextName();
                JsonElement value = JsonParser.parseReader(reader);
                if (name.equals(METADATA_KEY)) {
                    parseMetadata(value);
                } else {
                    if (tensors.containsKey(name)) throw fail("duplicate tensor name '" + name + "' in the header");
                    tensors.put(name, parseTensor(name, value, data));
                }
            }
            reader.endObject();
            if (reader.peek() != JsonToken.END_DOCUMENT) throw fail("bad JSON header: text follows the object");
        } catch (IOException | JsonParseException | IllegalStateException e) {
            throw new ModelFormatException(path, "bad JSON header: " + e.getMessage(), e);
        }
    }

    private void parseMetadata(JsonElement value) {
        if (!value.isJsonObject()) throw fail("bad JSON header: __metadata__ is not an object");
        for (Map.Entry<String, JsonElement> e : value.getAsJsonObject().entrySet()) {
            JsonElement v = e.getValue();
            metadata.put(e.getKey(), v.isJsonPrimitive() ? v.getAsString() : v.toString());
        }
    }

    private SafetensorsTensor parseTensor(String name, JsonElement value, MemorySegment data) {
        String what = "tensor '" + name + "'";
        if (!value.isJsonObject()) throw fail("bad JSON header: " + what + " is not an object");
        JsonObject o = value.getAsJsonObject();

        JsonElement dtypeName = o.get("dtype");
        if (dtypeName == null || !dtypeName.isJsonPrimitive()) throw fail(what + " has no dtype");
        SafetensorsDtype dtype = SafetensorsDtype.byName(dtypeName.getAsString());
        if (dtype == null) throw fail(what + " has unknown dtype '" + dtypeName.getAsString() + "'");

        JsonArray shapeJson = array(o, "shape", what);
        long[] shape = new long[shapeJson.size()];
        long elements = 1;
        for (int i = 0; i < shape.length; i++) {
            shape[i] = nonNegative(shapeJson.get(i), "dimension " + i + " of " + what);
            try {
                elements = Math.multiplyExact(elements, shape[i]);
            } catch (ArithmeticException e) {
                throw fail("element count of " + what + " overflows (shape " + shapeJson + ")");
            }
        }

        JsonArray offsets = array(o, "data_offsets", what);
        if (offsets.size() != 2) throw fail(what + " has data_offsets " + offsets + ", not [begin, end]");
        long begin = nonNegative(offsets.get(0), "data_offsets of " + what);
        long end = nonNegative(offsets.get(1), "data_offsets of " + what);
        if (begin > end || end > data.byteSize()) {
            throw fail(what + " has data_offsets [" + begin + ", " + end + "] outside the file's data section ("
                    + data.byteSize() + " bytes)");
        }
        long needed;
        try {
            needed = Math.multiplyExact(elements, (long) dtype.bytes());
        } catch (ArithmeticException e) {
            throw fail("byte size of " + what + " overflows");
        }
        if (end - begin != needed) {
            throw fail(what + " spans " + (end - begin) + " bytes but " + dtype + " " + Arrays.toString(shape)
                    + " needs " + needed);
        }
        return new SafetensorsTensor(name, dtype, shape, data.asSlice(begin, end - begin), path);
    }

    private JsonArray array(JsonObject o, String key, String what) {
        JsonElement e = o.get(key);
        if (e == null || !e.isJsonArray()) throw fail(what + " has no " + key + " array");
        return e.getAsJsonArray();
    }

    private long nonNegative(JsonElement e, String what) {
        try {
            long v = e.getAsJsonPrimitive().getAsBigDecimal().longValueExact();
            if (v < 0) throw fail(what + " is negative (" + v + ")");
            return v;
        } catch (ArithmeticException | NumberFormatException | IllegalStateException | ClassCastException ex) {
            throw fail(what + " is not a whole number below 2^63: " + e);
        }
    }

    private void checkOverlaps() {
        List<SafetensorsTensor> list = new ArrayList<>(tensors.values());
        list.sort((a, b) -> Long.compare(a.data().address(), b.data().address()));
        for (int i = 1; i < list.size(); i++) {
            SafetensorsTensor prev = list.get(i - 1), t = list.get(i);
            if (prev.data().address() + prev.data().byteSize() > t.data().address()) {
                throw fail("tensor '" + t.name() + "' overlaps tensor '" + prev.name() + "'");
            }
        }
    }
}
