# cmake/packaging.cmake — the Debian package `vaegan` (CPack's DEB generator),
# included at the end of the top-level CMakeLists.txt.
#
#   scripts/package.sh          # configures build-deb/ (Release, prefix /usr), builds, cpack -G DEB
#
# What the package holds: the programs in /usr/bin, the unit in
# /lib/systemd/system (ExecStart=/usr/bin/vaegand: systemd/ configures it from
# CMAKE_INSTALL_FULL_BINDIR, so the tree must be configured with
# CMAKE_INSTALL_PREFIX=/usr; packaging/cpack-project.cmake refuses a DEB
# otherwise), the manual pages vaegand(8) and vaegand.conf(5), and the example
# configuration as /etc/vaegand/vaegand.conf, root:root 0640, a dpkg conffile
# (an edited file is never overwritten by an upgrade or a reinstall; dpkg asks,
# or keeps it with --force-confold).  Depends is computed by dpkg-shlibdeps
# from the binaries (dpkg-dev).  The maintainer scripts (packaging/deb/) only
# tell a running systemd about the unit, restart a running vaegand after an
# upgrade and stop it on removal: the package never enables or starts it.
#
# `cmake --install` is unchanged: config/ keeps an existing vaegand.conf.  The
# package is staged into a fresh directory (CPACK_SET_DESTDIR: DESTDIR, so the
# absolute /etc and /lib destinations land in the staging tree, never on the
# build machine), where there is none to keep.

set(VG_PACKAGE_MAINTAINER "vaegan maintainers <vaegan@localhost>" CACHE STRING
  "Maintainer field of the Debian package (Name <address>)")
set(VG_PACKAGE_RELEASE "1" CACHE STRING "Debian revision of the package (version ${PROJECT_VERSION}-<this>)")

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "vaegan")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${VG_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "online recommender daemon: VAEGAN on a Kafka click stream, lists in Redis")
# dpkg wants every line of the long description indented and empty lines as
# " ."; CPack (>= 3.16) does that formatting itself.
set(CPACK_PACKAGE_DESCRIPTION [=[vaegand consumes click events from Kafka, keeps every user's history in
Redis, keeps training a VAEGAN model (a variational autoencoder for
collaborative filtering with an adversarially trained inference model) in a
background thread, and writes a fresh top-N list to rec:<user> in Redis
within milliseconds of each click, for any user.

The package holds vaegand (with a hardened systemd unit that is installed
but neither enabled nor started), vaegan-eval (the MovieLens experiment),
vaegan-gen (a synthetic click stream) and vaegan-mockbroker (a local
Kafka-protocol broker).  The configuration, /etc/vaegand/vaegand.conf, holds
no secret: passwords are handed over as systemd credentials.]=])

set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${VG_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_RELEASE "${VG_PACKAGE_RELEASE}")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)            # vaegan_<version>-<release>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)             # Depends: from dpkg-shlibdeps
# Nothing the binaries need escapes dpkg-shlibdeps (no dlopen, no helper
# programs).  The shipped configuration and the unit expect a local Redis
# (127.0.0.1:6379, Wants=redis-server.service), but Redis may well be on
# another host: a recommendation, not a dependency.  kcat is what the README
# produces test events with.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "redis-server")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "kcat")

set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
  OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

# conffiles: generated, it names the configuration where config/ installs it.
set(_vg_conf "${VG_CONFDIR}/vaegand.conf")
if(NOT IS_ABSOLUTE "${VG_CONFDIR}")
  set(_vg_conf "${CMAKE_INSTALL_PREFIX}/${VG_CONFDIR}/vaegand.conf")
endif()
file(WRITE ${PROJECT_BINARY_DIR}/packaging/conffiles "${_vg_conf}\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_BINARY_DIR}/packaging/conffiles
  ${PROJECT_SOURCE_DIR}/packaging/deb/postinst
  ${PROJECT_SOURCE_DIR}/packaging/deb/prerm
  ${PROJECT_SOURCE_DIR}/packaging/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)   # 0644 conffiles, 0755 scripts

# Read by cpack (CPACK_* variables reach it through CPackConfig.cmake).
set(CPACK_VG_SYSTEMD_UNITDIR "${VG_SYSTEMD_UNITDIR}")
set(CPACK_VG_VAEGAND_PATH "${CMAKE_INSTALL_FULL_BINDIR}/vaegand")
set(CPACK_PROJECT_CONFIG_FILE ${PROJECT_SOURCE_DIR}/packaging/cpack-project.cmake)

set(CPACK_SOURCE_GENERATOR "TGZ")
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/")
include(CPack)
