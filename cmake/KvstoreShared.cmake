# libkvstore.so (SONAME libkvstore.so.0): the objects of every kvstore_component, linked once more
# into one shared library beside the static archives, so nothing is compiled twice. Components are
# compiled with -fvisibility=hidden; the library exports only what include/kvstore/ marks
# KVSTORE_EXPORT (kvstore/export.h). Included at the end of src/CMakeLists.txt, after every
# component is defined: a new component (kvstore_component) is in the library without more ado.
#
# In the build tree kvstorectl and the tests link the static components (they use src/ internals);
# installed, kvstore::kvstore is the shared library, or the static archives when the consumer sets
# KVSTORE_USE_STATIC_LIBS (cmake/kvstoreConfig.cmake.in), and kvstore.pc serves the shared one.
option(KVSTORE_BUILD_SHARED "Build the shared library libkvstore.so beside the static archives" ON)
set(KVSTORE_SOVERSION 0)

if(KVSTORE_BUILD_SHARED)
  get_property(kvstore_shared_components GLOBAL PROPERTY KVSTORE_COMPONENTS)
  set(kvstore_shared_objects)
  foreach(component IN LISTS kvstore_shared_components)
    list(APPEND kvstore_shared_objects $<TARGET_OBJECTS:${component}>)
  endforeach()
  add_library(kvstore_shared SHARED ${kvstore_shared_objects})
  add_library(kvstore::kvstore_shared ALIAS kvstore_shared)
  set_target_properties(kvstore_shared PROPERTIES
    OUTPUT_NAME kvstore
    EXPORT_NAME kvstore_shared
    VERSION ${PROJECT_VERSION}
    SOVERSION ${KVSTORE_SOVERSION})
  target_include_directories(kvstore_shared INTERFACE
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  target_compile_features(kvstore_shared INTERFACE cxx_std_20)
  # What the public headers use (absl::Status, prometheus metric types) is the consumer's to link;
  # what the objects use comes through the components, whose archives add nothing more here since
  # their objects are already in: only their dependencies (gRPC, protobuf, spdlog...) count.
  target_link_libraries(kvstore_shared
    PUBLIC absl::status absl::statusor prometheus-cpp::core Threads::Threads
    PRIVATE ${kvstore_shared_components})
  if(NOT KVSTORE_SANITIZE)
    # Every symbol resolved at link time, and no dependency the library does not use (both are
    # what dpkg-shlibdeps and lintian check).
    target_link_options(kvstore_shared PRIVATE LINKER:--no-undefined LINKER:--as-needed)
  endif()
endif()
