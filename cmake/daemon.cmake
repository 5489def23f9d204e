# vaegand: the daemon, its integration tests and install rules.
include(GNUInstallDirs)

# The mirror, scorer and trainer (threads + model; no Kafka, no Redis).
add_library(vgcore STATIC ${PROJECT_SOURCE_DIR}/daemon/hist.c ${PROJECT_SOURCE_DIR}/daemon/scorer.c
  ${PROJECT_SOURCE_DIR}/daemon/trainer.c)
target_include_directories(vgcore PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(vgcore PUBLIC vgsupport vgmodel PkgConfig::LIBUV Threads::Threads)

add_executable(vaegand ${PROJECT_SOURCE_DIR}/daemon/main.c ${PROJECT_SOURCE_DIR}/daemon/daemon.c
  ${PROJECT_SOURCE_DIR}/daemon/replay.c)
target_link_libraries(vaegand PRIVATE vgcore vgops vgstream vgcache vgfiles vgsupport vgmodel)

vg_add_test(test_core LABEL unit SOURCES ${PROJECT_SOURCE_DIR}/tests/test_core.c LIBS vgcore TIMEOUT 120)

vg_add_test(test_daemon LABEL integration SOURCES ${PROJECT_SOURCE_DIR}/tests/test_daemon.c
  LIBS PkgConfig::HIREDIS PkgConfig::RDKAFKA TIMEOUT 1800)
target_compile_definitions(test_daemon PRIVATE VG_VAEGAND_BIN="$<TARGET_FILE:vaegand>"
  VG_MOCKBROKER_BIN="$<TARGET_FILE:vaegan-mockbroker>")
add_dependencies(test_daemon vaegand vaegan-mockbroker)

# ---- install: binaries, the example configuration, the unit (ops.cmake) ----
install(TARGETS vaegand vaegan-mockbroker vaegan-eval RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The unit reads /etc/vaegand/vaegand.conf (ConfigurationDirectory=vaegand) whatever the prefix.
set(VG_CONFDIR "/etc/vaegand" CACHE PATH "Where `cmake --install` puts vaegand.conf")
install(FILES ${PROJECT_SOURCE_DIR}/config/vaegand.conf DESTINATION ${VG_CONFDIR})
