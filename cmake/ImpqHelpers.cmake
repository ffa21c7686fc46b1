# impq_add_test(<name> SOURCES <files...> LIBS <targets...>)
# Builds a GoogleTest executable and registers every TEST with CTest.
# Tests find the shared data through the IMPQ_SHARED_DATA environment variable,
# set here for ctest and overridable from the shell.
function(impq_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_compile_definitions(${name} PRIVATE IMPQ_SHARED_DATA_DIR="${IMPQ_SHARED_DATA_DIR}")
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    PROPERTIES ENVIRONMENT "IMPQ_SHARED_DATA=${IMPQ_SHARED_DATA_DIR}")
endfunction()
