# Run blackwheel's Python build tooling (python/blackwheel/build) with the
# interpreter scikit-build-core runs (the build environment's, with torch).
if(NOT Python_EXECUTABLE)
  find_package(Python COMPONENTS Interpreter REQUIRED)
endif()

function(blackwheel_python)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env "PYTHONPATH=${CMAKE_CURRENT_FUNCTION_LIST_DIR}/../python"
            "${Python_EXECUTABLE}" -m blackwheel.build ${ARGN}
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "blackwheel: `python -m blackwheel.build ${ARGV0} ...` failed (see the message above)")
  endif()
endfunction()
