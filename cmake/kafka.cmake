# stream/kafka.c (the consumer bound into libuv), stream/mock.c (an in-process
# Kafka-protocol broker), the vaegan-mockbroker tool and their integration test.

add_library(vgstream STATIC
  ${PROJECT_SOURCE_DIR}/stream/kafka.c
  ${PROJECT_SOURCE_DIR}/stream/mock.c)
target_include_directories(vgstream PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(vgstream PUBLIC vgcommon PkgConfig::RDKAFKA PkgConfig::LIBUV)

add_executable(vaegan-mockbroker ${PROJECT_SOURCE_DIR}/tools/vaegan-mockbroker.c)
target_link_libraries(vaegan-mockbroker PRIVATE vgstream)

# Integration test: a real broker (vaegan-mockbroker and the in-process mock).
vg_add_test(test_kafka LABEL integration
  SOURCES ${PROJECT_SOURCE_DIR}/tests/test_kafka.c
  LIBS vgstream
  TIMEOUT 180)
target_compile_definitions(test_kafka PRIVATE VG_MOCKBROKER_BIN="$<TARGET_FILE:vaegan-mockbroker>")
add_dependencies(test_kafka vaegan-mockbroker)
