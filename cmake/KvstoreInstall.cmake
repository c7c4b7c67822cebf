# Installs the library so that users can `find_package(kvstore)` and link `kvstore::kvstore`, or
# use `pkg-config kvstore`. GNUInstallDirs is included by the top-level CMakeLists.txt, before the
# targets. Every file belongs to one install component, which is one Debian package
# (cmake/KvstorePackaging.cmake): `runtime` (libkvstore0: libkvstore.so.0), `development`
# (libkvstore-dev: headers, static archives, the libkvstore.so link, CMake and pkg-config files) and
# `tool` (kvstorectl). A plain `cmake --install` installs all three.
include(CMakePackageConfigHelpers)

get_property(kvstore_components GLOBAL PROPERTY KVSTORE_COMPONENTS)
set(kvstore_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/kvstore)
install(TARGETS kvstore ${kvstore_components} EXPORT kvstoreTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development)
# `cmake --install --strip` and CPack (CPACK_STRIP_FILES) strip the tool and the shared library;
# the static archives then lose their debug information, as Debian's dh_strip does with them.
if(CMAKE_STRIP)
  foreach(component IN LISTS kvstore_components)
    install(CODE "
      if(CMAKE_INSTALL_DO_STRIP)
        execute_process(COMMAND \"${CMAKE_STRIP}\" --strip-debug --enable-deterministic-archives
          \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/$<TARGET_FILE_NAME:${component}>\"
          COMMAND_ERROR_IS_FATAL ANY)
      endif()
    " COMPONENT development)
  endforeach()
endif()
if(TARGET kvstore_shared)
  install(TARGETS kvstore_shared EXPORT kvstoreTargets
          LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime
                  NAMELINK_COMPONENT development)
endif()
install(DIRECTORY include/kvstore DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
install(TARGETS kvstorectl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT tool)
# `ninja installable`: everything the rules above install, and nothing else (`make test-release
# UNIT_ONLY=1` builds it with the unit tests, for the package tests).
add_custom_target(installable)
add_dependencies(installable kvstore ${kvstore_components} kvstorectl)
if(TARGET kvstore_shared)
  add_dependencies(installable kvstore_shared)
endif()
install(EXPORT kvstoreTargets NAMESPACE kvstore:: DESTINATION ${kvstore_cmake_dir}
        COMPONENT development)
configure_package_config_file(cmake/kvstoreConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfig.cmake
  INSTALL_DESTINATION ${kvstore_cmake_dir})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/kvstoreConfigVersion.cmake
        DESTINATION ${kvstore_cmake_dir} COMPONENT development)

# kvstore.pc names the install prefix, known only when installing (`cmake --install --prefix`,
# CPack's /usr): the file is configured twice, here with everything else and at install time with
# the prefix.
if(TARGET kvstore_shared)
  set(KVSTORE_PC_PREFIX "@KVSTORE_PC_PREFIX@")
  configure_file(cmake/kvstore.pc.in ${CMAKE_CURRENT_BINARY_DIR}/kvstore.pc.in @ONLY)
  # One file per destination: installs into several places may run at once (the package tests).
  install(CODE "
    set(KVSTORE_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
    string(MD5 kvstore_pc_dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
    set(kvstore_pc_dir \"${CMAKE_CURRENT_BINARY_DIR}/pkgconfig/\${kvstore_pc_dir}\")
    configure_file(\"${CMAKE_CURRENT_BINARY_DIR}/kvstore.pc.in\" \"\${kvstore_pc_dir}/kvstore.pc\"
                   @ONLY)
    file(INSTALL \"\${kvstore_pc_dir}/kvstore.pc\"
         DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\")
  " COMPONENT development)
endif()

include(KvstorePackaging)
