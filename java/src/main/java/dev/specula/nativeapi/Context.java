package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_device_info;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Collections;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * One backend on one device. Thread-safe: its calls may come from several threads. Closing it closes
 * every buffer and model made from it first, so no native object outlives its context. Should one escape that
 * (made on another thread while the context closed), the native side refuses to destroy the context (ABI 0.12) and
 * {@link #close()} throws a SpeculaException with status IN_USE that counts what still lives.
 */
public final class Context extends NativeHandle {
    static {
        Native.ensureLoaded();
    }

    /**
     * System property that makes the cpu backend take the device paths too (plain steps choosing tokens on the
     * device, drafters summarizing logits on the device), for tests of both paths.
     */
    public static final String DEVICE_PATHS_PROPERTY = "specula.devicePaths";

    private final String backend;
    private final int device;
    private final Set<NativeHandle> dependents = Collections.newSetFromMap(new ConcurrentHashMap<>());

    private Context(String backend, int device, MemorySegment raw) {
        super("Context(" + backend + ":" + device + ")", null, raw, h -> spec_context_destroy(h));
        this.backend = backend;
        this.device = device;
    }

    /** Opens backend ("cpu" or "cuda") on a device; throws SpeculaException naming why it cannot. */
    public static Context open(String backend, int device) {
        Specula.requireCompiled(backend);
        int devices = Specula.deviceCount(backend); // throws BACKEND_UNAVAILABLE with the reason when there is none
        if (device < 0 || device >= devices)
            throw new SpeculaException(Status.BACKEND_UNAVAILABLE.code(), "there is no " + backend + " device " + device + " here ("
                    + backend + " has " + devices + (devices == 1 ? " device" : " devices") + ")");
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(spec_context_create(arena.allocateFrom(backend), device, out), MemorySegment.NULL);
            return new Context(backend, device, out.get(ValueLayout.ADDRESS, 0));
        }
    }

    /** Opens backend on a device; throws SpeculaException naming why it cannot. */
    public static Context open(Backend backend, int device) {
        return open(backend.id(), device);
    }

    public static Context cpu() {
        return open("cpu", 0);
    }

    public String backend() {
        return backend;
    }

    public int device() {
        return device;
    }

    /**
     * Whether per-step work that can stay on this context's device does so unless told otherwise, so that only
     * small results (token ids, logits summaries) cross PCIe: yes off the cpu backend; on cpu the host path is
     * the reference and saves calls, unless the system property {@value #DEVICE_PATHS_PROPERTY} is true.
     */
    public boolean devicePathsByDefault() {
        return !backend.equals("cpu") || Boolean.getBoolean(DEVICE_PATHS_PROPERTY);
    }

    /** The floor cost of one ABI call: validates the handle and returns. */
    public void noop() {
        Native.check(spec_context_noop(segment()), MemorySegment.NULL);
    }

    /** CPU threads the cpu backend uses; 0 means all cores. */
    public void setThreads(int threads) {
        MemorySegment h = segment();
        Native.check(spec_context_set_threads(h, threads), h);
    }

    public DeviceInfo deviceInfo() {
        MemorySegment h = segment();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment info = spec_device_info.allocate(arena);
            Native.check(spec_device_query(h, info), h);
            return new DeviceInfo(
                    spec_device_info.backend(info).getString(0),
                    spec_device_info.device_index(info),
                    spec_device_info.name(info).getString(0),
                    spec_device_info.total_memory(info),
                    spec_device_info.free_memory(info),
                    spec_device_info.compute_major(info),
                    spec_device_info.compute_minor(info),
                    spec_device_info.multiprocessors(info));
        }
    }

    /** Allocates nbytes of this context's device memory, zeroed. */
    public DeviceBuffer allocate(long nbytes) {
        MemorySegment h = segment();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.ADDRESS);
            Native.check(spec_buffer_alloc(h, nbytes, out), h);
            return new DeviceBuffer(this, out.get(ValueLayout.ADDRESS, 0), nbytes);
        }
    }

    /**
     * Grows this context's kernel scratch now to what spec_verify and the recycler need for batch trees of maxTreeNodes
     * over nVocab tokens (with sampling) and a recycler of recyclerK candidates (0: none), so those calls never
     * allocate later. {@link MemoryPlan#kernelScratch} is its size.
     */
    public void reserve(int batch, int maxTreeNodes, int nVocab, int recyclerK) {
        MemorySegment h = segment();
        Native.check(spec_context_reserve(h, batch, maxTreeNodes, nVocab, recyclerK), h);
    }

    /** The native context for the wrapper's own calls; throws once closed. */
    MemorySegment handle() {
        return segment();
    }

    void register(NativeHandle dependent) {
        dependents.add(dependent);
    }

    void forget(NativeHandle dependent) {
        dependents.remove(dependent);
    }

    /** Closes the KV caches and draft heads made on model (before the model itself goes). */
    void closeDependentsOf(NativeModel model) {
        for (NativeHandle h : dependents.toArray(NativeHandle[]::new))
            if ((h instanceof KvCache kv && kv.model() == model) || (h instanceof NativeHeads heads && heads.target() == model)) h.close();
    }

    @Override
    void closeDependents() {
        // KV caches and draft heads point into their models, so they go first; plain buffers last.
        for (NativeHandle h : dependents.toArray(NativeHandle[]::new)) if (h instanceof KvCache || h instanceof NativeHeads) h.close();
        for (NativeHandle h : dependents.toArray(NativeHandle[]::new)) if (!(h instanceof DeviceBuffer)) h.close();
        for (NativeHandle h : dependents.toArray(NativeHandle[]::new)) h.close();
        dependents.clear();
    }

    @Override
    public String toString() {
        return kind() + (isOpen() ? "" : " (closed)");
    }
}
