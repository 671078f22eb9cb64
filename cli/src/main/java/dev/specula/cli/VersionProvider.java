package dev.specula.cli;

import dev.specula.nativeapi.Specula;
import picocli.CommandLine;

final class VersionProvider implements CommandLine.IVersionProvider {
    @Override
    public String[] getVersion() {
        return new String[] {"specula " + Specula.libraryVersion() + " (ABI " + Specula.abiVersion() + ")"};
    }
}
