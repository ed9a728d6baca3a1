#pragma once
#include <cuda_runtime.h>
#include "version.h"
void tiny_axpy(float a, const float* x, float* y, int n, cudaStream_t s);
void tiny_scale(float* y, float a, int n, cudaStream_t s);
