"""The RunPod backend: trials on RunPod serverless workers, and a local emulator of its control plane."""
