package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;
import static org.junit.jupiter.api.Assertions.*;

import dev.specula.engine.TinyModel;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A context (or model) closed while objects made on it still live never frees memory that they point into (ABI 0.12):
 * the wrapper closes dependents first, so later use is a clear Java exception; where something escapes that order, the
 * native side refuses the destroy with SPEC_ERR_IN_USE and the wrapper says so, instead of crashing later.
 */
class HandleLifetimeTest {
    @TempDir Path dir;

    @Test
    void closingTheContextFirstClosesEverythingOnItAndLaterUseIsAClearException() {
        TinyModel tiny = TinyModel.open(dir);
        try {
            NativeModel model = tiny.model;
            KvCache kv = model.newKvCache(32);
            NativeHeads heads = NativeHeads.create(model, new NativeHeads.Config(2, 1, false, false));
            Recycler recycler = Recycler.create(tiny.context, TinyModel.VOCAB, 4, Recycler.Fill.ZERO);
            DeviceBuffer buffer = tiny.context.allocate(TinyModel.VOCAB * 4L);
            model.forward(kv, ForwardArgs.chainLast(new int[] {1, 2, 3}, buffer));

            tiny.context.close();

            for (AutoCloseable h : new AutoCloseable[] {model, kv, heads, recycler, buffer})
                assertFalse(((NativeHandle) h).isOpen(), h + " closed with its context");
            IllegalStateException e = assertThrows(IllegalStateException.class, kv::length);
            assertTrue(e.getMessage().contains("KvCache(32 positions) is closed"), e.getMessage());
            e = assertThrows(IllegalStateException.class, () -> model.forward(kv, ForwardArgs.chainLast(new int[] {4}, buffer)));
            assertTrue(e.getMessage().contains("is closed"), e.getMessage());
            e = assertThrows(IllegalStateException.class, () -> model.newKvCache(8));
            assertTrue(e.getMessage().contains("is closed"), e.getMessage());
        } finally {
            tiny.close();
        }
    }

    @Test
    void closingAModelClosesItsCachesAndHeadsFirst() {
        try (TinyModel tiny = TinyModel.open(dir)) {
            KvCache kv = tiny.model.newKvCache(16);
            NativeHeads heads = NativeHeads.create(tiny.model, new NativeHeads.Config(1, 1, false, false));
            tiny.model.close();
            assertFalse(kv.isOpen());
            assertFalse(heads.isOpen());
            assertThrows(IllegalStateException.class, kv::length);
            tiny.context.noop(); // the context lives on
        }
    }

    @Test
    void aDestroyTheNativeSideRefusesIsAClearException() {
        Context ctx = Context.cpu();
        DeviceBuffer stray = ctx.allocate(64);
        ctx.forget(stray); // as if made on another thread after the context's close collected its dependents
        SpeculaException e = assertThrows(SpeculaException.class, ctx::close);
        assertEquals(Status.IN_USE, e.status());
        assertTrue(e.getMessage().contains("1 buffer still live on this context"), e.getMessage());
        stray.close(); // nothing was freed: the buffer is still the native side's to free
    }

    @Test
    void theBindingsRefuseToDestroyAContextInUse() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            assertEquals(SPEC_OK(), spec_context_create(arena.allocateFrom("cpu"), 0, out));
            MemorySegment ctx = out.get(ValueLayout.ADDRESS, 0);
            assertEquals(SPEC_OK(), spec_buffer_alloc(ctx, 256, out));
            MemorySegment buf = out.get(ValueLayout.ADDRESS, 0);
            assertEquals(SPEC_ERR_IN_USE(), spec_context_destroy(ctx));
            String message = Native.lastError(ctx);
            assertTrue(message.contains("spec_context_destroy: 1 buffer still live on this context"), message);
            assertEquals(SPEC_OK(), spec_context_noop(ctx), "the refused destroy freed nothing");
            assertEquals(SPEC_OK(), spec_buffer_free(buf));
            assertEquals(SPEC_OK(), spec_context_destroy(ctx));
        }
    }
}
