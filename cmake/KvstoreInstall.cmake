# Installs the library so that users can `find_package(kvstore)` and link `kvstore::kvstore`.
# GNUInstallDirs is included by the top-level CMakeLists.txt, before the targets.
include(CMakePackageConfigHelpers)

get_property(kvstore_components GLOBAL PROPERTY KVSTORE_COMPONENTS)
install(TARGETS kvstore ${kvstore_components} EXPORT kvstoreTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY include/kvstore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS kvstorectl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(EXPORT kvstoreTargets NAMESPACE kvstore:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kvstore)
configure_package_config_file(cmake/kvstoreConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kvstore)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/kvstore)
