package dev.specula.tokenizer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Writes a GGUF (version 3) file that holds metadata only, no tensors: enough for llama.cpp to
 * load a vocabulary with {@code vocab_only}. Value types: String, List of String, int[] (i32
 * array), float[] (f32 array), Integer (u32), Long (u64), Float (f32), Boolean.
 */
final class GgufTestWriter {

    private static final int TYPE_UINT32 = 4;
    private static final int TYPE_INT32 = 5;
    private static final int TYPE_FLOAT32 = 6;
    private static final int TYPE_BOOL = 7;
    private static final int TYPE_STRING = 8;
    private static final int TYPE_ARRAY = 9;
    private static final int TYPE_UINT64 = 10;
    private static final int ALIGNMENT = 32;

    private GgufTestWriter() {}

    /** A tiny Llama architecture's hyperparameters plus the given tokenizer metadata. */
    static Map<String, Object> llamaVocabOnly(Map<String, Object> tokenizerMetadata) {
        Map<String, Object> md = new LinkedHashMap<>();
        md.put("general.architecture", "llama");
        md.put("general.name", "specula-tokenizer-test");
        md.put("general.alignment", ALIGNMENT);
        md.put("llama.context_length", 256);
        md.put("llama.embedding_length", 64);
        md.put("llama.block_count", 1);
        md.put("llama.feed_forward_length", 128);
        md.put("llama.attention.head_count", 4);
        md.put("llama.attention.head_count_kv", 4);
        md.put("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        md.put("llama.rope.dimension_count", 16);
        md.put("llama.vocab_size", ((List<?>) tokenizerMetadata.get("tokenizer.ggml.tokens")).size());
        md.putAll(tokenizerMetadata);
        return md;
    }

    static void write(Path file, Map<String, Object> metadata) throws IOException {
        Out out = new Out();
        out.bytes("GGUF".getBytes(StandardCharsets.US_ASCII));
        out.u32(3);
        out.u64(0); // tensors
        out.u64(metadata.size());
        for (Map.Entry<String, Object> e : metadata.entrySet()) {
            out.string(e.getKey());
            writeValue(out, e.getValue());
        }
        while (out.size() % ALIGNMENT != 0) {
            out.bytes(new byte[] {0});
        }
        Files.write(file, out.toByteArray());
    }

    private static void writeValue(Out out, Object value) {
        switch (value) {
            case String s -> {
                out.u32(TYPE_STRING);
                out.string(s);
            }
            case Integer i -> {
                out.u32(TYPE_UINT32);
                out.u32(i);
            }
            case Long l -> {
                out.u32(TYPE_UINT64);
                out.u64(l);
            }
            case Float f -> {
                out.u32(TYPE_FLOAT32);
                out.f32(f);
            }
            case Boolean b -> {
                out.u32(TYPE_BOOL);
                out.bytes(new byte[] {(byte) (b ? 1 : 0)});
            }
            case int[] ints -> {
                out.u32(TYPE_ARRAY);
                out.u32(TYPE_INT32);
                out.u64(ints.length);
                for (int v : ints) {
                    out.u32(v);
                }
            }
            case float[] floats -> {
                out.u32(TYPE_ARRAY);
                out.u32(TYPE_FLOAT32);
                out.u64(floats.length);
                for (float v : floats) {
                    out.f32(v);
                }
            }
            case List<?> list -> {
                out.u32(TYPE_ARRAY);
                out.u32(TYPE_STRING);
                out.u64(list.size());
                for (Object o : list) {
                    out.string((String) o);
                }
            }
            default -> throw new IllegalArgumentException("unsupported GGUF value " + value.getClass());
        }
    }

    /** Little-endian output. */
    private static final class Out extends ByteArrayOutputStream {
        private final ByteBuffer scratch = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);

        void bytes(byte[] b) {
            write(b, 0, b.length);
        }

        void u32(int v) {
            scratch.clear();
            scratch.putInt(v);
            write(scratch.array(), 0, 4);
        }

        void u64(long v) {
            scratch.clear();
            scratch.putLong(v);
            write(scratch.array(), 0, 8);
        }

        void f32(float v) {
            scratch.clear();
            scratch.putFloat(v);
            write(scratch.array(), 0, 4);
        }

        void string(String s) {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            u64(b.length);
            bytes(b);
        }
    }
}
