// blackwheel verify test kernel: BW_SMEM_BYTES of static shared memory (default 64 KiB).
// ptxas accepts up to 101,376 bytes on sm_120a; more fails to compile.
#ifndef BW_SMEM_BYTES
#define BW_SMEM_BYTES 65536
#endif
__global__ void bw_big_smem(float* out) {
  __shared__ char buf[BW_SMEM_BYTES];
  buf[threadIdx.x] = (char)threadIdx.x;
  __syncthreads();
  out[threadIdx.x] = buf[(threadIdx.x * 7) % BW_SMEM_BYTES];
}
