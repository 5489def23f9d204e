# vaegand: the daemon, its integration tests and install rules.
add_executable(vaegand ${PROJECT_SOURCE_DIR}/daemon/main.c)
