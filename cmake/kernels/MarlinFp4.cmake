# marlin_fp4: vLLM's Marlin GEMM for FP4 weights (NVFP4 group 16 + e4m3 scales,
# MXFP4 group 32 + e8m0 scales) with fp16/bf16 activations, and the repack op.
# The generator is run with patch 0001's type filter, so only FP4 instantiations
# exist and kernel_selector.h references nothing else.
function(blackwheel_family_marlin_fp4)
  set(V "${BW_SRC_VLLM}")
  set(gen "${CMAKE_BINARY_DIR}/marlin_fp4_gen")
  set(tmp "${CMAKE_BINARY_DIR}/marlin_fp4_gen.tmp")
  file(REMOVE_RECURSE "${tmp}")
  file(MAKE_DIRECTORY "${tmp}" "${gen}")
  list(JOIN BW_MARLIN_FP4_ARCHS "," archs)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env VLLM_MARLIN_B_TYPES=kFE2M1f VLLM_MARLIN_A_TYPES=kFloat16,kBFloat16
            "${Python_EXECUTABLE}" "${V}/csrc/quantization/marlin/generate_kernels.py" "${archs}" "${tmp}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "blackwheel: Marlin generator failed:\n${out}")
  endif()
  # copy only changed files, so that re-configuring does not recompile
  file(GLOB generated "${tmp}/*")
  foreach(f IN LISTS generated)
    get_filename_component(n "${f}" NAME)
    file(COPY_FILE "${f}" "${gen}/${n}" ONLY_IF_DIFFERENT)
  endforeach()
  file(REMOVE_RECURSE "${tmp}")
  file(GLOB kernels "${gen}/sm80_kernel_*fe2m1f*.cu")
  list(LENGTH kernels n)
  message(STATUS "blackwheel: marlin_fp4: ${n} generated FP4 kernel TU(s)")
  blackwheel_add_extension(FAMILY marlin_fp4
    SOURCES
      ${kernels}
      "${V}/csrc/quantization/marlin/marlin.cu"
      "${V}/csrc/quantization/marlin/gptq_marlin_repack.cu"
      "${BW_SRC_OWN}/marlin_fp4/bindings.cpp"
    INCLUDES "${gen}" "${V}/csrc" "${V}/csrc/quantization/marlin"
    DEFINES VLLM_STABLE_LIBRARY_NS=blackwheel
    CUDA_FLAGS -static-global-template-stub=false)
endfunction()
