# The build record (<package>/_build_info.json: blackwheel/ for the kernel pack) and the post-link ABI check.
# The record holds no absolute paths: two builds from the same inputs in
# different directories must give the same wheel.
option(BLACKWHEEL_ABI_CHECK "check every undefined symbol of each extension after linking" ON)

function(blackwheel_build_info)
  execute_process(COMMAND "${CMAKE_CXX_COMPILER}" --version
                  OUTPUT_VARIABLE cxx_version OUTPUT_STRIP_TRAILING_WHITESPACE)
  string(REGEX REPLACE "\n.*" "" cxx_version "${cxx_version}")
  set(cuda_flags "-O3 --expt-relaxed-constexpr --expt-extended-lambda -DENABLE_FP8 --compress-mode=size -std=c++20")
  string(JSON flags SET "{}" cuda "\"${cuda_flags}\"")
  string(JSON flags SET "${flags}" cxx "\"-O3 -std=c++20 -D_GLIBCXX_USE_CXX11_ABI=${BW_TORCH_CXX11_ABI}\"")
  string(JSON flags SET "${flags}" torch_target_version "\"0x020B000000000000 (2.11)\"")
  string(JSON flags SET "${flags}" build_type "\"${CMAKE_BUILD_TYPE}\"")
  foreach(family IN LISTS BW_FAMILIES)
    string(TOUPPER "${family}" up)
    list(JOIN BW_${up}_GENCODE " " g)
    string(JSON flags SET "${flags}" "gencode_${family}" "\"${g}\"")
  endforeach()
  string(JSON tc SET "{}" nvcc_version "\"${BW_NVCC_VERSION}\"")
  string(JSON tc SET "${tc}" nvcc_origin "\"${BW_NVCC_ORIGIN}\"")
  string(JSON tc SET "${tc}" host_compiler "\"${cxx_version}\"")
  string(JSON tc SET "${tc}" cmake "\"${CMAKE_VERSION}\"")
  string(JSON tc SET "${tc}" generator "\"${CMAKE_GENERATOR}\"")
  string(JSON flags SET "${flags}" toolchain "${tc}")
  file(WRITE "${CMAKE_BINARY_DIR}/flags.json" "${flags}")
  # BW_RECORD_LIBRARIES: the extension files of an upstream-cmake product (UpstreamProduct.cmake)
  string(REPLACE ";" "," libraries "${BW_RECORD_LIBRARIES}")
  blackwheel_python(plan --stage record --product "${BW_PRODUCT}" --build-dir "${CMAKE_BINARY_DIR}"
                    --flags-json "${CMAKE_BINARY_DIR}/flags.json" "--libraries=${libraries}"
                    --out "${CMAKE_BINARY_DIR}/_build_info.json")
  if(BW_INSTALL_COMPONENT)
    install(FILES "${CMAKE_BINARY_DIR}/_build_info.json" DESTINATION "${BW_RECORD_PACKAGE}"
            COMPONENT ${BW_INSTALL_COMPONENT})
  else()
    install(FILES "${CMAKE_BINARY_DIR}/_build_info.json" DESTINATION "${BW_RECORD_PACKAGE}")
  endif()

  if(BLACKWHEEL_ABI_CHECK)
    get_property(targets GLOBAL PROPERTY BW_EXTENSION_TARGETS)
    foreach(t IN LISTS targets)
      get_target_property(family ${t} BW_FAMILY)
      string(TOUPPER "${family}" up)
      add_custom_command(TARGET ${t} POST_BUILD
        COMMAND ${CMAKE_COMMAND} -E env "PYTHONPATH=${BW_PYTHONPATH}"
                "${Python_EXECUTABLE}" -m blackwheel_factory abi-check "$<TARGET_FILE:${t}>"
                --abi "${BW_${up}_ABI}" --policy "${BW_MANYLINUX_POLICY}"
        COMMENT "blackwheel: ABI check of $<TARGET_FILE_NAME:${t}> against the locked torch"
        VERBATIM)
    endforeach()
  endif()
endfunction()
