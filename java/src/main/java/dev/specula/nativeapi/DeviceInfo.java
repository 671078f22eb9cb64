package dev.specula.nativeapi;

/** What spec_device_query reports about a context's device. */
public record DeviceInfo(String backend, int index, String name, long totalMemory, long freeMemory,
                         int computeMajor, int computeMinor, int multiprocessors) {

    /** One line for humans, e.g. "device 0: Intel Xeon, 23.4 GiB total, 22.0 GiB free, 2 cores". */
    public String describe() {
        String units = backend.equals("cpu") ? multiprocessors + " cores"
                : "compute " + computeMajor + "." + computeMinor + ", " + multiprocessors + " SMs";
        return String.format("device %d: %s, %.1f GiB total, %.1f GiB free, %s", index, name,
                totalMemory / 1073741824.0, freeMemory / 1073741824.0, units);
    }
}
