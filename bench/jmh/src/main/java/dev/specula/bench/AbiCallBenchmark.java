package dev.specula.bench;

import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.DeviceBuffer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * The floor cost of crossing the ABI from Java: a no-op call, and a 4 KiB copy into a cpu-backend
 * buffer (host to host) beside the same copy done in pure Java, so the difference is the call's overhead.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = "--enable-native-access=ALL-UNNAMED")
public class AbiCallBenchmark {
    private static final int BYTES = 4096;
    private Context context;
    private DeviceBuffer buffer;
    private Arena arena;
    private MemorySegment host;
    private MemorySegment javaTarget;

    @Setup
    public void setUp() {
        context = Context.cpu();
        buffer = context.allocate(BYTES);
        arena = Arena.ofConfined();
        host = arena.allocate(BYTES, 64);
        javaTarget = arena.allocate(BYTES, 64);
    }

    @TearDown
    public void tearDown() {
        context.close();
        arena.close();
    }

    @Benchmark
    public void noopCall() {
        context.noop();
    }

    @Benchmark
    public void copy4KiBThroughAbi() {
        buffer.copyFromHost(host, 0, 0, BYTES);
    }

    @Benchmark
    public void copy4KiBInJava() {
        MemorySegment.copy(host, 0, javaTarget, 0, BYTES);
    }
}
