# ops.cmake — operations support: the Prometheus endpoint and sd_notify
# (library vgops), the synthetic event generator vaegan-gen, the systemd unit
# and their tests.  Included from the root CMakeLists.txt after tests/.
include(GNUInstallDirs)

# ---- vgops: daemon/metrics.c (libmicrohttpd), daemon/notify.c (sd_notify) ----
add_library(vgops STATIC ${PROJECT_SOURCE_DIR}/daemon/metrics.c ${PROJECT_SOURCE_DIR}/daemon/notify.c)
target_include_directories(vgops PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(vgops PUBLIC vgcommon PkgConfig::MHD Threads::Threads ${M_LIB})
if(SYSTEMD_FOUND)
  target_link_libraries(vgops PUBLIC PkgConfig::SYSTEMD)
  target_compile_definitions(vgops PUBLIC VG_HAVE_SYSTEMD=1)
endif()

# ---- vaegan-gen ---------------------------------------------------------------
add_executable(vaegan-gen ${PROJECT_SOURCE_DIR}/tools/vaegan-gen.c)
target_link_libraries(vaegan-gen PRIVATE vgmodel ${M_LIB})
install(TARGETS vaegan-gen RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# ---- systemd unit ---------------------------------------------------------------
# The installed unit runs ${CMAKE_INSTALL_FULL_BINDIR}/vaegand; a second copy,
# for `systemd-analyze verify` in test_systemd, runs the built vaegand (the
# verifier wants the ExecStart binary to exist).
set(VG_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
  "Where `cmake --install` puts vaegand.service (relative to the prefix, or absolute)")
set(VG_VAEGAND_PATH "${CMAKE_INSTALL_FULL_BINDIR}/vaegand")
configure_file(${PROJECT_SOURCE_DIR}/systemd/vaegand.service.in
  ${PROJECT_BINARY_DIR}/systemd/vaegand.service @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/systemd/vaegand.service DESTINATION ${VG_SYSTEMD_UNITDIR})

set(VG_VAEGAND_PATH "$<TARGET_FILE:vaegand>")
configure_file(${PROJECT_SOURCE_DIR}/systemd/vaegand.service.in
  ${PROJECT_BINARY_DIR}/systemd/vaegand.service.test.in @ONLY)
file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/systemd-test/vaegand.service
  INPUT ${PROJECT_BINARY_DIR}/systemd/vaegand.service.test.in)
unset(VG_VAEGAND_PATH)

# ---- tests --------------------------------------------------------------------------
vg_add_test(test_metrics_http LABEL unit SOURCES ${PROJECT_SOURCE_DIR}/tests/test_metrics_http.c
  LIBS vgops TIMEOUT 120)
vg_add_test(test_notify LABEL unit SOURCES ${PROJECT_SOURCE_DIR}/tests/test_notify.c
  LIBS vgops TIMEOUT 60)
# the same tests against the hand-written protocol (the build without libsystemd)
vg_add_test(test_notify_raw LABEL unit
  SOURCES ${PROJECT_SOURCE_DIR}/tests/test_notify.c ${PROJECT_SOURCE_DIR}/daemon/notify.c
  LIBS vgcommon TIMEOUT 60)
vg_add_test(test_gen LABEL unit SOURCES ${PROJECT_SOURCE_DIR}/tests/test_gen.c
  LIBS PkgConfig::JANSSON TIMEOUT 300)
target_compile_definitions(test_gen PRIVATE VG_GEN_BIN="$<TARGET_FILE:vaegan-gen>")
add_dependencies(test_gen vaegan-gen)
vg_add_test(test_systemd LABEL unit SOURCES ${PROJECT_SOURCE_DIR}/tests/test_systemd.c
  LIBS TIMEOUT 120)
target_compile_definitions(test_systemd PRIVATE
  VG_UNIT_FILE="${PROJECT_BINARY_DIR}/systemd-test/vaegand.service"
  VG_UNIT_INSTALL_FILE="${PROJECT_BINARY_DIR}/systemd/vaegand.service"
  VG_VAEGAND_BIN="$<TARGET_FILE:vaegand>")
add_dependencies(test_systemd vaegand)
