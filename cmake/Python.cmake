# Run blackwheel's Python build tooling (python/blackwheel_factory) with the
# interpreter scikit-build-core runs (the build environment's, with torch).
if(NOT Python_EXECUTABLE)
  find_package(Python COMPONENTS Interpreter REQUIRED)
endif()

# our package first, then whatever the caller had (e.g. tools installed with --target)
set(BW_PYTHONPATH "${CMAKE_CURRENT_LIST_DIR}/../python")
if(NOT "$ENV{PYTHONPATH}" STREQUAL "")
  string(APPEND BW_PYTHONPATH ":$ENV{PYTHONPATH}")
endif()

function(blackwheel_python)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env "PYTHONPATH=${BW_PYTHONPATH}"
            "${Python_EXECUTABLE}" -m blackwheel_factory ${ARGN}
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "blackwheel: `python -m blackwheel_factory ${ARGV0} ...` failed (see the message above)")
  endif()
endfunction()
