package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

class NativeWrapperTest {

    @Test
    void versionsAgreeWithTheBindings() {
        assertEquals(Specula.bindingsAbiVersion(), Specula.abiVersion(),
                "the loaded library's ABI differs from the one the bindings were generated for");
        assertFalse(Specula.libraryVersion().isBlank());
        assertTrue(Specula.backendsCompiled().contains("cpu"));
        assertEquals(1, Specula.deviceCount("cpu"));
    }

    @Test
    void unknownBackendAndDeviceAreClearErrors() {
        SpeculaException e = assertThrows(SpeculaException.class, () -> Specula.deviceCount("tpu"));
        assertEquals(Status.INVALID_ARGUMENT, e.status());
        assertTrue(e.getMessage().contains("unknown backend 'tpu'"), e.getMessage());

        // A device the machine does not have is unavailable, as a backend it lacks is.
        e = assertThrows(SpeculaException.class, () -> Context.open("cpu", 3));
        assertEquals(Status.BACKEND_UNAVAILABLE, e.status());
        assertTrue(e.getMessage().contains("there is no cpu device 3 here (cpu has 1 device)"), e.getMessage());
    }

    @Test
    void cudaIsEitherAvailableOrSaysWhyNot() {
        if (!Specula.backendsCompiled().contains("cuda")) return;
        try {
            int n = Specula.deviceCount("cuda");
            assertTrue(n > 0);
        } catch (SpeculaException e) {
            assertEquals(Status.BACKEND_UNAVAILABLE, e.status());
            assertFalse(e.getMessage().isBlank());
            SpeculaException open = assertThrows(SpeculaException.class, () -> Context.open("cuda", 0));
            assertEquals(Status.BACKEND_UNAVAILABLE, open.status());
        }
    }

    @Test
    void deviceInfoDescribesTheCpu() {
        try (Context ctx = Context.cpu()) {
            DeviceInfo info = ctx.deviceInfo();
            assertEquals("cpu", info.backend());
            assertTrue(info.totalMemory() > 0);
            assertTrue(info.freeMemory() <= info.totalMemory());
            assertTrue(info.multiprocessors() >= 1);
            assertTrue(info.describe().startsWith("device 0: "), info.describe());
            ctx.noop();
        }
    }

    @Test
    void buffersRoundTripThroughTheDevice() {
        try (Context ctx = Context.cpu(); Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocate(4096);
            for (int i = 0; i < 4096; i++) src.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 31 + 7));
            MemorySegment dst = arena.allocate(4096);
            try (DeviceBuffer a = ctx.allocate(4096); DeviceBuffer b = ctx.allocate(4096)) {
                a.copyFromHost(src, 0, 0, 4096);
                b.copyFrom(a, 1000, 0, 3096);
                b.copyToHost(0, dst, 0, 3096);
                assertEquals(-1, dst.asSlice(0, 3096).mismatch(src.asSlice(1000, 3096)));
            }
        }
    }

    @Test
    void badCopiesAreRefusedWithTheirRange() {
        try (Context ctx = Context.cpu(); Arena arena = Arena.ofConfined(); DeviceBuffer buf = ctx.allocate(64)) {
            MemorySegment host = arena.allocate(128);
            SpeculaException e = assertThrows(SpeculaException.class, () -> buf.copyFromHost(host, 0, 32, 64));
            assertEquals(Status.OUT_OF_RANGE, e.status());
            assertTrue(e.getMessage().contains("bytes [32, 96) run past the buffer's end (size 64)"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> buf.copyToHost(0, host, 0, 0));
            assertEquals(Status.INVALID_ARGUMENT, e.status());
            assertThrows(IndexOutOfBoundsException.class, () -> buf.copyFromHost(host, 100, 0, 64));
            e = assertThrows(SpeculaException.class, () -> ctx.allocate(0));
            assertTrue(e.getMessage().contains("size is zero"), e.getMessage());
            e = assertThrows(SpeculaException.class, () -> ctx.setThreads(-1));
            assertTrue(e.getMessage().contains("thread count -1"), e.getMessage());
        }
    }

    @Test
    void closedHandlesFailInJava() {
        Context ctx = Context.cpu();
        DeviceBuffer buf = ctx.allocate(16);
        buf.close();
        buf.close(); // closing twice is harmless
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> buf.copyToHost(0, MemorySegment.ofArray(new byte[16]), 0, 16));
        assertTrue(e.getMessage().contains("is closed"), e.getMessage());

        DeviceBuffer survivor = ctx.allocate(16);
        ctx.close();
        assertFalse(survivor.isOpen(), "closing a context closes its buffers");
        e = assertThrows(IllegalStateException.class, ctx::noop);
        assertTrue(e.getMessage().contains("Context(cpu:0) is closed"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> ctx.allocate(8));
    }

    @Test
    void buffersOfAnotherContextAreRefused() {
        try (Context a = Context.cpu(); Context b = Context.cpu();
             DeviceBuffer x = a.allocate(32); DeviceBuffer y = b.allocate(32)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> x.copyFrom(y, 0, 0, 8));
            assertTrue(e.getMessage().contains("another context"), e.getMessage());
        }
    }

    @Test
    void contextsWorkFromManyThreads() throws Exception {
        try (Context ctx = Context.cpu()) {
            Thread[] threads = new Thread[4];
            Throwable[] failure = new Throwable[1];
            for (int t = 0; t < threads.length; t++) {
                threads[t] = new Thread(() -> {
                    try (Arena arena = Arena.ofConfined()) {
                        MemorySegment host = arena.allocate(256);
                        for (int i = 0; i < 200; i++) {
                            try (DeviceBuffer b = ctx.allocate(256)) {
                                b.copyFromHost(host, 0, 0, 256);
                                b.copyToHost(0, host, 0, 256);
                            }
                        }
                    } catch (Throwable ex) {
                        synchronized (failure) {
                            failure[0] = ex;
                        }
                    }
                });
                threads[t].start();
            }
            for (Thread t : threads) t.join();
            assertNull(failure[0]);
        }
    }
}
