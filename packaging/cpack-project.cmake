# packaging/cpack-project.cmake — read by cpack before each generator runs
# (CPACK_PROJECT_CONFIG_FILE, set in cmake/packaging.cmake).  A Debian package
# must install into /usr and its unit must run the binary it ships: refuse a
# DEB from a tree configured otherwise (e.g. build/, whose prefix is
# /usr/local) instead of producing a package whose ExecStart= is wrong.
if(CPACK_GENERATOR STREQUAL "DEB")
  if(NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
    message(FATAL_ERROR "vaegan: a Debian package needs a tree configured with -DCMAKE_INSTALL_PREFIX=/usr "
      "(this one: ${CPACK_PACKAGING_INSTALL_PREFIX}); use scripts/package.sh")
  endif()
  if(NOT CPACK_VG_VAEGAND_PATH STREQUAL "/usr/bin/vaegand")
    message(FATAL_ERROR "vaegan: the unit would run ${CPACK_VG_VAEGAND_PATH}, not /usr/bin/vaegand")
  endif()
  if(NOT CPACK_VG_SYSTEMD_UNITDIR MATCHES "^(/usr/|/)?lib/systemd/system/?$")
    message(FATAL_ERROR "vaegan: the unit would go to ${CPACK_VG_SYSTEMD_UNITDIR}; configure with "
      "-DVG_SYSTEMD_UNITDIR=/lib/systemd/system (Debian 12's place for packaged units)")
  endif()
endif()
