package dev.specula.model.gguf;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/** Writes GGUF bytes field by field, so tests can put any value, however wrong, in any field. */
public final class RawGguf {
    private final ByteArrayOutputStream out = new ByteArrayOutputStream();

    public RawGguf raw(byte... bytes) {
        out.writeBytes(bytes);
        return this;
    }

    public RawGguf u8(int v) {
        out.write(v);
        return this;
    }

    public RawGguf u32(long v) {
        for (int i = 0; i < 4; i++) out.write((int) (v >>> (8 * i)));
        return this;
    }

    public RawGguf u64(long v) {
        for (int i = 0; i < 8; i++) out.write((int) (v >>> (8 * i)));
        return this;
    }

    public RawGguf str(String s) {
        byte[] b = s.getBytes(StandardCharsets.UTF_8);
        return u64(b.length).raw(b);
    }

    /** GGUF magic, version, tensor count and metadata entry count. */
    public RawGguf header(long version, long tensors, long kvs) {
        return raw((byte) 'G', (byte) 'G', (byte) 'U', (byte) 'F').u32(version).u64(tensors).u64(kvs);
    }

    public RawGguf kvString(String key, String value) {
        return str(key).u32(GgufType.STRING.id()).str(value);
    }

    public RawGguf kvU32(String key, long value) {
        return str(key).u32(GgufType.UINT32.id()).u32(value);
    }

    public RawGguf tensor(String name, long type, long offset, long... dims) {
        str(name).u32(dims.length);
        for (long d : dims) u64(d);
        return u32(type).u64(offset);
    }

    /** Zero padding up to the next multiple of alignment, then n bytes of tensor data. */
    public RawGguf data(int alignment, long n) {
        while (out.size() % alignment != 0) out.write(0);
        for (long i = 0; i < n; i++) out.write((int) (i * 7));
        return this;
    }

    public int size() {
        return out.size();
    }

    public byte[] bytes() {
        return out.toByteArray();
    }
}
