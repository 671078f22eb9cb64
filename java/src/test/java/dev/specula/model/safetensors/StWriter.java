package dev.specula.model.safetensors;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.specula.model.gguf.GgmlQuant;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/** Writes small safetensors files for tests. */
public final class StWriter {
    private record Entry(String dtype, long[] shape, byte[] data) {}

    private final Map<String, Entry> tensors = new LinkedHashMap<>();

    /** A tensor from floats, stored as F32, F16 or BF16. */
    public StWriter add(String name, String dtype, long[] shape, float[] values) {
        int size = dtype.equals("F32") ? 4 : 2;
        byte[] data = new byte[values.length * size];
        for (int i = 0; i < values.length; i++) {
            int bits = switch (dtype) {
                case "F32" -> Float.floatToRawIntBits(values[i]);
                case "F16" -> Float.floatToFloat16(values[i]);
                case "BF16" -> GgmlQuant.floatToBf16(values[i]);
                default -> throw new IllegalArgumentException(dtype);
            };
            for (int b = 0; b < size; b++) data[i * size + b] = (byte) (bits >>> (8 * b));
        }
        tensors.put(name, new Entry(dtype, shape, data));
        return this;
    }

    /** A tensor of any dtype from raw bytes. */
    public StWriter addRaw(String name, String dtype, long[] shape, byte[] data) {
        tensors.put(name, new Entry(dtype, shape, data));
        return this;
    }

    /** Leaves a tensor out. */
    public StWriter remove(String name) {
        tensors.remove(name);
        return this;
    }

    public JsonObject header() {
        JsonObject header = new JsonObject();
        JsonObject meta = new JsonObject();
        meta.addProperty("format", "pt");
        header.add("__metadata__", meta);
        long offset = 0;
        for (Map.Entry<String, Entry> e : tensors.entrySet()) {
            JsonObject t = new JsonObject();
            t.addProperty("dtype", e.getValue().dtype());
            JsonArray shape = new JsonArray();
            for (long d : e.getValue().shape()) shape.add(d);
            t.add("shape", shape);
            JsonArray offsets = new JsonArray();
            offsets.add(offset);
            offset += e.getValue().data().length;
            offsets.add(offset);
            t.add("data_offsets", offsets);
            header.add(e.getKey(), t);
        }
        return header;
    }

    public byte[] bytes() {
        return bytes(header().toString());
    }

    /** The file with a caller's header text (padded with spaces to a multiple of 8, as the reference writer does). */
    public byte[] bytes(String headerJson) {
        byte[] json = headerJson.getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int i = 0; i < 8; i++) out.write((int) ((long) padded >>> (8 * i)));
        out.writeBytes(json);
        for (int i = json.length; i < padded; i++) out.write(' ');
        for (Entry e : tensors.values()) out.writeBytes(e.data());
        return out.toByteArray();
    }

    public Path write(Path file) {
        try {
            Files.write(file, bytes());
            return file;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
