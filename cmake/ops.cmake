# see the root CMakeLists.txt
