# Debian packages from CPack (`make deb`, or `cpack -G DEB` in a build directory), one per install
# component of cmake/KvstoreInstall.cmake:
#   libkvstore0     (runtime)      libkvstore.so.0, with a shlibs file
#   libkvstore-dev  (development)  headers, static archives, libkvstore.so, CMake and pkg-config files
#   kvstorectl      (tool)         the tool, README and an example systemd unit for `mesh`
# Dependencies on Debian's runtime libraries are computed by dpkg-shlibdeps; libkvstore-dev's on
# the -dev packages its CMake config and headers need are listed here (nothing computes those).
# Installed under /usr; a build configured with -DCMAKE_INSTALL_PREFIX=/usr (as `make deb` does)
# puts the libraries in the multiarch directory (lib/<triplet>).
set(KVSTORE_MAINTAINER "kvstore maintainers <maintainers@users.noreply.r-seed-cdcb63bf.example>")
# The runtime package is named after the SONAME (libkvstore0); without the shared library there
# is none.
set(kvstore_packages "development;libkvstore-dev" "tool;kvstorectl")
set(CPACK_COMPONENTS_ALL development tool)
if(TARGET kvstore_shared)
  get_target_property(KVSTORE_SOVERSION kvstore_shared SOVERSION)
  list(PREPEND kvstore_packages "runtime;libkvstore${KVSTORE_SOVERSION}")
  list(PREPEND CPACK_COMPONENTS_ALL runtime)
endif()

# Each package's /usr/share/doc/<package>: copyright, changelog.gz (native packages).
string(TIMESTAMP KVSTORE_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
configure_file(packaging/changelog.in ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog @ONLY)
find_program(KVSTORE_GZIP gzip)
if(KVSTORE_GZIP)
  execute_process(COMMAND ${KVSTORE_GZIP} -9 -n -c ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog
                  OUTPUT_FILE ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog.gz)
endif()
set(kvstore_doc_root ${CMAKE_INSTALL_DATAROOTDIR}/doc)
list(LENGTH kvstore_packages kvstore_package_fields)
math(EXPR kvstore_last_field "${kvstore_package_fields} - 1")
foreach(at RANGE 0 ${kvstore_last_field} 2)
  math(EXPR next "${at} + 1")
  list(GET kvstore_packages ${at} component)
  list(GET kvstore_packages ${next} package)
  install(FILES packaging/copyright DESTINATION ${kvstore_doc_root}/${package}
          COMPONENT ${component})
  if(KVSTORE_GZIP)
    install(FILES ${CMAKE_CURRENT_BINARY_DIR}/packaging/changelog.gz
            DESTINATION ${kvstore_doc_root}/${package} COMPONENT ${component})
  endif()
endforeach()
install(FILES README.md DESTINATION ${kvstore_doc_root}/kvstorectl COMPONENT tool)
install(FILES packaging/kvstoremesh.service DESTINATION ${kvstore_doc_root}/kvstorectl/examples
        COMPONENT tool)

set(CPACK_PACKAGE_NAME kvstore)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${KVSTORE_MAINTAINER}")
# CPack's default summary: CPackDeb then takes the first line of each package's description as
# its synopsis instead of prefixing the project's.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${CMAKE_PROJECT_NAME} built using CMake")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libkvstore${KVSTORE_SOVERSION})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
# The ldconfig trigger Debian policy asks of a shared library package (CPack's own postinst and
# postrm call ldconfig too, which lintian only warns about).
configure_file(packaging/libkvstore.triggers ${CMAKE_CURRENT_BINARY_DIR}/packaging/triggers COPYONLY)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_BINARY_DIR}/packaging/triggers)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION
  "shared key-value store library (Cilium kvstore design)
kvstore lets many processes share keys through a key-value store, the way
Cilium's agents share state through etcd: shared, sync and watch stores,
an embedded in-memory store, an etcd v3 backend and a kvstoremesh library.

This package holds the shared library.")

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME libkvstore-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
# What kvstoreConfig.cmake finds (gRPC's CMake package needs its protoc plugin) and the headers
# include.
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
  "libabsl-dev, prometheus-cpp-dev, libgrpc++-dev, protobuf-compiler-grpc, libprotobuf-dev, libspdlog-dev, libyaml-cpp-dev, nlohmann-json3-dev")
if(TARGET kvstore_shared)
  string(PREPEND CPACK_DEBIAN_DEVELOPMENT_PACKAGE_DEPENDS
         "libkvstore${KVSTORE_SOVERSION} (= ${PROJECT_VERSION}), ")
endif()
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION
  "shared key-value store library (development files)
kvstore lets many processes share keys through a key-value store, the way
Cilium's agents share state through etcd.

This package holds the C++20 headers, the static archives, the CMake
package (find_package(kvstore)) and the pkg-config file (kvstore.pc).")

set(CPACK_DEBIAN_TOOL_PACKAGE_NAME kvstorectl)
set(CPACK_DEBIAN_TOOL_PACKAGE_SECTION net)
set(CPACK_DEBIAN_TOOL_DESCRIPTION
  "command-line tool for kvstore: agent, mesh, key-value commands
kvstorectl reads and writes keys in etcd in Cilium's layout, runs agents
sharing keys, mirrors remote clusters into a target etcd like Cilium's
kvstoremesh (an example systemd unit is in the documentation), and runs
benchmarks.")

include(CPack)
