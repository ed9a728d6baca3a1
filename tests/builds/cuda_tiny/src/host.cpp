// Host-only translation unit: exercises the C++ compiler launcher.
#include "version.h"

int tiny_version() { return TINY_VERSION; }
