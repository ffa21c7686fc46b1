# impq_add_test(<name> SOURCES <files...> LIBS <targets...>)
# Builds a GoogleTest executable and registers every TEST with CTest.
# Tests find the shared data in $IMPQ_SHARED_DATA when it is set when they run, else in
# IMPQ_SHARED_DATA_DIR (compiled in; see the top-level CMakeLists.txt).
function(impq_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE IMPQ_SHARED_DATA_DIR="${IMPQ_SHARED_DATA_DIR}")
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60)
endfunction()

# impq_needs_cuda_plugin(<target>...)
# Makes building <target> build the dlopen()ed CUDA plugin (worker/gpu) first, where it is
# built at all. For the programs that may load it at run time; see worker/gpu/CMakeLists.txt.
function(impq_needs_cuda_plugin)
  if(TARGET impq_cuda)
    foreach(t IN LISTS ARGN)
      add_dependencies(${t} impq_cuda)
    endforeach()
  endif()
endfunction()

# impq_unity_group(<target> <group> <source>...)
# Compiles <source>s of <target> as one unity translation unit (CMake's UNITY_BUILD in GROUP
# mode): the headers they share (Abseil, nlohmann::json, the model types) are parsed, and their
# templates instantiated and optimized, once per group instead of once per file — about half
# the CPU time for the libraries of many small files. Files in no group compile alone, as
# before. Rules for a group: no two of its files may define the same name at file scope
# (anonymous namespace or static) — a clash is a compile error, but an overload with another
# signature would silently take part in the other file's calls — and no file may leave a macro
# defined; `scripts/unity_clashes.py <the group's files>` lists both. Call from the directory
# that defines <target>. -DIMPQ_UNITY_BUILD=OFF compiles every file alone (e.g. to check that
# each file includes what it uses).
option(IMPQ_UNITY_BUILD "Compile groups of small files as one translation unit" ON)
function(impq_unity_group target group)
  if(NOT IMPQ_UNITY_BUILD)
    return()
  endif()
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
  set_source_files_properties(${ARGN} PROPERTIES UNITY_GROUP ${target}_${group})
endfunction()
