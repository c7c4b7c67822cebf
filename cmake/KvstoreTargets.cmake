# Helpers shared by every CMakeLists.txt of the project.

# Our own code builds warning-free; KVSTORE_WERROR (the Makefile and CI) keeps it so.
function(kvstore_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(KVSTORE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# kvstore_unity(TARGET): compiles TARGET's sources as a unity build, batches of 8 sources in one
# translation unit, so that the headers they share (gRPC, protobuf, CLI11, nlohmann/json, spdlog)
# are parsed and their templates compiled once per batch: kvstorectl's 14 sources took 107 s of
# CPU instead of about 300 s (RelWithDebInfo). For targets whose sources share no file-local
# names; those with coroutines stay out (GCC 12 warns, -Wsubobject-linkage, on coroutine frames
# of file-local types merged into one unit).
function(kvstore_unity target)
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 8)
endfunction()

# kvstore_component(NAME SOURCES... [LIBS ...] [UNITY]): one internal static library of the kvstore
# package; it is installed and exported so that kvstore::kvstore_static can link it, and its
# objects are linked into libkvstore.so (cmake/KvstoreShared.cmake). Compiled with hidden
# visibility: the shared library exports only what include/kvstore/ marks KVSTORE_EXPORT.
# With UNITY, its sources compile as a unity build (see kvstore_unity).
function(kvstore_component name)
  cmake_parse_arguments(ARG "UNITY" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES CXX_VISIBILITY_PRESET hidden
                                           VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_UNITY)
    kvstore_unity(${name})
  endif()
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${ARG_LIBS})
  kvstore_warnings(${name})
  set_property(GLOBAL APPEND PROPERTY KVSTORE_COMPONENTS ${name})
endfunction()

# kvstore_test(NAME SOURCES... [LIBS ...] [LABELS ...] [TIMEOUT s]): a GoogleTest binary run by ctest.
function(kvstore_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gmock GTest::gtest_main)
  kvstore_warnings(${name})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  # Sanitized code runs several times slower: the same test gets more time rather than being
  # skipped.
  if(KVSTORE_SANITIZE)
    math(EXPR ARG_TIMEOUT "${ARG_TIMEOUT} * 3")
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
  # Aggregate targets (see tests/CMakeLists.txt): `all_tests` builds every binary ctest runs,
  # `unit_tests` those that need no etcd (label `etcd`), without benchmarks or manual tools.
  set_property(GLOBAL APPEND PROPERTY KVSTORE_TESTS ${name})
  if(NOT "etcd" IN_LIST ARG_LABELS)
    set_property(GLOBAL APPEND PROPERTY KVSTORE_UNIT_TESTS ${name})
  endif()
endfunction()
