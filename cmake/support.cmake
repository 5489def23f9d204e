# support.cmake — daemon/config.c and daemon/log.c: the configuration loader
# (inih) and the thread-safe log, as the static library vgsupport; their unit
# tests.  Included by the root CMakeLists.txt after add_subdirectory(tests), so
# vg_add_test() exists.
add_library(vgsupport STATIC
  ${PROJECT_SOURCE_DIR}/daemon/config.c
  ${PROJECT_SOURCE_DIR}/daemon/log.c)
target_include_directories(vgsupport PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(vgsupport PUBLIC vgmodel vgcommon PkgConfig::INIH Threads::Threads)

# test_config also checks that config/vaegand.conf (found through the
# VG_SOURCE_DIR environment variable vg_add_test sets) loads cleanly, holds
# the defaults and documents every key the loader knows, and vice versa.
vg_add_test(test_config LABEL unit
  SOURCES ${PROJECT_SOURCE_DIR}/tests/test_config.c
  LIBS vgsupport)
vg_add_test(test_log LABEL unit
  SOURCES ${PROJECT_SOURCE_DIR}/tests/test_log.c
  LIBS vgsupport)
