# cache/: the Redis store (library vgcache) and its integration test.
add_library(vgcache STATIC ${PROJECT_SOURCE_DIR}/cache/store.c)
target_include_directories(vgcache PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(vgcache PUBLIC vgcommon PkgConfig::HIREDIS PkgConfig::LIBUV)

# Starts its own redis-server (needs redis-server on PATH).
vg_add_test(test_store LABEL integration
  SOURCES ${PROJECT_SOURCE_DIR}/tests/test_store.c
  LIBS vgcache PkgConfig::HIREDIS PkgConfig::LIBUV
  TIMEOUT 180)
