package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import java.lang.foreign.MemorySegment;
import java.util.Objects;

/** Memory on a context's device. Copies are checked in Java and again in native code. */
public final class DeviceBuffer extends NativeHandle {
    private final Context context;
    private final long size;

    DeviceBuffer(Context context, MemorySegment raw, long size) {
        super("DeviceBuffer(" + size + " bytes)", context, raw, h -> spec_buffer_free(h));
        this.context = context;
        this.size = size;
    }

    public long size() {
        return size;
    }

    public Context context() {
        return context;
    }

    /** The native buffer for the wrapper's own calls; throws once closed. */
    MemorySegment handle() {
        return segment();
    }

    /** Copies host bytes [src.offset, +nbytes) into this buffer at offset. */
    public void copyFromHost(MemorySegment src, long srcOffset, long offset, long nbytes) {
        Objects.checkFromIndexSize(srcOffset, nbytes, src.byteSize());
        MemorySegment h = segment();
        Native.check(spec_copy_h2d(h, offset, src.asSlice(srcOffset, nbytes), nbytes), context.handle());
    }

    /** Copies nbytes of this buffer at offset into host memory dst at dstOffset. */
    public void copyToHost(long offset, MemorySegment dst, long dstOffset, long nbytes) {
        Objects.checkFromIndexSize(dstOffset, nbytes, dst.byteSize());
        MemorySegment h = segment();
        Native.check(spec_copy_d2h(dst.asSlice(dstOffset, nbytes), h, offset, nbytes), context.handle());
    }

    /** Copies nbytes from src at srcOffset into this buffer at offset, on the device. */
    public void copyFrom(DeviceBuffer src, long srcOffset, long offset, long nbytes) {
        if (src.context != context) {
            throw new IllegalStateException("source " + src.kind() + " belongs to another context");
        }
        Native.check(spec_copy_d2d(segment(), offset, src.segment(), srcOffset, nbytes), context.handle());
    }

    @Override
    public String toString() {
        return kind() + (isOpen() ? "" : " (closed)");
    }
}
