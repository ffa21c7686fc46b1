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
