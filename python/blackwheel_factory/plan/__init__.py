"""Plan: archs, kernel sets x archs, job counts; cmake_bridge is CMake's door (`plan`)."""
